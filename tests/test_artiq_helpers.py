"""thermostat_ctrl.artiq's helpers on a real controller (``aqctl_thermostat
--simulation``) through sipyco's blocking Client, as an experiment calls
them, with a scheduler that asks for one pause (ARTIQ itself not needed)."""

import pytest

from test_aqctl import Client, processes, sim_controller  # noqa: F401 (fixtures)
from thermostat_ctrl.artiq import ThermostatUnreachable, answered, ramp, settle

GAINS = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
LIMITS = {"max_i_pos": 1.5, "max_i_neg": 1.5, "max_v": 4.0}


class PausingScheduler:
    """``check_pause()`` is True ``after`` calls in; ``pause()`` runs ``meanwhile``
    (what the higher-priority experiment does) and counts."""

    def __init__(self, after: int, meanwhile):
        self.calls, self.after, self.meanwhile, self.pauses = 0, after, meanwhile, 0

    def check_pause(self) -> bool:
        self.calls += 1
        return self.calls == self.after

    def pause(self):
        self.pauses += 1
        self.meanwhile()


def test_ramp_goes_on_from_where_it_was_after_a_pause(sim_controller):
    _, c = sim_controller
    c.power_up(0, 25.0, **GAINS, **LIMITS)
    scheduler = PausingScheduler(3, lambda: c.set_target(0, 40.0))  # the other experiment
    done = ramp(c, 0, 26.0, 0.02, scheduler, tolerance=0.05, hold_s=2.0)
    assert scheduler.pauses == 1
    assert done["start"] == pytest.approx(25.0) and done["steps"] >= 3
    assert done["ramp_s"] == pytest.approx(1.0 / 0.02, rel=0.3)
    settled = done["settled"]
    assert settled["settled"] and settled["target"] == pytest.approx(26.0)
    assert abs(settled["error_mean"]) <= 0.05


def test_settle_sets_its_target_again_after_a_pause(sim_controller):
    _, c = sim_controller
    c.power_up(1, 27.0, **GAINS, **LIMITS)
    scheduler = PausingScheduler(2, lambda: c.set_target(1, 35.0))
    state = settle(c, 1, 0.05, 3.0, 600.0, scheduler, target=27.0)
    assert scheduler.pauses == 1
    assert state["target"] == pytest.approx(27.0) and state["in_band_s"] >= 3.0


def test_settle_errors(sim_controller):
    _, c = sim_controller
    with pytest.raises(RuntimeError, match="PID is not engaged"):
        settle(c, 0, 0.05, 1.0)
    c.power_up(0, 70.0, **GAINS, max_i_pos=0.05, max_i_neg=0.05, max_v=1.0)
    with pytest.raises(TimeoutError, match="not settled within 20"):
        settle(c, 0, 0.01, 1.0, timeout_s=20.0)
    with pytest.raises(ValueError, match="outside the safe window"):
        ramp(c, 0, 95.0, 1.0)


def test_best_effort_none_is_a_clear_error():
    with pytest.raises(ThermostatUnreachable, match="device_db entry 'cavity': no answer to"
                                                    " get_pid"):
        answered(None, "cavity", "get_pid")
    assert answered([], "cavity", "get_pid") == []
