"""Sinks: consumers of the sample bus that push samples elsewhere (a
time-series database).  A sink subscribes to the bus
(:meth:`~thermostat_ctrl.bridge.acquisition.bus.SampleBus.subscribe`) and
runs on its own thread or task, so it never delays a poll or another
consumer.

* :mod:`.influx`: the InfluxDB / VictoriaMetrics sink (``--influx URL``);
* :mod:`.artiq_master`: live datasets in an ARTIQ master (``--artiq-master
  HOST[:PORT]``), from the status snapshots once a second;
* :mod:`.lineproto`: samples as line protocol;
* :mod:`.spool`: the on-disk, crash-safe, bounded backlog of a sink;
* :mod:`.settings`: the sinks' URLs, credentials and batching.
"""
