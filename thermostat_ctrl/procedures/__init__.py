"""Procedures on the asyncio driver, shared by the RPC facade and the CLI.

* :func:`power_up`, :func:`wait_settled`, :func:`get_b_parameter` (t0 in °C);
* :func:`autotune`: relay autotune with the channel restored on every exit;
* :func:`step_response`: a setpoint step and back, with its figures;
* :func:`ramp`: a target change at a limited rate, safe across a lost connection;
* :class:`~.watch.ChannelWatch`: in band or not, since when, without waiting.

All count time on the device's sample clock.  Targets outside
:data:`SAFE_WINDOW` (°C) are refused unless the caller widens it.
"""

from .autotune import DEFAULT_RULE, RULE_NAMES, autotune
from .basic import (SAFE_WINDOW, Aborted, ChannelState, ProcedureError, check_target,
                    check_window, get_b_parameter, power_up, samples, wait_settled)
from .ramp import ramp
from .step import step_metrics, step_response

__all__ = ["SAFE_WINDOW", "DEFAULT_RULE", "RULE_NAMES", "Aborted", "ChannelState",
           "ProcedureError", "autotune", "check_target", "check_window", "get_b_parameter",
           "power_up", "ramp", "samples", "step_metrics", "step_response", "wait_settled"]
