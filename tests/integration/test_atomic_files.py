"""Replacing the files this node writes: what a reader, and an administrator, find on disk.

`replace_file` writes the CDI specs the container runtime reads; `replace_record` the claim
state file and the DRA checkpoint. Each test is named after the failure it prevents: a
half-written file picked up by a reader of the folder, a record other users may read, a failed
write that hides its error or leaves a temporary file behind.
"""

from __future__ import annotations

import os
import stat

import pytest

from pcihost.atomic import replace_file, replace_record


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestReplaceFile:
    """`replace_file`: the old content or the new, never a partial or stray file."""

    def test_a_reader_of_the_folder_mid_write_finds_only_a_dot_file_named_after_the_target(
        self, tmp_path, monkeypatch
    ):
        """Until the rename, the new content is a hidden file beside the target.

        Elsewhere (``/tmp``) it could not be renamed over the target atomically (another
        filesystem); without the leading dot, tools that read every file of the folder would
        read it half-written.
        """
        target = tmp_path / "cdi" / "pcidevices.json"
        mid_write: list[str] = []
        fsync = os.fsync

        def fsync_then_look(fd: int) -> None:
            fsync(fd)
            mid_write.extend(entry.name for entry in target.parent.iterdir())

        monkeypatch.setattr("pcihost.atomic.os.fsync", fsync_then_look)
        replace_file(target, b"{}\n")
        assert len(mid_write) == 1
        assert mid_write[0].startswith(".pcidevices-")
        assert [entry.name for entry in target.parent.iterdir()] == ["pcidevices.json"]
        assert target.read_bytes() == b"{}\n"

    def test_failed_rename_raises_its_error_and_leaves_no_temporary_file(self, tmp_path):
        """A target that cannot be replaced (a folder) raises that OSError, and nothing is left.

        The clean-up must not hide the error it cleans up after.
        """
        target = tmp_path / "pcidevices.json"
        target.mkdir()
        with pytest.raises(IsADirectoryError):
            replace_file(target, b"{}\n")
        assert [entry.name for entry in tmp_path.iterdir()] == ["pcidevices.json"]

    def test_file_is_readable_by_every_user_and_executable_by_none_by_default(self, tmp_path):
        """A CDI spec is read by the container runtime, whoever it runs as: mode 0644."""
        target = tmp_path / "pcidevices.json"
        replace_file(target, b"{}\n")
        assert _mode(target) == 0o644


class TestReplaceRecord:
    """`replace_record`: the node's own records."""

    def test_record_is_readable_by_its_owner_only(self, tmp_path):
        """A record names the devices this node hands out: mode 0600, even over a 0644 file."""
        target = tmp_path / "claims.json"
        target.write_text("{}\n")
        target.chmod(0o644)
        replace_record(target, {"claims": []})
        assert _mode(target) == 0o600
