"""device_db_snippet.py, the shipped experiments and the packaging files
around the controller: sanity checks that need neither ARTIQ nor sipyco."""

import ast
import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def exec_snippet() -> dict:
    namespace = {}
    exec(compile((ROOT / "device_db_snippet.py").read_text(), "device_db_snippet.py", "exec"),
         namespace)
    return namespace["device_db"]


def setup_console_scripts() -> dict:
    """console_scripts declared in setup.py: name -> "module:function"."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    specs = ast.literal_eval(value)
                    return dict(tuple(p.strip() for p in s.split("=", 1)) for s in specs)
    raise AssertionError("no console_scripts in setup.py")


def test_entry_is_a_controller():
    entry = exec_snippet()["thermostat"]
    assert entry["type"] == "controller"
    assert entry["host"] == "localhost"
    assert entry["port"] == 3277
    assert entry["target_name"] == "thermostat"


def test_command_formats_like_the_controller_manager():
    entry = exec_snippet()["thermostat"]
    # artiq_ctlmgr: command.format(name=..., bind=..., **entry), then shlex.split
    command = entry["command"].format(name="thermostat", bind="::1", **entry)
    argv = shlex.split(command)
    assert argv[:5] == ["aqctl_thermostat", "-p", "3277", "--bind", "::1"]
    assert argv[argv.index("-d") + 1] == "192.168.1.26"
    assert entry["command"].format(port=4000, bind="localhost", name="x").split()[2] == "4000"


def test_command_names_an_installed_entry_point():
    name = shlex.split(exec_snippet()["thermostat"]["command"])[0]
    assert setup_console_scripts()[name] == "thermostat_ctrl.aqctl_thermostat:main"
    installed = {ep.name: ep.value
                 for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert installed.get(name) == "thermostat_ctrl.aqctl_thermostat:main", (
        "reinstall the package (pip install -e .) to register " + name)
    from thermostat_ctrl.aqctl_thermostat import get_argparser, main
    assert callable(main) and callable(get_argparser)


def test_commented_simulation_variant():
    text = (ROOT / "device_db_snippet.py").read_text()
    commented = "\n".join(line.lstrip("# ") for line in text.splitlines()
                          if line.startswith("#"))
    match = re.search(r'"command": "([^"]*--simulation[^"]*)"', commented)
    assert match, "no commented --simulation variant"
    argv = shlex.split(match.group(1).format(port=3277, bind="::1", name="thermostat"))
    assert argv[0] == "aqctl_thermostat" and "-d" not in argv


EXPERIMENTS = sorted(p.relative_to(ROOT).as_posix()
                     for p in (ROOT / "thermostat_ctrl" / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS + ["device_db_snippet.py"])
def test_python_files_compile(path):
    compile((ROOT / path).read_text(), path, "exec")


def test_every_shipped_experiment_names_its_device_by_argument():
    for path in EXPERIMENTS:
        text = (ROOT / path).read_text()
        if path.endswith("__init__.py"):
            continue
        assert "setattr_thermostat(self)" in text or "get_thermostat(self, name)" in text, path


def test_multi_device_entries():
    db = exec_snippet()
    laser, cavity = db["thermostat_laser"], db["thermostat_cavity"]
    argv = shlex.split(laser["command"].format(bind="::1", name="thermostat_laser", **laser))
    names = [argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "-d"]
    assert names == ["laser", "cavity"] and laser["target_name"] == "laser"
    assert cavity == {"type": "controller_aux_target", "controller": "thermostat_laser",
                      "target_name": "cavity", "best_effort": True}
    # the controller's own parser (it needs sipyco) accepts the command
    pytest.importorskip("sipyco", reason="sipyco is not installed (not on PyPI)")
    from thermostat_ctrl.aqctl_thermostat import devices_from_args, get_argparser
    parser = get_argparser()
    served = devices_from_args(parser, parser.parse_args(argv[1:]))
    assert [name for name, _ in served] == ["laser", "cavity"]
