"""The kubelet DRA plugin's files: its checkpoint, and the CDI specs and metadata of claims.

- `DraCheckpointFile` (`pcicore.ports.DraCheckpointStore`): the prepared claims, a JSON
  document replaced atomically, read through the one converter (every address parsed).
- `ClaimFiles` (`pcicore.ports.PreparedFilesStore`): the CDI specs in the CDI folder
  (``/var/run/cdi``) and the device-metadata streams in the plugin's metadata folder, each
  replaced atomically, so a container runtime never reads half a spec.

Format of the checkpoint (version 1)::

    {"version": 1,
     "claims": [{"ref": {"namespace": "vms", "name": "gpu", "uid": "5c1e…"},
                 "devices": [{"address": "0000:03:00.0", "request": "gpu",
                              "pool": "node1", "name": "pci-0000-03-00-0"}],
                 "phase": "Prepared", "podClaimName": null}]}
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs

from pcicore.dra import DRIVER_NAME
from pcicore.dra_prepare import (
    CDI_CLASS,
    METADATA_CLASS,
    DraCheckpoint,
    DraClaimRef,
    PreparedClaim,
    PreparedFiles,
    claim_metadata_dir,
)
from pcicore.errors import DraPrepareError, PciDevicesError
from pcihost.atomic import replace_file, replace_record
from pcihost.converter import CONVERTER, describe_error

VERSION: Final = 1
_VFIO_SPEC_PREFIX: Final = f"{DRIVER_NAME}-{CDI_CLASS}_"
_METADATA_SPEC_PREFIX: Final = f"{DRIVER_NAME}_{METADATA_CLASS}_"


@attrs.frozen
class CheckpointDocument:
    """The checkpoint file's JSON document.

    Attributes:
        version: The format version (`VERSION`).
        claims: The prepared claims, in uid order.
    """

    version: int
    claims: tuple[PreparedClaim, ...]


class DraCheckpointFile:
    """The DRA plugin's checkpoint in a JSON file at ``path``."""

    def __init__(self, path: Path) -> None:
        """Keep the checkpoint at ``path`` (its folder is created on first save)."""
        self.path = path

    def load(self) -> DraCheckpoint:
        """The saved checkpoint; an empty one if the file does not exist.

        Raises:
            DraPrepareError: the file is unreadable or not a checkpoint of this plugin.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return DraCheckpoint()
        except OSError as err:
            raise DraPrepareError(
                f"cannot read the DRA checkpoint {self.path}: {err.strerror}; check the "
                "permissions of the plugin's folder (--dra-plugin-dir)"
            ) from err
        try:
            document = _checkpoint(json.loads(text))
        except (ValueError, PciDevicesError, cattrs.BaseValidationError) as err:
            raise DraPrepareError(
                f"{self.path} is not a DRA checkpoint of pcidevices ({describe_error(err)}); "
                "move it aside: devices it recorded stay on vfio-pci until returned by hand "
                "(pcidevices release)"
            ) from err
        return DraCheckpoint({claim.ref.uid: claim for claim in document.claims})

    def save(self, checkpoint: DraCheckpoint) -> None:
        """Replace the file with ``checkpoint``, atomically.

        Raises:
            DraPrepareError: the folder is not writable.
        """
        document = CONVERTER.unstructure(
            CheckpointDocument(VERSION, tuple(checkpoint.claims.values()))
        )
        try:
            replace_record(self.path, document)
        except OSError as err:
            raise DraPrepareError(
                f"cannot write the DRA checkpoint {self.path}: {err.strerror}; run as root or "
                "pass a writable --dra-plugin-dir"
            ) from err


def _checkpoint(document: Any) -> CheckpointDocument:  # noqa: ANN401 - JSON input, checked here
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"expected a version {VERSION} document")
    return CONVERTER.structure(document, CheckpointDocument)


class ClaimFiles:
    """CDI specs in ``cdi_dir`` and metadata streams under ``metadata_dir``."""

    def __init__(self, cdi_dir: Path, metadata_dir: Path) -> None:
        """Write specs to ``cdi_dir`` and metadata below ``metadata_dir``."""
        self.cdi_dir = cdi_dir
        self.metadata_dir = metadata_dir

    def write(self, files: PreparedFiles) -> None:
        """Write every metadata stream, then every spec (a spec never names a missing file).

        A file that already holds the same bytes is left alone.

        Raises:
            DraPrepareError: a file could not be written.
        """
        for relative, documents in files.metadata.items():
            stream = "".join(json.dumps(d, indent=2) + "\n" for d in documents)
            self._replace(self.metadata_dir / relative, stream)
        for name, spec in files.cdi_specs.items():
            self._replace(self.cdi_dir / name, json.dumps(spec, indent=2) + "\n")

    def remove(self, claim: DraClaimRef) -> None:
        """Remove the claim's specs and its metadata folder.

        Raises:
            DraPrepareError: a file could not be removed.
        """
        try:
            for path in self._specs():
                if _spec_uid(path.name) == claim.uid:
                    path.unlink(missing_ok=True)
            shutil.rmtree(self.metadata_dir / claim_metadata_dir(claim), ignore_errors=False)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise DraPrepareError(
                f"cannot remove the files of ResourceClaim {claim}: {err.filename}: "
                f"{err.strerror or err}; check the "
                f"permissions of {self.cdi_dir} and {self.metadata_dir}"
            ) from err

    def prune(self, keep: Sequence[DraClaimRef]) -> None:
        """Remove our specs and metadata folders of every claim not in ``keep``."""
        uids = {claim.uid for claim in keep}
        folders = {claim_metadata_dir(claim) for claim in keep}
        for path in self._specs():
            if _spec_uid(path.name) not in uids:
                path.unlink(missing_ok=True)
        try:
            entries = list(self.metadata_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name not in folders:
                shutil.rmtree(entry, ignore_errors=True)

    def spec_names(self) -> list[str]:
        """The file names of our specs now, sorted."""
        return sorted(path.name for path in self._specs())

    def _specs(self) -> list[Path]:
        try:
            entries = list(self.cdi_dir.iterdir())
        except OSError:
            return []
        return [
            entry
            for entry in entries
            if entry.name.endswith(".json")
            and entry.name.startswith((_VFIO_SPEC_PREFIX, _METADATA_SPEC_PREFIX))
        ]

    def _replace(self, path: Path, text: str) -> None:
        data = text.encode()
        try:
            if path.read_bytes() == data:
                return  # written before (a repeated prepare): no write, no fsync
        except OSError:
            pass  # not there (or unreadable): write it
        try:
            replace_file(path, data)
        except OSError as err:
            raise DraPrepareError(
                f"cannot write {path}: {err.strerror}; the plugin needs write access to "
                "--cdi-dir and --dra-plugin-dir"
            ) from err


def _spec_uid(name: str) -> str | None:
    """The claim uid in one of our spec file names (``None`` for another file)."""
    stem = name.removesuffix(".json")
    if stem.startswith(_VFIO_SPEC_PREFIX):
        return stem.removeprefix(_VFIO_SPEC_PREFIX)
    if stem.startswith(_METADATA_SPEC_PREFIX):
        # <uid>_<request>: a uid has no '_', a request name neither.
        return stem.removeprefix(_METADATA_SPEC_PREFIX).partition("_")[0]
    return None
