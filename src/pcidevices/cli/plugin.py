"""Arguments of ``pcidevices plugin``; the command itself is `pcidevices.wiring.plugin`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pcidevices.cli.scan import add_sysfs_option
from pcihost.paths import DEFAULT_DEV_ROOT, DEFAULT_DEVICE_PLUGINS_DIR


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``plugin`` to the command line."""
    plugin = commands.add_parser(
        "plugin",
        help="serve the kubelet device plugin for this node's vfio-pci devices until SIGTERM",
    )
    add_sysfs_option(plugin)
    plugin.add_argument(
        "--dev-root",
        type=Path,
        default=DEFAULT_DEV_ROOT,
        metavar="DIR",
        help="where the host's /dev is mounted (VFIO nodes are checked there; default: /dev)",
    )
    plugin.add_argument(
        "--device-plugins-dir",
        type=Path,
        default=DEFAULT_DEVICE_PLUGINS_DIR,
        metavar="DIR",
        help=f"the kubelet's device-plugins folder (default: {DEFAULT_DEVICE_PLUGINS_DIR})",
    )
    plugin.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    plugin.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcidevices.wiring import plugin  # noqa: PLC0415 - the work is imported only when it runs

    return plugin.run(
        sysfs=args.sysfs,
        dev_root=args.dev_root,
        device_plugins_dir=args.device_plugins_dir,
        pci_ids=args.pci_ids,
    )
