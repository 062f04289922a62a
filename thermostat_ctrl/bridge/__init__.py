"""HTTP bridge: polls a Thermostat, keeps recent samples in memory, logs them
to daily CSV files and serves them to Grafana and Prometheus."""
