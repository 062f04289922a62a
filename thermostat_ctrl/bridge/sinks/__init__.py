"""Sinks: consumers of the sample bus that push samples elsewhere (a
time-series database).  A sink subscribes to the bus
(:meth:`~thermostat_ctrl.bridge.acquisition.bus.SampleBus.subscribe`) and
runs on its own thread or task, so it never delays a poll or another
consumer."""
