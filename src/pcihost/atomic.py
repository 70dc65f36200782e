"""Replacing a file atomically: a reader sees the old content or the new, never half of either.

Write a temporary file in the same folder (its name starts with ``.``, so tools that read every
``*.json`` of a folder — the container runtime reading ``/var/run/cdi`` — never pick it up),
``fsync`` it, ``rename`` it over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def replace_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Make ``path`` hold ``data`` (its folder is created if missing).

    Raises:
        OSError: the folder or file could not be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def replace_record(path: Path, document: Any) -> None:  # noqa: ANN401 - any JSON document
    """Make ``path`` hold ``document`` as a private JSON record, atomically.

    The layout of the files this node keeps for itself (the claim state file, the DRA
    checkpoint): sorted keys, two-space indent, a final newline, so that an administrator can
    read and diff them; mode 0600, as they name the devices this node hands out.

    Raises:
        OSError: the folder or file could not be written.
    """
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    replace_file(path, text.encode(), mode=0o600)
