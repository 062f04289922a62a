"""What the benchmark scripts share (a helper module, not a script): child
processes of the bridge and the simulator, their CPU time and resident
memory, percentiles.

* :class:`Bridge`: ``thermostat_bridge`` on a free loopback port, its URL
  once it logs that it serves;
* :class:`Simulator`: ``thermostat_sim`` on a free loopback port (and its
  fault control port when asked for);
* :func:`memory_mb`, :func:`cpu_s`: from ``/proc/PID``;
* :func:`percentile`, :func:`now_ms`, :func:`free_port`, :func:`wait_until`.

The scripts run as ``python scripts/NAME.py``, so ``import benchkit`` finds
this file; the package itself is installed.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np

SERVING = re.compile(r"serving \d+ device\(s\) on (http://127\.0\.0\.1:(\d+))")
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
CONTROL = re.compile(r"control on 127\.0\.0\.1:(\d+)")
MEMORY_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
T = TypeVar("T")


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0..100) of ``samples`` (numpy's linear interpolation)."""
    return float(np.percentile(samples, q))


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str = "a condition",
               interval: float = 0.01) -> T:
    """``condition()``'s first truthy value, calling it every ``interval``
    s; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("{} s without {}".format(timeout, what))
        time.sleep(interval)
    return value


def memory_mb(pid: int) -> dict:
    """``VmRSS`` (resident now: ``RssAnon`` heap + ``RssFile`` mapped files)
    and ``VmHWM`` (peak resident) of ``pid`` in MB (to the kB); empty when
    the process is gone."""
    result = {}
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in MEMORY_KEYS:
                    result[key] = round(int(value.split()[0]) / 1024, 3)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return result


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Child:
    """A child process whose ``stream`` (``"stderr"`` or ``"stdout"``) lines
    a thread collects in :attr:`lines`; the other stream is dropped (stdout)
    or inherited (stderr)."""

    def __init__(self, argv: Sequence[str], stream: str = "stderr"):
        self.name = os.path.basename(argv[2] if argv[1:2] == ["-m"] else argv[0])
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, text=True,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else None,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: list = []
        self._changed = threading.Condition()
        self._eof = False
        threading.Thread(target=self._drain, args=(getattr(self.proc, stream),),
                         name=self.name + " " + stream, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self, pipe) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: "re.Pattern", timeout: float) -> "re.Match":
        """The first collected line matching ``pattern``, waiting for it; the
        process is stopped when it does not come."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._changed.wait(remaining)
        self.stop()
        raise RuntimeError("{} (exit status {}): no line matching {!r} in {} s:\n{}".format(
            self.name, self.proc.returncode, pattern.pattern, timeout,
            "\n".join(self.lines[-20:])))

    def check_alive(self) -> None:
        """Raise if the process has ended."""
        if self.proc.poll() is not None:
            raise RuntimeError("{} exited ({}):\n{}".format(
                self.name, self.proc.returncode, "\n".join(self.lines[-20:])))

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def memory_mb(self) -> dict:
        return memory_mb(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> Optional[int]:
        """Send ``sig`` (SIGCONT first, in case it was stopped), wait up to
        ``timeout`` s, then SIGKILL; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Bridge(Child):
    """``thermostat_bridge --bind 127.0.0.1 --port 0 ARGS``; :attr:`url` and
    :attr:`port` once its stderr says it serves (within ``timeout`` s).
    Its log goes to stderr: no ``-q`` in ``args``, or that line never comes."""

    def __init__(self, args: Sequence[str], timeout: float = 120.0):
        super().__init__([sys.executable, "-m", "thermostat_ctrl.bridge.cli", "--bind",
                          "127.0.0.1", "--port", "0", *args], "stderr")
        match = self.wait_for(SERVING, timeout)
        self.url: str = match.group(1)
        self.port = int(match.group(2))


class Simulator(Child):
    """``thermostat_sim --bind 127.0.0.1 --port 0 ARGS``; :attr:`port` once
    it listens, and :attr:`control_port` with ``--control-port`` in ``args``."""

    def __init__(self, args: Sequence[str] = (), timeout: float = 30.0):
        super().__init__([sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--bind",
                          "127.0.0.1", "--port", "0", *args], "stdout")
        self.port = int(self.wait_for(LISTENING, timeout).group(1))
        self.control_port: Optional[int] = None
        if "--control-port" in args:
            self.control_port = int(self.wait_for(CONTROL, timeout).group(1))

    def device(self, name: str) -> list:
        """The bridge's ``-d NAME=127.0.0.1:PORT`` arguments for this simulator."""
        return ["-d", "{}=127.0.0.1:{}".format(name, self.port)]
