"""Exposure: loopback by default, the bridge's bearer token, no wildcard
CORS, the controller's TLS options and its RPC surface.

No test binds anything but loopback: the token logic runs in-process with a
configuration that *says* 0.0.0.0, and the refusal to start is checked on a
command line that must exit before binding.
"""

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness import (BRIDGE, SERVING, Process, bridge_config as configured, free_port, only, polled,
                     wait_until)
from thermostat_ctrl.bridge import cli
from thermostat_ctrl.bridge import config as bridge_config
from thermostat_ctrl.bridge.config import ExposureError
from thermostat_ctrl.bridge.web import security
from thermostat_ctrl.bridge.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-0123456789"
SIPYCO_MISSING = ("sipyco is not installed (it is not on PyPI): "
                  "pip install 'thermostat_ctrl[artiq]' to run the controller tests")


@contextlib.asynccontextmanager
async def app_client(tmp_path, **options):
    """(bridge, client) for an in-process simulation bridge configured with ``options``."""
    app = create_app(configured(tmp_path, memory_s=10.0, **options))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield app.state.bridge, client


def listening_addresses(port: int) -> set:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    found = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError), open(name) as table:
            for line in list(table)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(_address(address, width))
    return found


def _address(hex_address: str, width: int) -> str:
    import ipaddress
    raw = bytes.fromhex(hex_address)
    # /proc/net prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw if width == 32 else raw[:4]))


# ------------------------------------------------------------------- bridge

