"""The bench command line ``thermostat_ctrl`` as a subprocess (and in process
for the quick usage checks)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import SimThread, wait_until
from thermostat_ctrl import cli

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thermostat_ctrl", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,word", [
    ([], "required"),
    (["--simulation", "set-pid", "0", "--kp", "x"], "--kp"),
    (["--simulation", "set-target", "2", "25"], "channel"),
    (["--simulation", "set-target", "0", "95"], "target"),
    (["--simulation", "autotune", "0"], "--target"),
    (["--simulation", "autotune", "0", "--target", "25", "--rule", "magic"], "--rule"),
    (["--simulation", "--heat-capacity", "0:-1", "report"], "heat_capacity"),
    (["-d", "127.0.0.1", "--speed", "5", "report"], "--speed"),
    (["-d", "127.0.0.1:notaport", "report"], "port"),
    (["--simulation", "wait-settled", "0", "--settle-s", "60", "--timeout-s", "30"],
     "settle_s"),
    (["--simulation", "nonsense"], "COMMAND"),
], ids=lambda v: "-".join(v) if isinstance(v, list) else v)
def test_bad_input_is_one_line_and_exit_2(args, word, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and word in err, err


def test_device_errors_are_one_line_and_exit_1(capsys):
    assert cli.main(["--simulation", "load", "0"]) == 1
    assert cli.main(["-d", "127.0.0.1:1", "--timeout", "1", "report"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "flash" in lines[0] and "127.0.0.1:1" in lines[1]


def test_report_table_and_json(capsys):
    assert cli.main(["--simulation", "report"]) == 0
    assert "temperature" in capsys.readouterr().out
    assert cli.main(["--simulation", "report", "--json"]) == 0
    assert [o["channel"] for o in json.loads(capsys.readouterr().out)] == [0, 1]
    assert cli.main(["--simulation", "get", "b-parameter"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params"]["t0"] == pytest.approx(25.0)


def test_commands_against_a_device():
    with _sim() as sim:
        dev = ["-d", "127.0.0.1:{}".format(sim.port)]
        assert run(*dev, "set-limits", "0", "--max-i-pos", "1", "--max-i-neg", "1",
                   "--max-v", "4").returncode == 0
        assert run(*dev, "power-up", "0", "25", "--kp", "0.45", "--ki", "0.012",
                   "--kd", "4.3").returncode == 0
        pid = json.loads(run(*dev, "get", "pid").stdout)[0]
        assert pid["target"] == 25.0 and pid["parameters"]["kp"] == pytest.approx(0.45)
        done = run(*dev, "wait-settled", "0", "--tolerance", "0.05", "--settle-s", "5")
        assert done.returncode == 0 and "settled" in done.stdout
        assert run(*dev, "set-current", "1", "0.2").returncode == 0
        assert json.loads(run(*dev, "get", "output").stdout)[1]["i_set"] == pytest.approx(0.2)
        assert run(*dev, "save", "0").returncode == 0 and run(*dev, "load").returncode == 1


class _sim:
    """A simulator in a background thread for subprocess clients."""

    def __enter__(self):
        self.thread = SimThread(speed=50.0)
        self.port = self.thread.port
        self.sim = self.thread.sim
        return self

    def __exit__(self, *exc):
        self.thread.stop()


def test_autotune_with_progress_then_step_test():
    result = run("--simulation", "--speed", "100", "autotune", "0", "--target", "25",
                 "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    tuned = json.loads(result.stdout)
    assert tuned["rule"] == "designed" and tuned["gains"]["kp"] > 0
    g = tuned["gains"]
    step = run("--simulation", "--speed", "100", "--heat-capacity", "0:20", "step-test", "0",
               "2", "--target", "25", "--kp", str(g["kp"]), "--ki", str(g["ki"]),
               "--kd", str(g["kd"]), timeout=120)
    assert step.returncode == 0, step.stderr
    assert "up" in step.stdout and "never" not in step.stdout


def test_ctrl_c_aborts_autotune_and_restores_the_channel():
    with _sim() as sim:
        dev = ["-d", "127.0.0.1:{}".format(sim.port)]
        assert run(*dev, "set-limits", "0", "--max-i-pos", "1", "--max-i-neg", "1",
                   "--max-v", "4").returncode == 0
        assert run(*dev, "power-up", "0", "25", "--kp", "0.45", "--ki", "0.012",
                   "--kd", "4.3").returncode == 0
        proc = subprocess.Popen([sys.executable, "-m", "thermostat_ctrl", *dev, "autotune", "0",
                                 "--target", "25"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # the relay drives a constant current: the PID is off while it runs
            wait_until(lambda: not sim.thread.run(_engaged(sim.sim)), 30, "the relay to start")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "restored" in err
        assert sim.thread.run(_engaged(sim.sim)) is True
        pid = json.loads(run(*dev, "get", "pid").stdout)[0]
        assert pid["parameters"]["kp"] == pytest.approx(0.45) and pid["target"] == 25.0


async def _engaged(sim) -> bool:
    return sim.device.channels[0].pid_engaged


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("thermostat_ctrl")
    if not script.exists():
        pytest.skip("package not installed with its console scripts")
    assert subprocess.run([str(script), "--help"], capture_output=True, text=True,
                          env={**os.environ}, timeout=60).returncode == 0
