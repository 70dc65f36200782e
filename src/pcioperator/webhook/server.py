"""`WebhookServer`: both admission webhooks over HTTPS, on the standard library.

Paths: ``POST /validate``, ``POST /mutate`` (PCIDeviceClaims) and ``POST /validate-usb``
(USBDeviceClaims) take an AdmissionReview v1; ``GET /healthz``
answers ``ok`` for the Deployment's probes. The certificate and key are files (a Secret mounted
in the pod); a rotated Secret takes effect when the pod restarts.
"""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Final

from pcicore.admission import Verdict
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.review import MalformedReviewError, parse_review, response_review
from pcioperator.webhook.usb import UsbClaimAdmission

log = logging.getLogger(__name__)

VALIDATE_PATH: Final = "/validate"
VALIDATE_USB_PATH: Final = "/validate-usb"
MUTATE_PATH: Final = "/mutate"
HEALTH_PATH: Final = "/healthz"
_MAX_BODY: Final = 3 * 1024 * 1024  # the API server's request size limit
_OK: Final = 200
_BAD_REQUEST: Final = 400
_NOT_FOUND: Final = 404


class _AdmissionHandler(http.server.BaseHTTPRequestHandler):
    server: _AdmissionHttpServer

    @property
    def _route(self) -> str:
        # The API server appends ?timeout=5s to the configured URL.
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self) -> None:
        if self._route == HEALTH_PATH:
            self._send(_OK, b"ok", "text/plain")
        else:
            self._send(_NOT_FOUND, b"not found", "text/plain")

    def do_POST(self) -> None:
        route = self._route
        usb = self.server.usb_admission
        if route not in {VALIDATE_PATH, MUTATE_PATH} and not (
            route == VALIDATE_USB_PATH and usb is not None
        ):
            self._send(_NOT_FOUND, b"not found", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_BODY:
            self._send(_BAD_REQUEST, b"an AdmissionReview body is required", "text/plain")
            return
        try:
            request = parse_review(self.rfile.read(length))
        except MalformedReviewError as err:
            self._send(_BAD_REQUEST, str(err).encode(), "text/plain")
            return
        admission = self.server.admission
        if route == MUTATE_PATH:
            answer = response_review(request.uid, Verdict.allow(), admission.mutate(request))
        elif route == VALIDATE_USB_PATH and usb is not None:
            answer = response_review(request.uid, usb.validate(request))
        else:
            answer = response_review(request.uid, admission.validate(request))
        self._send(_OK, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        log.debug(format, *args)


class _AdmissionHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        admission: ClaimAdmission,
        usb_admission: UsbClaimAdmission | None,
    ) -> None:
        super().__init__(address, _AdmissionHandler)
        self.admission = admission
        self.usb_admission = usb_admission


class WebhookServer:
    """Serves `ClaimAdmission` on ``address`` over TLS, in a thread of its own."""

    def __init__(
        self,
        admission: ClaimAdmission,
        address: tuple[str, int],
        cert: Path,
        key: Path,
        usb_admission: UsbClaimAdmission | None = None,
    ) -> None:
        """Listen on ``address`` (port 0: any free port) with the certificate ``cert``/``key``.

        ``usb_admission`` answers ``/validate-usb`` (``None``: that path is not served).

        Raises:
            OSError: the address is taken, or the certificate files cannot be read.
            ssl.SSLError: the files are not a matching certificate and key.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key))
        self._http = _AdmissionHttpServer(address, admission, usb_admission)
        # The handshake runs on first read, in the request's thread, not in accept(): one slow
        # client must not hold up every other request.
        self._http.socket = context.wrap_socket(
            self._http.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._http.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="admission-webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
