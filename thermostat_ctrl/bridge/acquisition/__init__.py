"""Acquisition: the device pollers on their thread, the samples they make,
the bus that carries them to every consumer, and the demo simulation."""
