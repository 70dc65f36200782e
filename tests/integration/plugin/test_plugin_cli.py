"""``pcidevices plugin`` as a process: serves, registers, and leaves no socket after SIGTERM."""

import signal
import subprocess
import sys

from fakesys.edit import rebind
from pcicore.address import PciAddress
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcidevices.wiring.plugin import VfioBoundDevices
from pcihost.sysfs import SysfsPciBus

PCI_IDS = b"""\
8086  Intel Corporation
\t1521  I350 Gigabit Network Connection
10de  NVIDIA Corporation
\t2232  GA104 [RTX A4500 Embedded GPU ]
"""


class TestStandaloneCommand:
    """pcidevices plugin."""

    def test_serves_until_sigterm_then_removes_its_sockets(self, node, kubelet, short_tmp):
        """It registers every vfio-pci resource; SIGTERM ends it with status 0 and no sockets."""
        tree, dev = node
        ids = short_tmp / "pci.ids"
        ids.write_bytes(PCI_IDS)
        argv = [
            sys.executable,
            "-c",
            "import sys; from pcidevices.cli import main; sys.exit(main())",
            "plugin",
            "--sysfs",
            str(tree.root),
            "--dev-root",
            str(dev),
            "--device-plugins-dir",
            str(kubelet.folder),
            "--pci-ids",
            str(ids),
        ]
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            found = kubelet.registered(2, timeout=10)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
        assert set(found) == {
            "intel.com/I350_GIGABIT_NETWORK_CONNECTION",
            "nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU",
        }
        assert process.returncode == 0, stderr
        assert sorted(p.name for p in kubelet.folder.iterdir()) == ["kubelet.sock"]

    def test_wrong_sysfs_is_one_line_error(self, short_tmp, kubelet):
        """A --sysfs that is no sysfs tree fails at once with the fix, not a traceback."""
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pcidevices.cli import main; sys.exit(main())",
                "plugin",
                "--sysfs",
                str(short_tmp / "nothing"),
                "--device-plugins-dir",
                str(kubelet.folder),
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert result.returncode == 1
        assert "pass the sysfs mount point with --sysfs" in result.stderr
        assert "Traceback" not in result.stderr


class TestVfioBoundDevices:
    """The standalone stand-in for the claim engine."""

    def test_devices_on_vfio_stay_claimed_after_unbinding(self, node):
        """Once seen on vfio-pci a device stays claimed, so unbinding shows as Unhealthy."""
        tree, _ = node
        claims = VfioBoundDevices(SysfsPciBus(tree.root), DeviceNamer(PciIds(PCI_IDS)))
        first = claims.claimed()
        rebind(tree, "0000:01:00.0", "igb")
        assert claims.claimed() == first
        assert [str(c.address) for c in first] == [
            "0000:01:00.0",
            "0000:01:00.1",
            "0000:05:00.0",
            "0000:81:00.0",
        ]
        assert first[0].resource_name == "intel.com/I350_GIGABIT_NETWORK_CONNECTION"
        assert not any(c.dedicated for c in first)
        assert PciAddress.parse("0000:00:01.0") not in {c.address for c in first}
