"""Arguments of ``pcidevices dra-plugin``; the plugin itself is `pcidevices.wiring.dra_plugin`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcidevices.cli.node import policy_options
from pcidevices.cli.scan import add_sysfs_option
from pcihost.paths import (
    DEFAULT_CDI_DIR,
    DEFAULT_DEV_ROOT,
    DEFAULT_DRA_PLUGIN_DIR,
    DEFAULT_PLUGINS_REGISTRY_DIR,
    DEFAULT_PROC_ROOT,
    DEFAULT_STATE_FILE,
)

if TYPE_CHECKING:
    from pciplugin.dra.host import DraPluginSettings


def dra_options(parser: argparse.ArgumentParser) -> None:
    """The DRA plugin's folders (shared with ``agent --dra`` when the lead joins them)."""
    parser.add_argument(
        "--dra-plugin-dir",
        type=Path,
        default=DEFAULT_DRA_PLUGIN_DIR,
        metavar="DIR",
        help=f"the plugin's socket, checkpoint and metadata (default: {DEFAULT_DRA_PLUGIN_DIR})",
    )
    parser.add_argument(
        "--plugins-registry-dir",
        type=Path,
        default=DEFAULT_PLUGINS_REGISTRY_DIR,
        metavar="DIR",
        help=f"the kubelet's plugin-registration folder (default: {DEFAULT_PLUGINS_REGISTRY_DIR})",
    )
    parser.add_argument(
        "--cdi-dir",
        type=Path,
        default=DEFAULT_CDI_DIR,
        metavar="DIR",
        help=f"where CDI specs are written (default: {DEFAULT_CDI_DIR})",
    )


def dra_settings(args: argparse.Namespace) -> DraPluginSettings:
    """The DRA plugin's folders from the options `dra_options` added."""
    from pciplugin.dra.host import DraPluginSettings  # noqa: PLC0415 - imported only when it runs

    return DraPluginSettings(
        plugin_dir=args.dra_plugin_dir,
        registry_dir=args.plugins_registry_dir,
        cdi_dir=args.cdi_dir,
    )


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``dra-plugin`` to the command line."""
    plugin = commands.add_parser(
        "dra-plugin",
        help="serve the kubelet DRA plugin (prepare = safe vfio-pci bind + CDI) until SIGTERM",
    )
    add_sysfs_option(plugin)
    plugin.add_argument("--proc", type=Path, default=DEFAULT_PROC_ROOT, metavar="ROOT")
    plugin.add_argument("--dev-root", type=Path, default=DEFAULT_DEV_ROOT, metavar="ROOT")
    plugin.add_argument(
        "--state-file",
        type=Path,
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help="the agent's claim state file (devices PCIDeviceClaims hold are refused)",
    )
    plugin.add_argument("--node", help="this node's name (default: $NODE_NAME)")
    plugin.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)"
    )
    plugin.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    plugin.add_argument(
        "--group-policy",
        choices=("strict", "group"),
        default="strict",
        help="strict: refuse a device whose IOMMU group is not all allocated or free; "
        "group: move the whole group",
    )
    policy_options(plugin)
    dra_options(plugin)
    plugin.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcicore.policy import GroupPolicy  # noqa: PLC0415 - imported only when it runs
    from pcicore.protection import DenyList  # noqa: PLC0415
    from pcidevices.wiring import dra_plugin, scan  # noqa: PLC0415
    from pcidevices.wiring.host import HostConfig  # noqa: PLC0415

    host = HostConfig(
        sysfs=args.sysfs, proc=args.proc, dev_root=args.dev_root, state_file=args.state_file
    )
    config = dra_plugin.DraPluginConfig(
        node=scan.node_name(args.node, os.environ),
        policy=GroupPolicy(args.group_policy),
        settings=dra_settings(args),
    )
    return dra_plugin.run(
        host,
        config,
        deny=DenyList.parse(args.deny),
        kubeconfig=args.kubeconfig,
        pci_ids=args.pci_ids,
    )
