"""Storage: each device's ring buffer, CSV log (the log of record), history
caches and downsampling.  Nothing here knows about polling or HTTP."""
