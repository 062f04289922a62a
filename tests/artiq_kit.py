"""The real ARTIQ for the tests (a helper module, not a test module):
``artiq_run``, an ``artiq_master`` on free loopback ports, ``artiq_client``
and ``artiq_ctlmgr`` as subprocesses, and the device_db files they read.

Tests needing ARTIQ call :func:`require_artiq`, which skips with the reason
when it is not installed (``.ci/run`` installs it from ``../shared/deps``).
"""

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "thermostat_ctrl" / "experiments"
ARTIQ_MISSING = ("ARTIQ is not installed (it is not on PyPI): .ci/run installs it from"
                 " ../shared/deps (see its README)")
START_TIMEOUT = 60.0


def require_artiq() -> None:
    """Skip the test unless ARTIQ, sipyco and the ARTIQ commands are installed."""
    pytest.importorskip("artiq.experiment", reason=ARTIQ_MISSING)
    pytest.importorskip("sipyco.pc_rpc", reason=ARTIQ_MISSING)
    for command in ("artiq_run", "artiq_master", "artiq_client"):
        if shutil.which(command) is None:
            pytest.skip("{} is not on PATH: {}".format(command, ARTIQ_MISSING))


def env() -> dict:
    """The environment of ARTIQ subprocesses: this checkout first on the path."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1"}


def write_device_db(path: Path, entries: dict) -> Path:
    """A device_db.py holding ``entries``."""
    path.write_text("device_db = {!r}\n".format(entries))
    return path


def controller_entry(port: int, target: str = "thermostat", command: str = None) -> dict:
    """A device_db controller entry on loopback."""
    entry = {"type": "controller", "host": "127.0.0.1", "port": port, "target_name": target}
    if command is not None:
        entry["command"] = command
    return entry


def artiq_run(cwd: Path, device_db: Path, experiment: str, *arguments: str,
              timeout: float = 600.0) -> Path:
    """Run a shipped experiment with ``artiq_run``; the results HDF5 file."""
    results = cwd / (Path(experiment).stem + ".h5")
    done = subprocess.run(["artiq_run", "--device-db", str(device_db), "-o", str(results),
                           str(EXPERIMENTS / experiment), *arguments],
                          cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return results


class Master:
    """An ``artiq_master`` on free loopback ports (or ``ports``: notify,
    control, logging, broadcast) with ``repository`` and the device_db
    ``device_db``, its log in ``cwd/master.log``."""

    def __init__(self, cwd: Path, device_db: Path, repository: Path = EXPERIMENTS,
                 ports: tuple = None):
        self.cwd = cwd
        self.ports = ports or tuple(free_port() for _ in range(4))
        self.notify, self.control, self.logging, self.broadcast = self.ports
        self.log_path = cwd / "master.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["artiq_master", "--no-localhost-bind", "--bind", "127.0.0.1",
                 "--port-notify", str(self.notify), "--port-control", str(self.control),
                 "--port-logging", str(self.logging), "--port-broadcast", str(self.broadcast),
                 "--device-db", str(device_db), "--dataset-db", str(cwd / "datasets.mdb"),
                 "-r", str(repository)],
                cwd=cwd, env=env(), stdout=log, stderr=subprocess.STDOUT)
        self.wait_listening()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self) -> None:
        """Until the control port answers (the repository scan may still run)."""
        from sipyco.pc_rpc import Client

        def attempt():
            assert self.proc.poll() is None, "artiq_master exited:\n" + self.log()
            try:
                Client("127.0.0.1", self.control, "schedule", timeout=10).close_rpc()
            except OSError:
                return False
            return True
        wait_until(attempt, START_TIMEOUT, "artiq_master to listen\n" + self.log())

    def rpc(self, target: str):
        """A sipyco client of one of the master's targets (``schedule``,
        ``dataset_db``, ``experiment_db``, ...)."""
        from sipyco.pc_rpc import Client
        return Client("127.0.0.1", self.control, target, timeout=30)

    def client(self, *args: str) -> str:
        """Run ``artiq_client`` against this master; its stdout."""
        done = subprocess.run(["artiq_client", "-s", "127.0.0.1", "--port",
                               str(self.control), *args],
                              cwd=self.cwd, env=env(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def shown_datasets(self, wanted: str, timeout: float = 60.0) -> str:
        """What ``artiq_client show datasets`` (a live view, which does not
        exit) prints until ``wanted`` appears in it; then it is stopped."""
        proc = subprocess.Popen(["artiq_client", "-s", "127.0.0.1", "--port", str(self.notify),
                                 "show", "datasets"], cwd=self.cwd, env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []

        def read():
            for line in proc.stdout:
                lines.append(line)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: any(wanted in line for line in list(lines)), timeout,
                       "artiq_client show datasets to list " + wanted)
        finally:
            proc.terminate()
            proc.wait(10)
            reader.join(10)
            proc.stdout.close()
        return "".join(lines)

    def submit(self, experiment: str, *arguments: str, priority: int = 0) -> int:
        """``artiq_client submit -R`` of a repository file; its RID."""
        out = self.client("submit", "-R", "-P", str(priority), experiment, *arguments)
        return int(re.search(r"RID:\s*(\d+)", out).group(1))

    def results(self, rid: int) -> Path:
        """The HDF5 results file of run ``rid`` (complete once the run has left
        the schedule; None when there is none)."""
        found = sorted((self.cwd / "results").glob("*/*/{:09d}-*.h5".format(rid)))
        return found[0] if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Ctlmgr:
    """An ``artiq_ctlmgr`` of ``master`` (started controllers are its children)."""

    def __init__(self, cwd: Path, master: Master):
        self.log_path = cwd / "ctlmgr.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["artiq_ctlmgr", "-vv", "-s", "127.0.0.1", "--port-notify", str(master.notify),
                 "--port-logging", str(master.logging), "--no-localhost-bind", "--bind",
                 "127.0.0.1", "--port-control", str(free_port()), "--retry-master", "1"],
                cwd=cwd, env=env(), stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # it terminates its controllers first
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def controller_command(*device_args: str, speed: float = 20) -> str:
    """The device_db ``command`` of an ``aqctl_thermostat`` on loopback."""
    return " ".join([sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", "-p", "{port}",
                     "--no-localhost-bind", "--bind", "127.0.0.1", *device_args,
                     "--speed", str(speed)])
