"""The claim state file: claims and original drivers of this node, kept across reboots.

A small JSON document (default ``/var/lib/pcidevices/claims.json``), replaced atomically (write
a temporary file in the same folder, ``fsync``, ``rename``), so a crash leaves either the old or
the new ledger, never half of one. It implements `pcicore.ports.LedgerStore`; the device plugin
reads it through `ClaimStateFile.claimed` to learn which devices are claimed and under which
resourceName. Every address and driver name in it is parsed before use: the file is input too.

Format (version 1)::

    {"version": 1,
     "claims": [{"address": "0000:01:00.0", "policy": "group",
                 "resourceName": "nvidia.com/GA104", "claimedWith": null}],
     "originals": {"0000:01:00.0": "nouveau", "0000:01:00.1": "snd_hda_intel"}}
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Final

import attrs

from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.errors import ClaimStateError, InvalidPciAddressError
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy

DEFAULT_STATE_FILE: Final = Path("/var/lib/pcidevices/claims.json")
VERSION: Final = 1

_DRIVER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@attrs.frozen
class ClaimedDevice:
    """A device claimed on this node, as the device plugin needs it.

    Attributes:
        address: The device.
        resource_name: The resourceName to advertise it under (``None``: not recorded).
    """

    address: PciAddress
    resource_name: str | None


class ClaimStateFile:
    """The ledger kept in a JSON file at ``path``."""

    def __init__(self, path: Path = DEFAULT_STATE_FILE) -> None:
        """Keep the ledger at ``path`` (its folder is created on first save)."""
        self.path = path

    def load(self) -> Ledger:
        """The saved ledger; an empty one if the file does not exist.

        Raises:
            ClaimStateError: the file is unreadable, not JSON, or not a claim state file.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Ledger()
        except OSError as err:
            raise ClaimStateError(
                f"cannot read the claim state file {self.path}: {err.strerror}; check its "
                "permissions or pass another one with --state-file"
            ) from err
        try:
            return _ledger(json.loads(text))
        except (ValueError, KeyError, TypeError, InvalidPciAddressError) as err:
            raise ClaimStateError(
                f"{self.path} is not a pcidevices claim state file ({err}); move it aside and "
                "run `pcidevices restore` after re-binding devices by hand"
            ) from err

    def save(self, ledger: Ledger) -> None:
        """Replace the file with ``ledger``, atomically.

        Raises:
            ClaimStateError: the folder is not writable.
        """
        document = {
            "version": VERSION,
            "claims": [
                {
                    "address": str(record.address),
                    "policy": record.policy.value,
                    "resourceName": record.resource_name,
                    "claimedWith": str(record.claimed_with) if record.claimed_with else None,
                }
                for record in ledger.claims.values()
            ],
            "originals": {str(a): d for a, d in ledger.originals.items()},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".claims-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(document, out, indent=2, sort_keys=True)
                    out.write("\n")
                    out.flush()
                    os.fsync(out.fileno())
                Path(temporary).replace(self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as err:
            raise ClaimStateError(
                f"cannot write the claim state file {self.path}: {err.strerror}; run as root or "
                "pass a writable path with --state-file"
            ) from err

    def claimed(self) -> list[ClaimedDevice]:
        """The claimed devices with their resourceNames, in address order (for the plugin)."""
        return [
            ClaimedDevice(record.address, record.resource_name)
            for record in self.load().claims.values()
        ]


def _driver(value: Any) -> DriverName | None:  # noqa: ANN401 - JSON input, checked here
    if value is None:
        return None
    if not isinstance(value, str) or not _DRIVER_NAME.fullmatch(value):
        raise ValueError(f"bad driver name {value!r}")
    return DriverName(value)


def _ledger(document: Any) -> Ledger:  # noqa: ANN401 - JSON input, checked here
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"expected a version {VERSION} document")
    claims = {}
    for item in document["claims"]:
        address = PciAddress.parse(item["address"])
        with_ = item.get("claimedWith")
        claims[address] = ClaimRecord(
            address=address,
            policy=GroupPolicy(item.get("policy", GroupPolicy.STRICT.value)),
            resource_name=item.get("resourceName"),
            claimed_with=PciAddress.parse(with_) if with_ else None,
        )
    originals = {
        PciAddress.parse(address): _driver(driver)
        for address, driver in dict(document["originals"]).items()
    }
    return Ledger(claims=claims, originals=originals)
