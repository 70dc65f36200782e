"""``python -m pcidevices``: the same as the ``pcidevices`` command."""

import sys

from pcidevices.cli import main

sys.exit(main())
