"""Finds and reads the ``pci.ids`` file from disk (the database itself is `pcicore.pciids`)."""

from __future__ import annotations

from pathlib import Path

from pcicore.errors import PciIdsError
from pcicore.pciids import PciIds
from pcihost.paths import PCI_IDS_LOCATIONS


def load_pci_ids(path: Path | None = None) -> PciIds:
    """Load ``path``, or the first ``pci.ids`` found in the standard locations.

    Raises:
        PciIdsError: the file is missing, unreadable or not a ``pci.ids`` database.
    """
    if path is not None:
        return PciIds(_read(path), origin=str(path))
    for candidate in PCI_IDS_LOCATIONS:
        try:
            data = Path(candidate).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise PciIdsError(
                f"cannot read {candidate}: {err.strerror}; fix its permissions "
                "or pass another file with --pci-ids"
            ) from err
        return PciIds(data, origin=candidate)
    raise PciIdsError(
        "no pci.ids database found (looked in "
        + ", ".join(PCI_IDS_LOCATIONS)
        + "); install it (Debian/Ubuntu: apt-get install pci.ids) or pass --pci-ids PATH"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise PciIdsError(
            f"cannot read pci.ids file {path}: {err.strerror}; pass an existing, readable "
            "file with --pci-ids"
        ) from err
