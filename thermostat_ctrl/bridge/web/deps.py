"""FastAPI dependencies shared by the routers: the bridge, the device a
request names, the refusal of query parameters a route does not take, and
422 errors shaped like FastAPI's own."""

from typing import Annotated, Any, Optional

from fastapi import HTTPException, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from ..runtime import Bridge, Device

DeviceName = Annotated[Optional[str], Query(
    description="The device's name (see `/devices`); may be left out when the bridge has"
                " only one", examples=["thermostat0"])]


def invalid(parameter: str, message: str, value: Any) -> RequestValidationError:
    """A 422 error naming a query parameter, shaped like FastAPI's own."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", parameter),
                                    "msg": message, "input": value}])


def _query_names(dependant: Dependant) -> frozenset:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def known_parameters(request: Request) -> None:
    """422 naming each query parameter the route does not declare (a misspelt
    ``from`` would otherwise be ignored and its default answered).  An
    application-wide dependency: every route, added now or later, gets it
    from its own declared parameters."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    declared = _query_names(dependant)  # a walk of a few nodes: microseconds
    unknown = [name for name in dict.fromkeys(request.query_params.keys())
               if name not in declared]
    if unknown:
        takes = "this endpoint takes {}".format(", ".join(sorted(declared))) if declared \
            else "this endpoint takes none"
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name),
             "msg": "unknown query parameter; {}".format(takes),
             "input": request.query_params.get(name)} for name in unknown])


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
