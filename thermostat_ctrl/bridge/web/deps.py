"""FastAPI dependencies shared by the routers: the bridge, the device a
request names, and 422 errors shaped like FastAPI's own."""

from typing import Annotated, Any, Optional

from fastapi import HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from ..runtime import Bridge, Device

DeviceName = Annotated[Optional[str], Query(
    description="The device's name (see `/devices`); may be left out when the bridge has"
                " only one", examples=["thermostat0"])]


def invalid(parameter: str, message: str, value: Any) -> RequestValidationError:
    """A 422 error naming a query parameter, shaped like FastAPI's own."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", parameter),
                                    "msg": message, "input": value}])


# The dependencies are coroutines: FastAPI runs a plain function in a worker
# thread, a hop that would cost more than the whole of /report.

async def bridge_of(request: Request) -> Bridge:
    """The :class:`Bridge` serving a request."""
    return request.app.state.bridge


async def device_of(request: Request, device: DeviceName = None) -> Device:
    """The device named by the ``device`` query parameter (see :func:`find_device`)."""
    return find_device(request, device)


def find_device(request: Request, device: Optional[str]) -> Device:
    """The device named ``device``: 422 when it is left out on a bridge with
    several devices, 404 when there is none of that name."""
    devices = request.app.state.bridge.devices
    if device is None:
        if len(devices) == 1:
            return next(iter(devices.values()))
        raise invalid("device", "this bridge serves several devices; name one of: {}".format(
            ", ".join(devices)), None)
    found = devices.get(device)
    if found is None:
        raise HTTPException(404, "no device named {!r}; devices: {}".format(
            device, ", ".join(devices)))
    return found
