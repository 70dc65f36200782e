"""Fixtures: the webhook served in-process on 127.0.0.1, registered with the test API server.

The configurations are those of ``deploy/webhook/admission.yaml`` with two changes: the client
config is a loopback URL with the cluster CA, and an ``objectSelector`` limits them to claims
labelled for one test, so a ``failurePolicy: Fail`` webhook can never touch another test's
objects. They are deleted after the test, whatever its outcome.
"""

from __future__ import annotations

import base64
import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from webhook_support import TEST_LABEL, VALIDATING, Webhook

from pcioperator.kube.api import PCIDEVICECLAIMS, KubeApi
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.facts import ClusterFacts
from pcioperator.webhook.server import WebhookServer
from pcioperator.webhook.usb import UsbClaimAdmission, UsbFacts

if TYPE_CHECKING:
    from collections.abc import Iterator

ADMISSION_MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "webhook" / "admission.yaml"
_REGISTRATION_TIMEOUT = 60.0


def _configurations(url: str, ca_bundle: bytes, label: str) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(ADMISSION_MANIFEST.read_text()) if doc]
    configured = []
    for original in docs:
        doc = copy.deepcopy(original)
        doc["metadata"] = {"name": f"{label}-{doc['kind'].lower()}"}
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"{url}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            hook["objectSelector"] = {"matchLabels": {TEST_LABEL: label}}
        configured.append(doc)
    return configured


@pytest.fixture
def admin(kube) -> KubeApi:
    """The API as the cluster admin, through our own REST layer."""
    return KubeApi(kube.api_client)


@pytest.fixture
def webhook_server(kube, admin) -> Iterator[WebhookServer]:
    """The webhook on 127.0.0.1 with a certificate from the cluster CA, as `webhook` runs it."""
    prefix = kube.serving_cert("pcidevices-webhook")
    server = WebhookServer(
        ClaimAdmission(ClusterFacts(admin), require_claim_verb=True),
        ("127.0.0.1", 0),
        Path(f"{prefix}.crt"),
        Path(f"{prefix}.key"),
        UsbClaimAdmission(UsbFacts(admin, ClusterFacts(admin))),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook(kube, admin, webhook_server, unique_name) -> Iterator[Webhook]:
    """Both webhooks registered for this test's claims, and in effect; removed afterwards."""
    label = unique_name("wh")
    admission = client.AdmissionregistrationV1Api(kube.api_client)
    configurations = _configurations(
        f"https://127.0.0.1:{webhook_server.port}", kube.ca_bundle, label
    )
    hooks = Webhook(label, admin)
    try:
        for doc in configurations:
            if doc["kind"] == "MutatingWebhookConfiguration":
                admission.create_mutating_webhook_configuration(doc)
            else:
                admission.create_validating_webhook_configuration(doc)
        _wait_until_in_effect(admin, hooks)
        yield hooks
    finally:
        for doc in configurations:
            delete = (
                admission.delete_mutating_webhook_configuration
                if doc["kind"] == "MutatingWebhookConfiguration"
                else admission.delete_validating_webhook_configuration
            )
            try:
                delete(doc["metadata"]["name"])
            except ApiException as err:
                if err.status != 404:
                    raise


def _wait_until_in_effect(admin: KubeApi, hooks: Webhook) -> None:
    """Probe until both webhooks answer: the API server loads configurations asynchronously.

    The probe claims a device that does not exist and gives no userName. Before the mutating
    webhook is in effect the schema refuses it (userName is required); before the validating
    one it is created (and deleted again); once both are, our denial comes back.
    """
    from pcioperator.kube.errors import ApiError  # noqa: PLC0415

    name = "probe-node-000000000"
    body = hooks.claim_body(name, "0000:00:00.0", "probe-node")
    deadline = time.monotonic() + _REGISTRATION_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            admin.create(PCIDEVICECLAIMS, body)
        except ApiError as err:  # 500 while the server is not yet reachable
            last = str(err)
            if VALIDATING in last and "no PCIDevice" in last:
                return
        else:
            last = "created"
            admin.patch(PCIDEVICECLAIMS, name, {"metadata": {"labels": {TEST_LABEL: None}}})
            admin.delete(PCIDEVICECLAIMS, name)
        time.sleep(0.25)
    pytest.fail(f"the webhooks were not in effect after {_REGISTRATION_TIMEOUT}s: {last}")
