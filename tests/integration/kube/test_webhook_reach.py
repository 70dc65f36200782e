"""The API server reaches admission webhooks served on 127.0.0.1, as a later issue needs."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
from typing import TYPE_CHECKING

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.kube

DENIAL = "denied by the loopback test webhook"


class _DenyAll(http.server.BaseHTTPRequestHandler):
    """Answers every AdmissionReview with a denial that names this webhook."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"],
                "allowed": False,
                "status": {"code": 403, "message": DENIAL},
            },
        }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def webhook_url(kube) -> Iterator[str]:
    """An HTTPS admission webhook on 127.0.0.1 with a certificate from the cluster CA."""
    prefix = kube.serving_cert("deny-all")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyAll)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{prefix}.crt", f"{prefix}.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/validate"
    server.shutdown()
    server.server_close()


def test_webhook_on_loopback_is_called(kube, webhook_url, unique_name):
    """A namespace create matching a loopback webhook is refused with the webhook's message."""
    label = unique_name("hook")
    admission = client.AdmissionregistrationV1Api(kube.api_client)
    admission.create_validating_webhook_configuration(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": label},
            "webhooks": [
                {
                    "name": "deny.pcidevices.test",
                    "clientConfig": {
                        "url": webhook_url,
                        "caBundle": base64.b64encode(kube.ca_bundle).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["namespaces"],
                        }
                    ],
                    # Only this test's objects: nothing else in the session is affected.
                    "objectSelector": {"matchLabels": {"pcidevices-test": label}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    core = client.CoreV1Api(kube.api_client)
    refusal = ""
    try:
        # The API server picks up new webhook configurations from an informer: allow it a moment.
        deadline = time.monotonic() + 30
        while not refusal and time.monotonic() < deadline:
            name = unique_name("ns")
            try:
                core.create_namespace(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": name, "labels": {"pcidevices-test": label}},
                    }
                )
            except ApiException as err:
                refusal = json.loads(err.body)["message"]
            else:
                time.sleep(0.5)
    finally:
        admission.delete_validating_webhook_configuration(label)
    assert refusal == f'admission webhook "deny.pcidevices.test" denied the request: {DENIAL}'
