"""``python -m thermostat_ctrl``: the bench command line (:mod:`thermostat_ctrl.cli`)."""

import sys

from .cli import main

sys.exit(main())
