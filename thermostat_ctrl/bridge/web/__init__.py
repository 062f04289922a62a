"""Web: the FastAPI application, its routes (data, operations), rendering
of rows as CSV and JSON, Prometheus metrics and request security.  It reads
the acquisition state and the stores; nothing here talks to a device except
``POST /save_once`` through its poller."""
