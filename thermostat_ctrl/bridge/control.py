"""Changing a device through the bridge: checked, on the poller's connection,
read back, and in the audit trail.

Each :data:`RESOURCES` entry is one setting (or action) of a channel or of
the device.  :meth:`Control.write` checks the values with the same code the
driver, the controller and the CLI use (the safe target window, the
firmware's ranges, single-precision representability: the protocol's
command builders and :mod:`..procedures`), then, between two polls and with
nothing else on the connection (:meth:`~.acquisition.poller.Poller.exclusive`):
reads the setting, compares it with the value the writer expects to replace,
writes, reads it back.  The answer and the audit entry carry what was read
back, never what was asked for.

:meth:`Control.start_procedure` runs the autotune, the step test or a
setpoint ramp on a channel through :class:`PolledDriver` (every exchange in
turn with the polls), with progress, an abort and the result kept for the
page.
"""

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from .. import procedures, protocol
from ..driver import Thermostat
from .acquisition.poller import PollError
from .audit import AuditLog, SettingsWatch
from .runtime import Bridge, Device

logger = logging.getLogger(__name__)

__all__ = ["Control", "Resource", "RESOURCES", "PROCEDURES", "WriteError", "Invalid",
           "Conflict", "DeviceDown", "DeviceRefused", "Busy", "PolledDriver"]


class WriteError(Exception):
    """A write that did not happen; ``result`` is its audit result."""

    result = "failed"


class Invalid(WriteError, ValueError):
    """A value the device cannot take; ``field`` names it."""

    result = "invalid"

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Conflict(WriteError):
    """The setting is no longer what the writer expected; ``current`` is it."""

    result = "conflict"

    def __init__(self, message: str, current: Any):
        super().__init__(message)
        self.current = current


class DeviceDown(WriteError):
    """The device did not answer."""

    result = "device down"


class DeviceRefused(WriteError):
    """The device answered the command with an error."""

    result = "device error"


class Busy(WriteError):
    """A procedure runs on the channel."""

    result = "busy"


# ------------------------------------------------------------- resources

def _only(values: dict, fields: tuple) -> dict:
    return {k: values.get(k) for k in fields}


async def _read_pid(d: Thermostat, ch: int) -> dict:
    return dict((await d.get_pid())[ch]["parameters"])


async def _read_output(d: Thermostat, ch: int) -> dict:
    return (await d.get_output())[ch]


async def _read_limits(d: Thermostat, ch: int) -> dict:
    return _only(await _read_output(d, ch), protocol.OUTPUT_LIMITS)


async def _read_b_parameter(d: Thermostat, ch: int) -> dict:
    return (await procedures.get_b_parameter(d))[ch]["params"]


@dataclass(frozen=True)
class Resource:
    """One writable setting.

    :param fields: the body's fields (all optional for partial updates
        unless ``required``).
    :param check: ``check(firmware, ch, name, value)`` raises ValueError
        when ``value`` is not valid for ``name``.
    :param read: ``read(driver, ch)``: the setting now, ``{field: value}``.
    :param write: ``write(driver, ch, values)`` with the given values only.
    :param channel: a channel's setting (else the device's, ``ch`` None).
    """

    name: str
    fields: tuple
    check: Callable[[str, Optional[int], str, Any], Any]
    read: Callable[[Thermostat, Optional[int]], Awaitable[dict]]
    write: Callable[[Thermostat, Optional[int], dict], Awaitable[None]]
    channel: bool = True
    required: bool = False
    #: Watched fields (:data:`~.audit.WATCHED`) it changes, by read-back name.
    watched: dict = field(default_factory=dict)


def _check_target(firmware: str, ch: int, name: str, value: Any) -> None:
    procedures.check_target(value, name=name)
    protocol.set_pid_param(ch, "target", value)


def _check_current(firmware: str, ch: int, name: str, value: Any) -> None:
    try:
        protocol.set_current(firmware, ch, value)
    except ValueError as e:
        raise ValueError(str(e).replace("amps", name, 1)) from None


