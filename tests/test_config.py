"""The bridge's configuration: one merge of defaults, TOML file, environment
and command line, checked before anything runs; errors that say where."""

from pathlib import Path

import pytest

from harness import FIRST, polled, run_cli, running_bridge, wait_for
from thermostat_ctrl.bridge import config

LAB = ('poll_period = 2.0\nfields = ["temperature"]\n'
       '[[device]]\nname = "laser"\naddress = "10.0.0.5"\n'
       '[[device]]\nname = "cavity"\naddress = "10.0.0.6:2323"\n')


def _toml(tmp_path, text, name="bridge.toml"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_defaults_then_file_then_environment_then_command_line(tmp_path):
    path = _toml(tmp_path, 'memory_s = 900\nport = 8123\n' + LAB)
    loaded = config.load({"config": path}, {})
    laser, cavity = loaded.devices
    assert (laser.poll_period, laser.fields, loaded.memory_s, loaded.port) == (
        2.0, ("temperature",), 900, 8123)
    assert loaded.data_dir == "./thermostat-data" and laser.firmware == "auto"  # defaults
    env = {"THERMOSTAT_MEMORY_S": "1200", "THERMOSTAT_POLL_PERIOD": "3"}
    loaded = config.load({"config": path, "poll_period": 0.5}, env)
    assert loaded.memory_s == 1200 and {d.poll_period for d in loaded.devices} == {0.5}
    # The environment's file, and devices given later replace the file's.
    loaded = config.load({"devices": ["lab=10.0.0.9"]}, {"THERMOSTAT_CONFIG": path})
    assert [d.name for d in loaded.devices] == ["lab"] and loaded.port == 8123


@pytest.mark.parametrize("text, words", [
    (LAB + '[[device]]\nname = "probe"\naddress = "10.0.0.7"\nfields = ["temprature"]\n',
     ["bridge.toml", "[[device]] 3", "device probe", "fields", "temprature"]),
    (LAB + '[[device]]\nname = "probe"\naddress = "10.0.0.7"\npoll_period = -1\n',
     ["bridge.toml", "[[device]] 3", "device probe", "poll period", "-1"]),
    (LAB.replace('["temperature"]', '["temperature", "tec_j"]'),
     ["bridge.toml", "device laser", "fields", "tec_j"]),
    ('memory_s = 0.5\n' + LAB, ["bridge.toml", "memory", "0.5"]),
    ('port = 70000\n' + LAB, ["bridge.toml", "port", "70000"]),
    ('data_dir = 3\n' + LAB, ["bridge.toml", "data_dir", "3"]),
    (b'poll_period = 1.0\n# caf\xe9\n', ["bridge.toml", "not UTF-8", "0xe9"]),
])
def test_a_file_error_names_the_file_the_device_and_the_key(tmp_path, text, words):
    path = _toml(tmp_path, text)
    with pytest.raises(ValueError) as error:
        config.load({"config": path}, {})
    message = str(error.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_an_error_names_the_variable_or_the_option():
    with pytest.raises(ValueError, match="^THERMOSTAT_POLL_PERIOD: device sim0: poll"):
        config.load({}, {"THERMOSTAT_SIMULATION": "1", "THERMOSTAT_POLL_PERIOD": "0"})
    with pytest.raises(ValueError, match="^--fields: device sim0: fields: unknown"
                                         " field.*nosuch"):
        config.load({"simulation": 2, "fields": ("temperature", "nosuch")}, {})
    with pytest.raises(ValueError, match="^THERMOSTAT_FIELDS: empty name"):
        config.load({}, {"THERMOSTAT_SIMULATION": "1", "THERMOSTAT_FIELDS": "a,,b"})


def test_every_known_report_field_is_accepted():
    device = config.DeviceConfig("laser", "10.0.0.5", fields=["vref", "device_time", "target"])
    assert device.fields == ("vref", "device_time", "target")
    with pytest.raises(ValueError, match="repeated"):
        config.DeviceConfig("laser", "10.0.0.5", fields=("adc", "adc"))


def test_a_field_typo_is_one_line_and_exit_2_before_anything_is_written(tmp_path):
    path = _toml(tmp_path, 'data_dir = "{}"\n'.format(tmp_path / "data")
                 + LAB.replace('["temperature"]', '["temperature", "tec_j"]'))
    r = run_cli("--config", path, "--port", "0")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "bridge.toml" in line and "device laser" in line and "tec_j" in line, line
    assert not (tmp_path / "data").exists()


async def test_a_device_lacking_a_field_is_faulty_and_the_others_go_on(tmp_path):
    async with running_bridge(tmp_path, simulation=2, fields=("temperature", "tec_i")) as (
            bridge, client):
        await polled(bridge, 2)
        bad, good = bridge.devices["sim1"], bridge.devices[FIRST]
        report = bad.simulation.sim.device._report
        # As a firmware whose report has no tec_i would answer.
        bad.simulation.sim.device._report = lambda ch: {
            k: v for k, v in report(ch).items() if k != "tec_i"}
        await wait_for(lambda: bad.poller.failures["fields"] >= 3, what="3 refused reports")
        written, polls = bad.store.rows_written, good.poller.polls_ok
        await polled(bridge, polls + 5, device=FIRST)
        # The others go on (a loaded machine may make one stale for a moment: wait).
        r = await wait_for(lambda: _health_when(client, {FIRST: "ok", "sim1": "failed"}),
                           what="sim0 ok, sim1 failed")
        assert r.status_code == 503
        assert "tec_i" in {d["name"]: d for d in r.json()["devices"]}["sim1"]["error"]
        assert bad.store.rows_written == written  # nothing recorded meanwhile
        assert not bridge.failed.is_set()
        r = await client.post("/save_once", params={"device": "sim1"})
        assert r.status_code == 503 and "tec_i" in r.json()["detail"]

        bad.simulation.sim.device._report = report  # the report has the field again
        await wait_for(lambda: bad.store.rows_written >= written + 3, what="rows again")
        assert (await client.get("/health", params={"device": "sim1"})).json()[
            "error"] is None


async def _health_when(client, states: dict):
    response = await client.get("/health")
    found = {d["name"]: d["status"] for d in response.json()["devices"]}
    return response if found == states else None


def test_device_list_from_the_environment():
    loaded = config.from_env(
        {"THERMOSTAT_DEVICES": "a=10.0.0.5, b=10.0.0.6:2323,10.0.0.7"})
    assert [(d.name, d.address) for d in loaded.devices] == [
        ("a", "10.0.0.5"), ("b", "10.0.0.6:2323"), ("thermostat2", "10.0.0.7")]
    (device,) = config.from_env({"THERMOSTAT_DEVICE": "10.0.0.5"}).devices
    assert (device.name, device.address) == ("thermostat0", "10.0.0.5")
    loaded = config.from_env({"THERMOSTAT_SIMULATION": "3"})
    assert [d.name for d in loaded.devices] == ["sim0", "sim1", "sim2"] and loaded.simulation
    for env, message in [({"THERMOSTAT_DEVICES": "A=10.0.0.5"}, "device name 'A'"),
                         ({"THERMOSTAT_DEVICES": "a=x,a=y"}, "more than once"),
                         ({"THERMOSTAT_DEVICES": "a=x:0"}, "'a=x:0'"),
                         ({}, "at least one device")]:
        with pytest.raises(ValueError, match=message):
            config.from_env(env)


def test_toml_file(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('poll_period = 2.0\nfields = ["temperature"]\n'
                    '[[device]]\nname = "laser"\naddress = "10.0.0.5"\n'
                    '[[device]]\nname = "cavity"\naddress = "10.0.0.6:2323"\n'
                    'poll_period = 0.1\nfirmware = "2023"\n')
    settings = config.read_toml(str(path))
    loaded = config.build(**settings)
    laser, cavity = loaded.devices
    assert (laser.name, laser.address, laser.poll_period, laser.fields) == (
        "laser", "10.0.0.5", 2.0, ("temperature",))
    assert (cavity.poll_period, cavity.firmware) == (0.1, "2023")


def test_the_systemd_example_configuration_is_valid():
    path = Path(__file__).resolve().parent.parent / "scripts/systemd/thermostat-bridge.toml"
    loaded = config.build(**config.read_toml(str(path)))
    assert [(d.name, d.address) for d in loaded.devices] == [("thermostat0", "192.168.1.26")]

