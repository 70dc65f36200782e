"""Arguments of ``pcidevices webhook`` and ``pcidevices webhook-certs``.

The webhook itself is `pcidevices.wiring.webhook`; the certificate generator is
`pcioperator.webhook.certs`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pcicore.protection import NO_IOMMU_UNSUPPORTED
from pcidevices.cli.node import RemovedOption


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``webhook`` and ``webhook-certs`` to the command line."""
    webhook = commands.add_parser(
        "webhook", help="serve the PCIDeviceClaim admission webhooks (validating, mutating)"
    )
    webhook.add_argument("--cert", type=Path, required=True, metavar="FILE", help="TLS cert (PEM)")
    webhook.add_argument("--key", type=Path, required=True, metavar="FILE", help="its key (PEM)")
    webhook.add_argument("--port", type=int, default=8443, help="HTTPS port (default: 8443)")
    webhook.add_argument(
        "--bind-address",
        default="0.0.0.0",  # noqa: S104 - a pod's port
        metavar="HOST",
        help="address to listen on",
    )
    webhook.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)"
    )
    webhook.add_argument(
        "--require-claim-verb",
        action="store_true",
        help="also require RBAC verb 'claim' on the PCIDevice (per-device permission; no "
        "Harvester role grants it, so its UI's claims are refused until you grant it)",
    )
    webhook.add_argument("--allow-no-iommu", action=RemovedOption, default=NO_IOMMU_UNSUPPORTED)
    webhook.set_defaults(run=_run)

    certs = commands.add_parser(
        "webhook-certs",
        help="write a self-signed CA and a webhook serving certificate (tests, first installs)",
    )
    certs.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write to")
    certs.add_argument(
        "--dns-name",
        action="append",
        required=True,
        metavar="NAME",
        help="a name the certificate is valid for (repeat; IP addresses allowed), e.g. "
        "pcidevices-webhook.pcidevices-system.svc",
    )
    certs.add_argument("--days", type=int, default=365, help="validity in days (default: 365)")
    certs.set_defaults(run=_run_certs)


def _run(args: argparse.Namespace) -> int:
    from pcidevices.wiring import webhook  # noqa: PLC0415 - imported only when it runs

    config = webhook.WebhookConfig(
        cert=args.cert,
        key=args.key,
        address=(args.bind_address, args.port),
        require_claim_verb=args.require_claim_verb,
    )
    return webhook.run(config, args.kubeconfig)


def _run_certs(args: argparse.Namespace) -> int:
    from pcioperator.webhook.certs import write_certificates  # noqa: PLC0415

    written = write_certificates(args.out, args.dns_name, days=args.days)
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0
