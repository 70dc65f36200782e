"""The ``pcidevices`` command line: argument parsing and error reporting only.

Each sub-command's module is imported only when that command runs, so ``pcidevices scan``
never pays for the Kubernetes or gRPC clients. Every failure the user can fix ends as one line
on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pcicore.errors import PciDevicesError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_host_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sysfs",
        type=Path,
        default=Path("/sys"),
        metavar="ROOT",
        help="sysfs mount point to read (default: /sys)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pcidevices",
        description="Discover PCI devices and hand them to KubeVirt VMs through vfio-pci.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    scan = commands.add_parser(
        "scan", help="list this node's PCI devices as the cluster's PCIDevice objects"
    )
    _add_host_options(scan)
    scan.add_argument(
        "--node", help="node name (default: $NODE_NAME, else this host's name)", default=None
    )
    scan.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    scan.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (default: table)",
    )
    scan.set_defaults(run=_run_scan)
    return parser


def _run_scan(args: argparse.Namespace) -> int:
    from pcidevices import scan  # noqa: PLC0415 - imported only when this command runs

    return scan.run(
        sysfs=args.sysfs,
        node=args.node,
        pci_ids=args.pci_ids,
        output=args.output,
        environ=os.environ,
        stdout=sys.stdout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pcidevices`` with ``argv`` (default: the process arguments); return the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except PciDevicesError as err:
        sys.stderr.write(f"pcidevices {args.command}: error: {err}\n")
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (``| head``) went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
