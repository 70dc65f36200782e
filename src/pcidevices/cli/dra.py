"""Arguments of ``pcidevices dra-slices``; the publisher itself is `pcidevices.wiring.dra`."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pcidevices.cli.agent import node_process_options
from pcidevices.cli.node import policy_options

_MAX_DEVICES_PER_SLICE = 128  # resource.k8s.io/v1 ResourceSliceMaxDevices (checked again later)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``dra-slices`` to the command line."""
    dra = commands.add_parser(
        "dra-slices",
        help="publish this node's unclaimed PCI devices as DRA ResourceSlices (no agent needed)",
    )
    node_process_options(dra)
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
