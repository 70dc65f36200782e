"""Arguments of ``pcidevices scan``; the command itself is `pcidevices.wiring.scan`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pcihost.paths import DEFAULT_SYSFS_ROOT


def add_sysfs_option(parser: argparse.ArgumentParser) -> None:
    """``--sysfs ROOT``, shared by every command that touches the host."""
    parser.add_argument(
        "--sysfs",
        type=Path,
        default=DEFAULT_SYSFS_ROOT,
        metavar="ROOT",
        help=f"sysfs mount point to use (default: {DEFAULT_SYSFS_ROOT})",
    )


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``scan`` to the command line."""
    scan = commands.add_parser(
        "scan", help="list this node's PCI devices as the cluster's PCIDevice objects"
    )
    add_sysfs_option(scan)
    scan.add_argument("--node", help="node name (default: $NODE_NAME, else this host's name)")
    scan.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    scan.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (default: table)",
    )
    scan.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcidevices.wiring import scan  # noqa: PLC0415 - the work is imported only when it runs

    return scan.run(
        sysfs=args.sysfs,
        node=args.node,
        pci_ids=args.pci_ids,
        output=args.output,
        environ=os.environ,
        stdout=sys.stdout,
    )
