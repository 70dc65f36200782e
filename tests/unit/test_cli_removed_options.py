"""The options that once allowed passthrough without an IOMMU now fail, saying why."""

from __future__ import annotations

import pytest

from pcidevices.cli import EXIT_USAGE, main


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["bind", "0000:03:00.0", "--no-iommu"], id="bind"),
        pytest.param(["restore", "--no-iommu"], id="restore"),
        pytest.param(["agent", "--node", "titan", "--no-iommu"], id="agent"),
        pytest.param(["webhook", "--cert", "c", "--key", "k", "--allow-no-iommu"], id="webhook"),
    ],
)
def test_no_iommu_option_is_a_one_line_error_with_the_reason(argv, capsys):
    """Each is refused before anything runs: one line, what is unsupported, why, and the fix."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        f"{argv[-1]} is no longer supported: passthrough without an IOMMU is not supported" in err
    )
    assert "vfio.enable_unsafe_noiommu_mode=1" in err
    assert "intel_iommu=on or amd_iommu=on" in err


def test_no_iommu_is_not_offered_in_help(capsys):
    """``bind --help`` no longer lists the removed option."""
    with pytest.raises(SystemExit):
        main(["bind", "--help"])
    assert "--no-iommu" not in capsys.readouterr().out
