"""``pcidevices webhook``: the admission webhook's composition root.

`run` loads the kubeconfig and installs signal handlers; `WebhookModule` only builds objects
from what it is given, so tests run the same wiring in-process against a real API server. Its
reads go through the counted `KubeApi` of `CountedApiModule`, like every other process's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import injector
from kubernetes import client as k8s_client

from pcicore.errors import PciDevicesError
from pcidevices.process import (
    CountedApiModule,
    configure_logging,
    load_api_client,
    termination_signal,
)
from pcioperator.kube.api import KubeApi
from pcioperator.kube.schema import check_installed_schema
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.facts import ClusterFacts
from pcioperator.webhook.server import WebhookServer
from pcioperator.webhook.usb import UsbClaimAdmission, UsbFacts

log = logging.getLogger(__name__)


@attrs.frozen
class WebhookConfig:
    """How the webhook serves.

    Attributes:
        cert: TLS certificate (PEM), e.g. ``tls.crt`` of a mounted Secret.
        key: Its private key (PEM).
        address: Host and port to listen on (port 0: any free one).
        require_claim_verb: Also require RBAC verb ``claim`` on the PCIDevice (opt-in).
    """

    cert: Path
    key: Path
    address: tuple[str, int] = ("0.0.0.0", 8443)  # noqa: S104 - a pod's port
    require_claim_verb: bool = False


class WebhookModule(injector.Module):
    """The webhook's wiring. Builds objects only; the server opens its socket when built."""

    def __init__(self, config: WebhookConfig) -> None:
        """Wire a webhook for ``config`` (the API: `CountedApiModule`)."""
        self._config = config

    def configure(self, binder: injector.Binder) -> None:
        """Bind the values given at start-up."""
        binder.bind(WebhookConfig, to=self._config)

    @injector.singleton
    @injector.provider
    def facts(self, api: KubeApi) -> ClusterFacts:
        """What the rules read from the cluster, through the counted API."""
        return ClusterFacts(api)

    @injector.singleton
    @injector.provider
    def admission(self, config: WebhookConfig, facts: ClusterFacts) -> ClaimAdmission:
        """Decisions on claims."""
        return ClaimAdmission(facts, require_claim_verb=config.require_claim_verb)

    @injector.singleton
    @injector.provider
    def usb_admission(self, api: KubeApi, facts: ClusterFacts) -> UsbClaimAdmission:
        """Decisions on USB claims."""
        return UsbClaimAdmission(UsbFacts(api, facts))

    @injector.singleton
    @injector.provider
    def server(
        self, config: WebhookConfig, admission: ClaimAdmission, usb: UsbClaimAdmission
    ) -> WebhookServer:
        """The HTTPS server of the webhooks."""
        return WebhookServer(admission, config.address, config.cert, config.key, usb)


def webhook_injector(config: WebhookConfig, api_client: k8s_client.ApiClient) -> injector.Injector:
    """The injector of one webhook process."""
    return injector.Injector([WebhookModule(config), CountedApiModule(api_client)])


def run(config: WebhookConfig, kubeconfig: Path | None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit status."""
    configure_logging()
    api_client = load_api_client(kubeconfig)
    check_installed_schema(KubeApi(api_client))  # refuse CRDs that would drop our fields
    try:
        server = webhook_injector(config, api_client).get(WebhookServer)
    except (OSError, ValueError) as err:
        raise PciDevicesError(
            f"cannot serve on {config.address[0]}:{config.address[1]} with certificate "
            f"{config.cert} and key {config.key}: {err}; check the files (a mounted TLS Secret) "
            "and that the port is free"
        ) from err
    stop = termination_signal()
    server.start()
    log.info("admission webhook serving on port %d", server.port)
    stop.wait()
    server.stop()
    return 0
