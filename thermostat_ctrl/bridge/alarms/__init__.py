"""Alarms: detection rules over recent samples, their lifecycle, notifications.

:mod:`.rules` (pure functions of sample windows) -> :mod:`.monitor` (a bus
consumer evaluating them) -> :mod:`.book` (raise, acknowledge, clear,
silence, the alarm log) -> :mod:`.notify` (Apprise).  :mod:`.settings` holds
the rules' configuration.
"""