def _check_postfilter(firmware: str, ch: int, name: str, value: Any) -> None:
    try:
        protocol.set_postfilter(firmware, ch, value)
    except ValueError as e:
        raise ValueError(str(e).replace("rate_hz", name, 1)) from None


async def _read_target(d: Thermostat, ch: int) -> dict:
    return {"value": (await d.get_pid())[ch]["target"]}


async def _read_current(d: Thermostat, ch: int) -> dict:
    return {"value": (await _read_output(d, ch))["i_set"],
            "pid_engaged": (await d.report())[ch]["pid_engaged"]}


async def _read_engaged(d: Thermostat, ch: int) -> dict:
    return {"pid_engaged": (await d.report())[ch]["pid_engaged"]}


async def _read_polarity(d: Thermostat, ch: int) -> dict:
    return {"value": (await _read_output(d, ch)).get("polarity")}


async def _read_postfilter(d: Thermostat, ch: int) -> dict:
    return {"rate": (await d.get_postfilter())[ch]["rate"]}


async def _read_fan(d: Thermostat, ch: None) -> dict:
    fan = await d.get_fan() or {}  # None: a board without a fan
    return {"auto": fan.get("auto_mode"), "power": fan.get("fan_pwm")}


def _no_check(firmware: str, ch: Optional[int], name: str, value: Any) -> None:
    return None


async def _read_nothing(d: Thermostat, ch: Optional[int]) -> dict:
    return {}


RESOURCES = {r.name: r for r in (
    Resource("target", ("value",), _check_target, _read_target,
             lambda d, ch, v: d.set_target(ch, v["value"]), required=True,
             watched={"value": "target"}),
    Resource("pid", protocol.PID_PARAMS[1:],
             lambda fw, ch, k, v: protocol.set_pid_param(ch, k, v),
             lambda d, ch: _read_pid(d, ch), lambda d, ch, v: d.set_pid_params(ch, **v),
             watched={k: k for k in protocol.PID_PARAMS[1:]}),
    Resource("limits", protocol.OUTPUT_LIMITS,
             lambda fw, ch, k, v: protocol.set_output_limit(fw, ch, k, v),
             _read_limits, lambda d, ch, v: d.set_output_limits(ch, **v),
             watched={k: k for k in protocol.OUTPUT_LIMITS}),
    Resource("b_parameter", protocol.B_PARAMS,
             lambda fw, ch, k, v: protocol.set_b_param(fw, ch, k, v),
             _read_b_parameter, lambda d, ch, v: d.set_b_parameter(ch, **v)),
    Resource("postfilter", ("rate",), _check_postfilter, _read_postfilter,
             lambda d, ch, v: d.set_postfilter(ch, v["rate"]), required=True),
    Resource("polarity", ("value",), lambda fw, ch, k, v: protocol.set_polarity(fw, ch, v),
             _read_polarity, lambda d, ch, v: d.set_polarity(ch, v["value"]), required=True),
    Resource("current", ("value",), _check_current, _read_current,
             lambda d, ch, v: d.set_current(ch, v["value"]), required=True),
    Resource("engage", (), _no_check, _read_engaged, lambda d, ch, v: d.engage_pid(ch)),
    Resource("fan", ("power",), lambda fw, ch, k, v: protocol.set_fan(v), _read_fan,
             lambda d, ch, v: d.set_fan(v["power"]), channel=False, required=True),
    Resource("save", (), _no_check, _read_nothing, lambda d, ch, v: d.save_config(None),
             channel=False),
    Resource("load", (), _no_check, _read_nothing, lambda d, ch, v: d.load_config(None),
             channel=False),
)}

#: The procedures :meth:`Control.start_procedure` runs on a channel.
PROCEDURES = ("autotune", "step_test", "ramp")


