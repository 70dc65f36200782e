"""Arguments of ``pcidevices controller``; the process itself is `pcidevices.wiring.controller`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pcidevices.cli.agent import _address


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``controller`` to the command line."""
    controller = commands.add_parser(
        "controller",
        help="run the cluster controller (leader-elected): keep KubeVirt's permitted PCI "
        "host devices in step with the claims",
    )
    controller.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)"
    )
    controller.add_argument(
        "--kubevirt-namespace",
        metavar="NS",
        help="namespace of the KubeVirt CR (default: the namespace of the cluster's only "
        "KubeVirt CR, e.g. harvester-system in Harvester, kubevirt in a standard install)",
    )
    controller.add_argument(
        "--kubevirt-name",
        metavar="NAME",
        help="name of the KubeVirt CR (default: the cluster's only KubeVirt CR, usually kubevirt)",
    )
    controller.add_argument(
        "--lease-namespace",
        default="pcidevices-system",
        metavar="NS",
        help="namespace of the leader-election Lease (default: pcidevices-system)",
    )
    controller.add_argument(
        "--lease-name",
        default="pcidevices-controller",
        metavar="NAME",
        help="name of the leader-election Lease (default: pcidevices-controller)",
    )
    controller.add_argument(
        "--identity", help="this replica's name in the Lease (default: $POD_NAME, else host-pid)"
    )
    controller.add_argument(
        "--metrics-address",
        type=_address,
        default=("0.0.0.0", 9090),  # noqa: S104 - the pod's metrics port
        metavar="HOST:PORT",
        help="serve /metrics /healthz /readyz here, or 'off'",
    )
    controller.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcidevices.wiring import controller  # noqa: PLC0415 - imported only when it runs
    from pcioperator.controllers.kubevirt import KubeVirtTarget  # noqa: PLC0415
    from pcioperator.kube.leader import LeaseSettings  # noqa: PLC0415

    config = controller.ControllerConfig(
        target=KubeVirtTarget(namespace=args.kubevirt_namespace, name=args.kubevirt_name),
        lease=LeaseSettings(
            namespace=args.lease_namespace,
            name=args.lease_name,
            identity=args.identity or controller.default_identity(),
        ),
        metrics_address=args.metrics_address,
    )
    return controller.run(config, args.kubeconfig)
