"""``thermostat_bridge import``: bring the original server's CSV into a data directory.

    thermostat_bridge import thermostat.csv --device laser --data-dir /var/lib/thermostat-bridge

Streams the file into the device's daily files (:mod:`.storage.importer`)
with a progress bar, then prints a summary with the reason for each of the
first refused lines.  Exit status 0 when every line was a row (or a
duplicate), 1 when some were refused, 2 (one line) when nothing could be
done: a bad file or option, or a bridge holding the data directory.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)

from .. import argtypes
from .config import DATA_DIR, DEVICE_NAME
from .storage.datadir import DataDirError, DataDirLock, device_dir
from .storage.importer import import_csv

PROG = "thermostat_bridge import"


def get_argparser() -> argparse.ArgumentParser:
    """The command-line parser of the subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Import the single CSV file of the original Thermostat server into the"
                    " daily files of one device (idempotent: rows already there are skipped).")
    parser.add_argument("file", metavar="FILE.csv", help="the original server's CSV file")
    parser.add_argument("--device", required=True, metavar="NAME",
                        help="the device whose history it is (as named to the bridge)")
    parser.add_argument("--data-dir", default=DATA_DIR,
                        help="the bridge's data directory (default {})".format(DATA_DIR))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``thermostat_bridge import``."""
    parser = get_argparser()
    args = parser.parse_args(argv)
    if not DEVICE_NAME.match(args.device):
        parser.error("--device {!r} must match {}".format(args.device, DEVICE_NAME.pattern))
    try:
        size = os.stat(args.file).st_size
        lock = DataDirLock(args.data_dir)
    except DataDirError as e:
        argtypes.fail(PROG, e)
    except OSError as e:
        argtypes.fail(PROG, "cannot read {}: {}".format(args.file, e.strerror or e))
    console = Console(stderr=True)
    try:
        with Progress(TextColumn("importing"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                      disable=not console.is_terminal) as progress:
            task = progress.add_task("import", total=size)
            summary = import_csv(args.file, device_dir(args.data_dir, args.device),
                                 lambda done: progress.update(task, completed=done))
    except (ValueError, OSError) as e:
        argtypes.fail(PROG, "{}: {}".format(args.file, getattr(e, "strerror", None) or e))
    except KeyboardInterrupt:
        print("thermostat_bridge import: interrupted; every day written so far is complete,"
              " run it again to import the rest", file=sys.stderr)
        sys.exit(130)
    finally:
        lock.release()
    print("{}: {}".format(args.file, summary))
    sys.exit(1 if summary.malformed else 0)
