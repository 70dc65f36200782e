"""`HostVfioNodes`: which VFIO device nodes a host exposes, on a directory tree."""

from __future__ import annotations

from pathlib import Path

from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcihost.vfio import HostVfioNodes

NIC = PciAddress.parse("0000:03:00.0")


def nodes(tmp_path: Path, *cdev_entries: str) -> HostVfioNodes:
    (tmp_path / "dev" / "vfio").mkdir(parents=True)
    folder = tmp_path / "sys" / "bus" / "pci" / "devices" / str(NIC) / "vfio-dev"
    folder.mkdir(parents=True)
    for name in cdev_entries:
        (folder / name).mkdir()
    return HostVfioNodes(tmp_path / "dev", tmp_path / "sys")


class TestDeviceCdev:
    """The iommufd character device named in ``<device>/vfio-dev/``."""

    def test_only_vfio_followed_by_digits_is_a_cdev(self, tmp_path):
        """``vfio7`` is the cdev; ``vfiox``, ``abcd9`` and ``power`` are not."""
        assert nodes(tmp_path, "power", "vfiox", "abcd9", "vfio7").device_cdev(NIC) == "vfio7"

    def test_folder_without_a_cdev_gives_none(self, tmp_path):
        """An empty ``vfio-dev`` (a kernel without iommufd cdevs): no cdev, no error."""
        assert nodes(tmp_path, "power").device_cdev(NIC) is None

    def test_device_without_the_folder_gives_none(self, tmp_path):
        """A device not on vfio-pci has no ``vfio-dev`` folder at all."""
        vfio = HostVfioNodes(tmp_path / "dev", tmp_path / "sys")
        assert vfio.device_cdev(NIC) is None


class TestNodes:
    """``/dev/vfio/<group>`` and ``/dev/iommu``."""

    def test_group_node_exists_only_when_the_file_is_there(self, tmp_path):
        """``/dev/vfio/5`` present: group 5 yes, group 6 no."""
        vfio = nodes(tmp_path)
        (tmp_path / "dev" / "vfio" / "5").touch()
        assert vfio.group_node_exists(IommuGroup(5))
        assert not vfio.group_node_exists(IommuGroup(6))

    def test_iommufd_available_only_with_dev_iommu(self, tmp_path):
        """``/dev/iommu`` is what iommufd needs."""
        vfio = nodes(tmp_path)
        assert not vfio.iommufd_available()
        (tmp_path / "dev" / "iommu").touch()
        assert vfio.iommufd_available()