def same_value(a: Any, b: Any) -> bool:
    """Equal as the device keeps them (single precision for most settings)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


# --------------------------------------------------------------- driver

class PolledDriver:
    """A :class:`~thermostat_ctrl.driver.Thermostat` look-alike for the
    procedures: each method call is one :meth:`Poller.exclusive` turn on the
    poller's connection."""

    def __init__(self, device: Device):
        self._poller = device.poller

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(Thermostat, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(method):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._poller.exclusive(lambda d: getattr(d, name)(*args, **kwargs))

        return call


# --------------------------------------------------------------- control

@dataclass
class Job:
    """A procedure running (or run) on a channel."""

    procedure: str
    who: str
    requested: dict
    progress: dict = field(default_factory=lambda: {"state": "running"})
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    task: Optional[asyncio.Task] = None
    result: Optional[dict] = None
    error: Optional[str] = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def summary(self) -> dict:
        """The job as the page shows it (the result without its recorded data)."""
        result = None if self.result is None else _without_data(self.result)
        return {"procedure": self.procedure, "who": self.who, "requested": self.requested,
                "running": self.running, "progress": dict(self.progress), "result": result,
                "error": self.error}


class Control:
    """Writes and procedures on a bridge's devices, with their audit trail.

    Installs a :class:`~.audit.SettingsWatch` on every device's poller.
    """

    def __init__(self, bridge: Bridge, audit: AuditLog):
        self.bridge = bridge
        self.audit = audit
        self.watches: dict[str, SettingsWatch] = {}
        self.jobs: dict[tuple, Job] = {}
        for name, device in bridge.devices.items():
            watch = SettingsWatch(name, audit, expected=_expected_of(device))
            device.poller.on_details = watch.polled
            self.watches[name] = watch

    async def read(self, device: Device, resource: Resource, ch: Optional[int]) -> dict:
        """The setting now (DeviceDown, DeviceRefused)."""
        return await self._on_device(device, lambda d: resource.read(d, ch))

    async def settings(self, device: Device, ch: int) -> dict:
        """Every setting of channel ``ch`` in one turn on the connection."""
        async def read_all(d: Thermostat) -> dict:
            pid = (await d.get_pid())[ch]
            output = await _read_output(d, ch)
            report = (await d.report())[ch]
            return {"target": pid["target"], "pid": dict(pid["parameters"]),
                    "limits": _only(output, protocol.OUTPUT_LIMITS),
                    "i_set": output["i_set"], "pid_engaged": report["pid_engaged"],
                    "polarity": output.get("polarity"),
                    "b_parameter": await _read_b_parameter(d, ch),
                    "postfilter": (await d.get_postfilter())[ch]["rate"],
                    "postfilter_rates": list(protocol.POSTFILTER_RATES[d.firmware]),
                    "safe_window": list(procedures.SAFE_WINDOW), "firmware": d.firmware,
                    "autotune_rules": list(procedures.RULE_NAMES)}
        return await self._on_device(device, read_all)

    def check(self, device: Device, resource: Resource, ch: Optional[int],
              values: dict) -> None:
        """Raise :class:`Invalid` naming the first bad field of ``values``."""
        firmware = device.poller.firmware
        if firmware is None:
            raise DeviceDown("{} has not answered yet; its firmware is unknown".format(
                device.name))
        for name, value in values.items():
            try:
                resource.check(firmware, ch, name, value)
            except (NotImplementedError, ValueError) as e:  # UnsupportedCommand among them
                raise Invalid(name, str(e)) from None
        pid_min, pid_max = values.get("output_min"), values.get("output_max")
        if pid_min is not None and pid_max is not None and pid_min > pid_max:
            raise Invalid("output_min", "output_min ({}) must not exceed output_max ({})"
                          .format(pid_min, pid_max))

    async def write(self, device: Device, resource: Resource, ch: Optional[int], values: dict,
                    who: str, client: Optional[str], expect: Optional[dict] = None) -> dict:
        """Check, write ``values`` (the given ones; None values are left out)
        and read back; every attempt is in the audit trail.  Returns the
        setting as read back.  Raises a :class:`WriteError`."""
        values = {k: v for k, v in values.items() if v is not None or resource.required}
        expect = {k: v for k, v in (expect or {}).items() if v is not None}
        where = dict(channel=ch, client=client, requested=values or None)
        before = None
        try:
            if resource.fields and not values:
                raise Invalid(resource.fields[0], "give at least one of " +
                              ", ".join(resource.fields))
            self.check(device, resource, ch, values)
            job = self.jobs.get((device.name, ch))
            if ch is not None and job is not None and job.running:
                raise Busy("channel {} is busy: {} by {} is running; abort it first".format(
                    ch, job.procedure, job.who))
            watch = self.watches[device.name]

            def watched(setting: dict) -> dict:
                return {resource.watched[k]: v for k, v in setting.items()
                        if k in resource.watched}

            async def work(d: Thermostat) -> tuple:
                now = await resource.read(d, ch)
                if ch is not None and resource.watched:
                    watch.observe(ch, watched(now))
                stale = {k: now.get(k) for k, v in expect.items() if not same_value(now.get(k), v)}
                if stale:
                    return now, None, stale
                await resource.write(d, ch, values)
                after = await resource.read(d, ch)
                if ch is not None and resource.watched:
                    watch.accept(ch, watched(after))
                    await device.poller.refresh_details()  # the rows' setpoint at once
                return now, after, None

            before, after, stale = await self._on_device(device, work)
            if stale:
                raise Conflict("{} changed meanwhile: it is {}, not {} as expected".format(
                    resource.name, _fmt(stale), _fmt({k: expect[k] for k in stale})),
                    {k: before.get(k) for k in resource.fields or before})
        except WriteError as e:
            await self.record(device, resource.name, who, result=e.result, detail=str(e),
                               before=before, **where)
            raise
        await self.record(device, resource.name, who, before=before, after=after, **where)
        if resource.name in ("target", "current", "engage"):
            _taken_over(device, ch)
        return after

    async def record(self, device: Device, what: str, who: str, **entry: Any) -> None:
        """Append an audit entry and wait until it is on disk (a failure to
        write it is logged by the audit log, not raised: the change itself
        happened, or not, anyway)."""
        try:
            await asyncio.wrap_future(self.audit.record(device.name, what, who, **entry))
        except OSError:
            pass

    async def _on_device(self, device: Device, work: Callable[[Thermostat], Awaitable[Any]]
                         ) -> Any:
        try:
            return await device.poller.exclusive(work)
        except PollError as e:
            raise DeviceDown("{}: {}".format(device.name, e)) from None
        except protocol.UnsupportedCommand as e:
            raise Invalid("firmware", str(e)) from None
        except protocol.DeviceError as e:
            raise DeviceRefused("{} refused the command: {}".format(device.name, e)) from None
        except (ConnectionError, TimeoutError) as e:
            raise DeviceDown("{} did not answer: {}".format(device.name, e)) from None

    # ------------------------------------------------------------ procedures

    def job(self, device: Device, ch: int) -> Optional[Job]:
        """The procedure running or last run on a channel."""
        return self.jobs.get((device.name, ch))

    async def start_procedure(self, device: Device, ch: int, procedure: str, params: dict,
                              who: str, client: Optional[str],
                              expect: Optional[float] = None) -> Job:
        """Start ``procedure`` (one of :data:`PROCEDURES`) on channel ``ch``
        with ``params``; Busy when one runs there, DeviceDown when the
        device does not answer now (one report on the connection), Invalid
        for bad parameters (checked before anything else is sent).  For a
        ramp, ``expect`` is the target it means to leave: Conflict when the
        device holds another."""
        old = self.jobs.get((device.name, ch))
        requested = dict(params) if expect is None else {**params, "expect": expect}
        if old is not None and old.running:
            raise Busy("channel {} is busy: {} by {} is running; abort it first".format(
                ch, old.procedure, old.who))

        async def ready(d: Thermostat) -> Optional[float]:
            await d.report()  # else the job would start, only to fail at its first exchange
            if expect is None:
                return None
            now = (await d.get_pid())[ch]["target"]
            return None if same_value(now, expect) else now
        try:
            if device.poller.firmware is None:
                raise DeviceDown("{} has not answered yet".format(device.name))
            stale = await self._on_device(device, ready)
            if stale is not None:
                raise Conflict("target changed meanwhile: it is {}, not {} as expected".format(
                    stale, expect), {"value": stale})
        except WriteError as e:
            await self.record(device, procedure, who, channel=ch, client=client,
                               requested=requested, result=e.result, detail=str(e))
            raise
        job = Job(procedure, who, requested)
        run = asyncio.get_running_loop().create_task(
            self._procedure(device, ch, procedure, params, job),
            name="{} {} ch{}".format(procedure, device.name, ch))
        # The procedure checks its arguments before its first exchange with
        # the device: one turn of the loop runs it up to there.
        await asyncio.sleep(0)
        if run.done() and isinstance(run.exception(), ValueError):
            message = str(run.exception())
            name = message.split(" ", 1)[0]
            error = Invalid(name if name in params else "body", message)
            await self.record(device, procedure, who, channel=ch, client=client,
                               requested=job.requested, result=error.result, detail=message)
            raise error
        self.watches[device.name].busy(ch, "{} by {}".format(procedure, who))
        _taken_over(device, ch)
        job.task = asyncio.get_running_loop().create_task(
            self._run(device, ch, job, run, client), name="{} {} ch{} job".format(
                procedure, device.name, ch))
        self.jobs[(device.name, ch)] = job
        await self.record(device, procedure, who, channel=ch, client=client,
                           requested=job.requested, result="started")
        return job

    def _procedure(self, device: Device, ch: int, procedure: str, params: dict,
                   job: Job) -> Awaitable[dict]:
        driver = PolledDriver(device)
        if procedure == "autotune":
            return procedures.autotune(driver, ch, on_progress=job.progress.update,
                                       abort=job.abort, **params)
        if procedure == "ramp":
            watch = self.watches[device.name]

            def stepped(progress: dict) -> None:
                # Each step is the bridge's own write: no outside change, and
                # the rows carry the setpoint of the moment.
                job.progress.update(progress)
                watch.accept(ch, {"target": progress["setpoint"]})
                device.poller.target_written(ch, progress["setpoint"])
            return procedures.ramp(driver, ch, params["target"], params["rate"],
                                   on_progress=stepped, abort=job.abort)
        return procedures.step_response(driver, ch, abort=job.abort, **params)

    async def _run(self, device: Device, ch: int, job: Job, run: "asyncio.Task[dict]",
                   client: Optional[str]) -> None:
        result, detail = "ok", None
        try:
            job.result = await run
        except procedures.Aborted as e:
            result, detail = "aborted", str(e)
        except (ValueError, RuntimeError, ConnectionError, TimeoutError) as e:
            result, detail = "failed", str(e)
        finally:
            self.watches[device.name].busy(ch, None)
        job.error = detail
        job.progress["state"] = "done" if result == "ok" else result
        await self.record(device, job.procedure, job.who, channel=ch, client=client,
                           requested=job.requested, after=job.summary()["result"],
                           result=result, detail=detail)

    async def abort(self, device: Device, ch: int, who: str, client: Optional[str]) -> bool:
        """Ask the procedure on channel ``ch`` to stop (the autotune and the
        step test restore the channel; a ramp leaves the target where it
        got to); False when none runs."""
        job = self.jobs.get((device.name, ch))
        if job is None or not job.running:
            return False
        job.abort.set()
        await self.record(device, "abort", who, channel=ch, client=client,
                           requested={"procedure": job.procedure})
        return True

    async def stop(self) -> None:
        """Abort every procedure and wait until each has restored its channel."""
        for job in self.jobs.values():
            job.abort.set()
        await asyncio.gather(*(j.task for j in self.jobs.values() if j.task is not None),
                             return_exceptions=True)


def _without_data(result: Any) -> Any:
    """A procedure's result without the samples it recorded (``data``)."""
    if isinstance(result, dict):
        return {k: _without_data(v) for k, v in result.items() if k != "data"}
    return result


def _fmt(values: dict) -> str:
    return ", ".join("{} {}".format(k, v) for k, v in values.items())


def _taken_over(device: Device, ch: int) -> None:
    """A person took a simulated channel over: its target steps stop."""
    if device.simulation is not None:
        device.simulation.hold(ch)


def _expected_of(device: Device) -> Optional[Callable[[int, str, Any], bool]]:
    """The simulation's own target steps are no outside change."""
    simulation = device.simulation
    if simulation is None:
        return None
    return lambda ch, name, value: name == "target" and simulation.commanded.get(ch) == value
