"""A self-signed CA and a serving certificate for the webhook, for tests and first installs.

``cryptography`` is not a dependency of this project, so the keys and certificates are made by
the ``openssl`` command (present in nearly every image). Production clusters should prefer a
certificate manager; this writes the files a ``kubernetes.io/tls`` Secret and a webhook
configuration's ``caBundle`` need.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pcicore.errors import PciDevicesError


class CertificateError(PciDevicesError):
    """The certificates could not be written; the message says why and what to do."""


def _subject_alt_names(names: Sequence[str]) -> str:
    entries = []
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            entries.append(f"DNS:{name}")
        else:
            entries.append(f"IP:{name}")
    return ",".join(entries)


def write_certificates(out: Path, names: Sequence[str], days: int = 365) -> list[Path]:
    """Write ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key`` in ``out``; return their paths.

    Raises:
        CertificateError: ``openssl`` is missing or failed, or ``out`` cannot be written.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError(
            "the openssl command is not on PATH; install it, or make the CA and certificate "
            "with a certificate manager"
        )
    if not names:
        raise CertificateError("give at least one --dns-name")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CertificateError(f"cannot create {out}: {err}") from err
    ca_key, ca_crt = out / "ca.key", out / "ca.crt"
    key, csr, crt = out / "tls.key", out / "tls.csr", out / "tls.crt"
    extensions = out / "tls.ext"
    extensions.write_text(
        f"subjectAltName={_subject_alt_names(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    steps = [
        [openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key)],
        [
            openssl,
            "req",
            "-x509",
            "-new",
            "-key",
            str(ca_key),
            "-sha256",
            "-days",
            str(days),
            "-subj",
            "/CN=pcidevices-webhook-ca",
            "-out",
            str(ca_crt),
        ],
        [openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        [openssl, "req", "-new", "-key", str(key), "-subj", f"/CN={names[0]}", "-out", str(csr)],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-sha256",
            "-days",
            str(days),
            "-extfile",
            str(extensions),
            "-out",
            str(crt),
        ],
    ]
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CertificateError(
                f"{' '.join(argv[:2])} failed (exit {result.returncode}): {result.stderr.strip()}"
            )
    for leftover in (csr, extensions, out / "ca.srl"):
        leftover.unlink(missing_ok=True)
    for secret in (ca_key, key):
        secret.chmod(0o600)
    return [ca_crt, ca_key, crt, key]
