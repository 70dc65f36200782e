"""The `pcidevices` command line."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line (placeholder until the commands land)."""
    del argv
    sys.stderr.write("pcidevices: no commands yet\n")
    return 2
