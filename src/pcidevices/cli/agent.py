"""Arguments of ``pcidevices agent``; the agent itself is `pcidevices.wiring.agent`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pcidevices.cli.dra_plugin import dra_options, dra_settings
from pcidevices.cli.node import policy_options
from pcidevices.cli.scan import add_sysfs_option
from pcihost.paths import (
    DEFAULT_DEV_ROOT,
    DEFAULT_DEVICE_PLUGINS_DIR,
    DEFAULT_PROC_ROOT,
    DEFAULT_STATE_FILE,
    DEFAULT_SYSFS_ROOT,
)


def _address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (or ``off``) for --metrics-address."""
    if text == "off":
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:  # noqa: PLR2004 - port range
        msg = f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9090) or 'off'"
        raise argparse.ArgumentTypeError(msg)
    return (host or "0.0.0.0", int(port))  # noqa: S104 - the pod's metrics port


def node_process_options(parser: argparse.ArgumentParser) -> None:
    """What every per-node cluster process takes: the host's roots, node, kubeconfig, rescan."""
    add_sysfs_option(parser)
    parser.add_argument("--proc", type=Path, default=DEFAULT_PROC_ROOT, metavar="ROOT")
    parser.add_argument("--node", help="this node's name (default: $NODE_NAME)")
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)"
    )
    parser.add_argument("--pci-ids", type=Path, metavar="PATH", help="pci.ids database to use")
    parser.add_argument(
        "--rescan-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between idle rescans of the bus (default: 30)",
    )


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``agent`` to the command line."""
    agent = commands.add_parser(
        "agent", help="run the node agent: PCIDevice sync, claims, device plugin, metrics"
    )
    node_process_options(agent)
    agent.add_argument("--dev-root", type=Path, default=DEFAULT_DEV_ROOT, metavar="ROOT")
    agent.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE, metavar="PATH")
    agent.add_argument(
        "--metrics-address",
        type=_address,
        default=("0.0.0.0", 9090),  # noqa: S104
        metavar="HOST:PORT",
        help="serve /metrics /healthz /readyz here, or 'off'",
    )
    agent.add_argument(
        "--group-policy",
        choices=("strict", "group"),
        default="strict",
        help="strict: wait until the whole IOMMU group is claimed; group: move it together",
    )
    policy_options(agent)
    agent.add_argument(
        "--device-plugins-dir",
        type=Path,
        default=DEFAULT_DEVICE_PLUGINS_DIR,
        metavar="DIR",
        help="the kubelet's device-plugins folder",
    )
    agent.add_argument(
        "--no-device-plugin",
        action="store_true",
        help="do not serve the kubelet device plugin in this process",
    )
    agent.add_argument(
        "--no-kernel-events",
        action="store_true",
        help="do not follow the kernel's PCI events (rescan on the timer only)",
    )
    agent.add_argument(
        "--no-usb",
        action="store_true",
        help="do not publish USB devices (USBDevice) nor answer USBDeviceClaims",
    )
    agent.add_argument("--usb-ids", type=Path, metavar="PATH", help="usb.ids database to use")
    agent.add_argument(
        "--dra",
        action="store_true",
        help="also be the DRA driver pci.devices.harvesterhci.io: publish unclaimed devices as "
        "ResourceSlices and serve the kubelet DRA plugin that prepares them; claimed ones stay "
        "with the device plugin",
    )
    dra_options(agent)
    agent.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcicore.policy import GroupPolicy  # noqa: PLC0415 - imported only when it runs
    from pcicore.protection import DenyList  # noqa: PLC0415
    from pcidevices.wiring import agent, scan  # noqa: PLC0415
    from pciplugin.host import PluginSettings  # noqa: PLC0415

    config = agent.AgentConfig(
        node=scan.node_name(args.node, os.environ),
        sysfs=args.sysfs,
        proc=args.proc,
        dev_root=args.dev_root,
        state_file=args.state_file,
        rescan_interval=args.rescan_interval,
        metrics_address=args.metrics_address,
        group_policy=GroupPolicy(args.group_policy),
        deny=DenyList.parse(args.deny),
        device_plugin=not args.no_device_plugin,
        kernel_events=not args.no_kernel_events and args.sysfs == DEFAULT_SYSFS_ROOT,
        plugin_settings=PluginSettings(device_plugins_dir=args.device_plugins_dir),
        usb=not args.no_usb,
        dra=args.dra,
        dra_plugin=dra_settings(args),
    )
    return agent.run(config, args.kubeconfig, args.pci_ids, args.usb_ids)
