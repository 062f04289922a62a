"""HTTP bridge: polls every Thermostat of a lab, keeps recent samples in
memory, logs them to daily CSV files and serves them to people, Grafana and
Prometheus.

Subpackages, with dependencies pointing one way:
:mod:`.acquisition` (pollers, samples, the bus) and :mod:`.storage` (ring
buffers, CSV log, history) know nothing of each other or of the web;
:mod:`.schema` (the stored row's columns) is theirs to share;
:mod:`.runtime` wires them together; :mod:`.web` serves them; :mod:`.sinks`
push samples elsewhere.
"""
