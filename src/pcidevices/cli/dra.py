"""Arguments of ``pcidevices dra-slices``; the publisher itself is `pcidevices.wiring.dra`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pcidevices.cli.node import policy_options
from pcidevices.cli.scan import add_sysfs_option
from pcihost.paths import DEFAULT_PROC_ROOT

_MAX_DEVICES_PER_SLICE = 128  # resource.k8s.io/v1 ResourceSliceMaxDevices (checked again later)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``dra-slices`` to the command line."""
    dra = commands.add_parser(
        "dra-slices",
        help="publish this node's unclaimed PCI devices as DRA ResourceSlices (no agent needed)",
    )
    add_sysfs_option(dra)
    dra.add_argument("--proc", type=Path, default=DEFAULT_PROC_ROOT, metavar="ROOT")
    dra.add_argument("--node", help="this node's name (default: $NODE_NAME)")
    dra.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)"
    )
    dra.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    dra.add_argument(
        "--rescan-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between idle rescans of the bus (default: 30)",
    )
    dra.add_argument(
        "--devices-per-slice",
        type=int,
        default=_MAX_DEVICES_PER_SLICE,
        metavar="N",
        help="at most N devices per ResourceSlice, 1 to 128 (default: 128)",
    )
    policy_options(dra)
    dra.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcicore.protection import DenyList  # noqa: PLC0415 - imported only when it runs
    from pcidevices.wiring import dra, scan  # noqa: PLC0415

    config = dra.DraConfig(
        node=scan.node_name(args.node, os.environ),
        sysfs=args.sysfs,
        proc=args.proc,
        rescan_interval=args.rescan_interval,
        deny=DenyList.parse(args.deny),
        devices_per_slice=args.devices_per_slice,
    )
    return dra.run(config, args.kubeconfig, args.pci_ids)