def test_bridge_binds_loopback_by_default(tmp_path):
    parser = cli.get_argparser()
    config = cli.config_from_args(parser, parser.parse_args(["--simulation"]))
    assert config.bind == "127.0.0.1" and config.token is None and config.port == 8000
    process = Process(BRIDGE + ["--simulation", "--port", "0", "--data-dir", str(tmp_path)])
    try:
        url = process.wait_for_line(SERVING).group(1)
        port = int(url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize("argv, message", [
    (["--bind", "0.0.0.0"], "without a token"),
    (["--bind", "::"], "without a token"),
    (["--bind", "192.0.2.1"], "without a token"),
    (["--bind", "0.0.0.0", "--token", "short"], "at least 16"),
    (["--protect-reads"], "needs a token"),
])
def test_bridge_refuses_to_expose_itself_without_a_token(tmp_path, argv, message):
    env = {k: v for k, v in os.environ.items() if k != "THERMOSTAT_TOKEN"}
    began = time.monotonic()
    r = subprocess.run(BRIDGE + ["--simulation", "--port", "0", "--data-dir", str(tmp_path),
                                 *argv], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and time.monotonic() - began < 15
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "serving" not in r.stderr and not list(tmp_path.iterdir())


def test_bridge_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("THERMOSTAT_TOKEN", TOKEN)
    parser = cli.get_argparser()
    config = cli.config_from_args(parser, parser.parse_args(["--simulation", "--bind",
                                                             "0.0.0.0"]))
    assert config.token == TOKEN and config.bind == "0.0.0.0"


def test_env_factory_refuses_exposure_without_token():
    env = {"THERMOSTAT_SIMULATION": "1", "THERMOSTAT_BIND": "0.0.0.0"}
    with pytest.raises(ExposureError, match="THERMOSTAT_TOKEN"):
        bridge_config.from_env(env)
    config = bridge_config.from_env({**env, "THERMOSTAT_TOKEN": TOKEN,
                                     "THERMOSTAT_PROTECT_READS": "1"})
    assert config.token == TOKEN and config.protect_reads


async def test_post_needs_the_token_reads_stay_open(tmp_path, monkeypatch):
    compared = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest",
                        lambda a, b: compared.append(len(a)) or real(a, b))
    async with app_client(tmp_path, bind="0.0.0.0", token=TOKEN) as (bridge, client):
        await polled(bridge, 2)
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "Bearer " + TOKEN[:-1]},
                        {"Authorization": "Bearer " + TOKEN + "x"},
                        {"Authorization": "Basic " + TOKEN}, {"Authorization": TOKEN},
                        {"X-Token": TOKEN}):
            r = await client.post("/save_once", headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "Traceback" not in r.text
        polls = only(bridge).poller.polls_ok
        r = await client.post("/save_once", headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 200 and only(bridge).poller.polls_ok > polls
        assert compared, "the token must be compared with hmac.compare_digest"
        for path in ("/health", "/report", "/series", "/data.csv", "/metrics", "/docs",
                     "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_protect_reads(tmp_path):
    async with app_client(tmp_path, bind="0.0.0.0", token=TOKEN,
                          protect_reads=True) as (bridge, client):
        await polled(bridge, 2)
        for path in ("/health", "/series", "/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 401, path
            r = await client.get(path, headers={"Authorization": "bearer " + TOKEN})
            # Let through (/health answers 503 for a moment the data is stale:
            # freshness is not what this test is about).
            assert r.status_code in ((200, 503) if path == "/health" else (200,)), path


async def test_no_wildcard_cors(tmp_path):
    async with app_client(tmp_path, bind="0.0.0.0", token=TOKEN) as (bridge, client):
        await polled(bridge, 2)
        origin = {"Origin": "http://evil.example"}
        responses = [await client.get(path, headers=origin)
                     for path in ("/health", "/series", "/data.csv", "/metrics", "/")]
        responses.append(await client.options("/save_once", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"}))
        responses.append(await client.post("/save_once", headers={
            **origin, "Authorization": "Bearer " + TOKEN}))
        for r in responses:
            assert not any(h.lower().startswith("access-control-") for h in r.headers), (
                r.request.url, r.headers)


# --------------------------------------------------------------- controller

@pytest.fixture
def sipyco_rpc():
    """sipyco.pc_rpc (skips without sipyco)."""
    return pytest.importorskip("sipyco.pc_rpc", reason=SIPYCO_MISSING)


def test_controller_binds_loopback_by_default(sipyco_rpc, tmp_path):
    from sipyco import common_args

    from thermostat_ctrl import aqctl_thermostat
    args = aqctl_thermostat.get_argparser().parse_args(["--simulation"])
    assert common_args.bind_address_from_args(args) == ["127.0.0.1", "::1"]
    port = free_port()
    with open(tmp_path / "aqctl.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat",
                                 "--simulation", "-p", str(port)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        found = wait_until(lambda: listening_addresses(port), timeout=30,
                           what="the controller to listen")
        assert found <= {"127.0.0.1", "::1"}, found
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _controller_main(monkeypatch, argv: list) -> dict:
    """Run aqctl_thermostat's main() with sipyco's server loop replaced by a
    recorder (nothing is bound); return what it was called with."""
    import sipyco.pc_rpc

    from thermostat_ctrl import aqctl_thermostat
    served = {}

    def record(targets, host, port, description=None, allow_parallel=False, loop=None,
               **kwargs):
        served.update(targets=targets, host=host, port=port, **kwargs)

    monkeypatch.setattr(sipyco.pc_rpc, "simple_server_loop", record)
    monkeypatch.setattr(sys, "argv", ["aqctl_thermostat", *argv])
    try:
        aqctl_thermostat.main()
    finally:
        asyncio.set_event_loop(None)
    return served


@pytest.mark.parametrize("bind", [["--bind", "*"], ["--no-localhost-bind", "--bind",
                                                    "192.0.2.1"]])
def test_controller_warns_beyond_loopback_without_tls(sipyco_rpc, monkeypatch, caplog, bind):
    with caplog.at_level(logging.WARNING, logger="thermostat_ctrl.aqctl_thermostat"):
        served = _controller_main(monkeypatch, ["--simulation", "-p", "3277", *bind])
    assert "ssl_config" not in served
    assert any("without --ssl" in r.getMessage() for r in caplog.records), caplog.text


def test_controller_tls_option_is_passed_on(sipyco_rpc, monkeypatch, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="thermostat_ctrl.aqctl_thermostat"):
        served = _controller_main(monkeypatch, [
            "--simulation", "-p", "3277", "--bind", "*", "--ssl", "c.pem", "k.pem", "p.pem"])
    config = served["ssl_config"]
    assert (config.local_cert, config.local_key, config.peer_cert) == ("c.pem", "k.pem",
                                                                      "p.pem")
    assert not any("without --ssl" in r.getMessage() for r in caplog.records)


def _certificate(directory: Path, name: str) -> tuple:
    cert, key = directory / (name + ".pem"), directory / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + name, "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.skipif(not any(os.access(os.path.join(p, "openssl"), os.X_OK)
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="the openssl command is needed to make test certificates")
def test_controller_over_tls(sipyco_rpc, tmp_path):
    from sipyco.tools import SimpleSSLConfig
    server_cert, server_key = _certificate(tmp_path, "server")
    client_cert, client_key = _certificate(tmp_path, "client")
    port = free_port()
    with open(tmp_path / "aqctl.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", "--simulation",
             "-p", str(port), "--no-localhost-bind", "--bind", "127.0.0.1",
             "--ssl", server_cert, server_key, client_cert],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        tls = SimpleSSLConfig(client_cert, client_key, server_cert)

        def connect():
            try:
                return sipyco_rpc.Client("127.0.0.1", port, "thermostat", timeout=10,
                                         ssl_config=tls)
            except OSError:
                return None
        client = wait_until(connect, timeout=30, what="a TLS connection")
        try:
            assert client.ping() is True
            assert len(client.report()) == 2
        finally:
            client.close_rpc()
        # A client without a certificate the server trusts is turned away.
        stranger_cert, stranger_key = _certificate(tmp_path, "stranger")
        with pytest.raises(Exception):
            sipyco_rpc.Client("127.0.0.1", port, "thermostat", timeout=5,
                              ssl_config=SimpleSSLConfig(stranger_cert, stranger_key,
                                                         server_cert)).ping()
        with pytest.raises(Exception):
            sipyco_rpc.Client("127.0.0.1", port, "thermostat", timeout=5).ping()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_rpc_reaches_only_public_methods(sipyco_rpc, tmp_path):
    """sipyco calls any attribute name a client sends; the controller serves
    only the facade's public methods, so ``__init__``, ``__setattr__`` or
    ``_call`` cannot break it."""
    port = free_port()
    with open(tmp_path / "aqctl.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", "--simulation",
             "-p", str(port), "--no-localhost-bind", "--bind", "127.0.0.1"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        def connect():
            try:
                return sipyco_rpc.Client("127.0.0.1", port, "thermostat", timeout=10)
            except OSError:
                return None
        client = wait_until(connect, timeout=30, what="the controller")
        try:
            for name, args in (("__init__", [None]), ("__setattr__", ["_driver", None]),
                               ("__delattr__", ["_driver"]), ("_call", [None]),
                               ("__class__", [None]), ("_driver", []),
                               ("__getattribute__", ["_driver"]), ("__reduce__", [])):
                with pytest.raises(AttributeError):  # raw calls, as a hostile client sends
                    client._Client__do_rpc(name, args, {})
            methods = client.get_rpc_method_list()["methods"]
            assert "report" in methods and not any(m.startswith("_") for m in methods)
            assert client.ping() is True and len(client.report()) == 2
        finally:
            client.close_rpc()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
