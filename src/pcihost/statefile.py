"""The claim state file: claims and original drivers of this node, kept across reboots.

A small JSON document (default ``/var/lib/pcidevices/claims.json``), replaced atomically (write
a temporary file in the same folder, ``fsync``, ``rename``), so a crash leaves either the old or
the new ledger, never half of one. It implements `pcicore.ports.LedgerStore` and nothing else:
the device plugin learns what is claimed from the cluster (agent) or from what vfio-pci drives
(standalone), never from this file. Every address and driver name in it is parsed before use:
the file is input too.

Format (version 1)::

    {"version": 1,
     "claims": [{"address": "0000:01:00.0", "policy": "group",
                 "resourceName": "nvidia.com/GA104", "claimedWith": null}],
     "originals": {"0000:01:00.0": "nouveau", "0000:01:00.1": "snd_hda_intel"}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs

from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.errors import ClaimStateError, PciDevicesError
from pcicore.ledger import ClaimRecord, Ledger
from pcihost.atomic import replace_record
from pcihost.converter import CONVERTER, describe_error
from pcihost.paths import DEFAULT_STATE_FILE

VERSION: Final = 1


@attrs.frozen
class StateDocument:
    """The file's JSON document (its keys are the camelCase of these fields).

    Attributes:
        version: The format version (`VERSION`).
        claims: The claims, in address order (each a `ClaimRecord`).
        originals: Each moved device's driver before the move (``None``: it had none).
    """

    version: int
    claims: tuple[ClaimRecord, ...]
    originals: dict[PciAddress, DriverName | None]

    @classmethod
    def of(cls, ledger: Ledger) -> StateDocument:
        """The document that records ``ledger``."""
        return cls(VERSION, tuple(ledger.claims.values()), dict(ledger.originals))

    def ledger(self) -> Ledger:
        """The ledger this document records."""
        return Ledger(
            claims={record.address: record for record in self.claims}, originals=self.originals
        )


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
        except (ValueError, PciDevicesError, cattrs.BaseValidationError) as err:
            raise ClaimStateError(
                f"{self.path} is not a pcidevices claim state file ({describe_error(err)}); "
                "move it aside and run `pcidevices restore` after re-binding devices by hand"
            ) from err

    def save(self, ledger: Ledger) -> None:
        """Replace the file with ``ledger``, atomically.

        Raises:
            ClaimStateError: the folder is not writable.
        """
        document = CONVERTER.unstructure(StateDocument.of(ledger))
        try:
            replace_record(self.path, document)
        except OSError as err:
            raise ClaimStateError(
                f"cannot write the claim state file {self.path}: {err.strerror}; run as root or "
                "pass a writable path with --state-file"
            ) from err


def _ledger(document: Any) -> Ledger:  # noqa: ANN401 - JSON input, checked here
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"expected a version {VERSION} document")
    return CONVERTER.structure(document, StateDocument).ledger()
