"""``python -m pcidevices``: the same as the ``pcidevices`` command."""

from pcidevices.cli import console

console()
