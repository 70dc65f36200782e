"""``kubectl pcidevices``: a kubectl plugin that shows and claims PCI devices cluster-wide.

Installed as the console script ``kubectl-pcidevices``, so ``kubectl pcidevices ...`` finds it on
PATH. Argument parsing and error reporting live here; the commands are in `commands`, imported
only when one runs, so a missing ``pcidevices[kubectl]`` extra is reported in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pcicore.errors import PciDevicesError
from pcidevices.extras import missing_extra_message

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
PROG = "kubectl pcidevices"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kubectl pcidevices`` with ``argv`` (default: the process arguments)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        from pcidevices.kubectl import commands  # noqa: PLC0415 - reports a missing extra

        return commands.run(arguments)
    except ModuleNotFoundError as err:
        message = missing_extra_message(err, "kubectl")
        if message is None:
            raise
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_ERROR
    except PciDevicesError as err:
        sys.stderr.write(f"{PROG}: error: {err}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
