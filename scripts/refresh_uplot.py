#!/usr/bin/env python3
"""Refresh the vendored uPlot (the live view's plotting library) from the npm registry.

    python scripts/refresh_uplot.py            # the latest release
    python scripts/refresh_uplot.py 1.6.32     # a given version

Uses the ``npm`` client only to fetch the package tarball (``npm pack``);
nothing of Node is needed to install or run the bridge.  The tarball is
checked against the integrity hash the registry gives, then its minified
browser build, stylesheet and license are copied to
``thermostat_ctrl/bridge/web/static/uplot/`` and the version is recorded
there in ``VERSION``.
"""

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "uplot"
TARGET = Path(__file__).resolve().parent.parent / "thermostat_ctrl/bridge/web/static/uplot"
#: Tarball member -> vendored file name.
FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "LICENSE",
}


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise ValueError unless ``data`` matches the registry's SRI ``integrity``."""
    algorithm, _, digest = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise ValueError("unsupported integrity algorithm {!r}".format(algorithm))
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != digest:
        raise ValueError("tarball integrity mismatch: {} != {}".format(actual, digest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", nargs="?", default="latest",
                        help="uPlot version to vendor (default: latest)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(
            ["npm", "pack", "{}@{}".format(PACKAGE, args.version), "--json",
             "--pack-destination", tmp], check=True, capture_output=True, text=True)
        (info,) = json.loads(packed.stdout)
        tarball = Path(tmp) / info["filename"]
        check_integrity(tarball.read_bytes(), info["integrity"])
        TARGET.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for member, name in FILES.items():
                source = archive.extractfile(member)
                if source is None:
                    sys.exit("{} is missing from {}".format(member, info["filename"]))
                (TARGET / name).write_bytes(source.read())
    (TARGET / "VERSION").write_text("{} {}\nintegrity {}\n".format(
        PACKAGE, info["version"], info["integrity"]))
    print("vendored {} {} into {}".format(PACKAGE, info["version"], TARGET))


if __name__ == "__main__":
    main()
