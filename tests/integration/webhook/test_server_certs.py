"""``pcidevices webhook-certs`` writes a CA and certificate the webhook server serves with."""

from __future__ import annotations

import base64
import http.client
import json
import ssl

import pytest

from pcidevices.cli import main
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.server import WebhookServer


class _NoCluster:
    """Facts that are never needed: these requests do not reach a rule that reads."""


@pytest.fixture
def served(tmp_path, capsys):
    """The server on 127.0.0.1 with certificates from ``pcidevices webhook-certs``."""
    out = tmp_path / "certs"
    assert (
        main(
            [
                "webhook-certs",
                "--out",
                str(out),
                "--dns-name",
                "localhost",
                "--dns-name",
                "127.0.0.1",
            ]
        )
        == 0
    )
    assert sorted(capsys.readouterr().out.split()) == sorted(
        str(out / name) for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")
    )
    admission = ClaimAdmission(_NoCluster())  # type: ignore[arg-type]
    server = WebhookServer(admission, ("127.0.0.1", 0), out / "tls.crt", out / "tls.key")
    server.start()
    context = ssl.create_default_context(cafile=str(out / "ca.crt"))
    yield lambda: http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
    server.stop()


def test_health_over_verified_tls(served):
    """/healthz answers ok to a client that trusts only the generated CA."""
    connection = served()
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"ok")


def test_malformed_review_is_a_bad_request(served):
    """A body that is not an AdmissionReview gets 400 with the reason."""
    connection = served()
    connection.request(
        "POST", "/validate?timeout=5s", body=b"{}", headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert response.status == 400
    assert b"not an AdmissionReview v1 with a request" in response.read()


def test_mutate_sets_user_name(served):
    """The mutating path answers a create without userName with a JSONPatch adding it.

    It records the authenticated user in an annotation as well (who really asked).
    """
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "operation": "CREATE",
            "name": "titan-000003000",
            "userInfo": {"username": "carol"},
            "object": {"spec": {"address": "0000:03:00.0", "nodeName": "titan"}},
        },
    }
    connection = served()
    connection.request(
        "POST",
        "/mutate",
        body=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer = json.loads(connection.getresponse().read())["response"]
    assert answer["uid"] == "u-1"
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["patch"])) == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"devices.harvesterhci.io/requested-by": "carol"},
        },
        {"op": "add", "path": "/spec/userName", "value": "carol"},
    ]
