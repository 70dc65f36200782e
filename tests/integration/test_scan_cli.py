"""`pcidevices scan` end to end on a pyfakefs sysfs, through the real command-line entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Imported before any test activates pyfakefs: a module first imported under the fake
# filesystem keeps that test's fake `os` after it ends.
import pcidevices.wiring.scan  # noqa: F401
from fakesys import FakeDevice, SysfsTree
from pcidevices.cli import build_parser, main

build_parser()  # imports every sub-command's registration module now, for the same reason

PCI_IDS = b"""8086  Intel Corporation
\t15bb  Ethernet Connection (7) I219-LM
\t1521  I350 Gigabit Network Connection
10de  NVIDIA Corporation
\t2235  GA102GL [A40]
\t1aef  GA102 High Definition Audio Controller
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
\t00  VGA compatible controller
C 04  Multimedia controller
\t03  Audio device
"""


@pytest.fixture
def host(fs):
    fs.create_file("/usr/share/misc/pci.ids", contents=PCI_IDS)
    tree = SysfsTree(Path("/sys"))
    tree.add(
        FakeDevice("0000:00:1f.6", vendor=0x8086, device=0x15BB, driver="e1000e", iommu_group=3),
        FakeDevice(
            "0000:65:00.0",
            vendor=0x10DE,
            device=0x2235,
            klass=0x030000,
            driver="nvidia",
            iommu_group=40,
            numa_node=1,
            revision=0xA1,
        ),
        FakeDevice("0000:66:00.0", vendor=0x1234, device=0x5678, klass=0x123400),
    )
    return tree


def scan_items(capsys, *extra):
    assert main(["scan", "--node", "titan", "-o", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


class TestJsonOutput:
    """`-o json` prints a Kubernetes List of PCIDevice objects."""

    def test_list_envelope(self, host, capsys):
        """The output is a v1 List whose items are devices.harvesterhci.io/v1beta1 PCIDevices."""
        listing = scan_items(capsys)
        assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
        assert {item["apiVersion"] for item in listing["items"]} == {
            "devices.harvesterhci.io/v1beta1"
        }
        assert {item["kind"] for item in listing["items"]} == {"PCIDevice"}

    def test_one_object_per_line_and_an_empty_list_on_one_line(self, host, capsys, fs):
        """Greppable: the envelope, then each object on its own line; no devices, one line."""
        assert main(["scan", "--node", "titan", "-o", "json"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].endswith('"items": [')
        assert [json.loads(line.rstrip(","))["status"]["address"] for line in lines[1:-1]] == [
            "0000:00:1f.6",
            "0000:65:00.0",
            "0000:66:00.0",
        ]
        assert lines[-1] == "]}"
        fs.remove_object("/sys/bus/pci/devices")
        fs.create_dir("/sys/bus/pci/devices")
        assert main(["scan", "--node", "titan", "-o", "json"]) == 0
        empty = capsys.readouterr().out
        assert empty.count("\n") == 1
        assert json.loads(empty)["items"] == []

    def test_object_as_the_agent_writes_it(self, host, capsys):
        """Name, label, original-driver annotation and every status field match the contract."""
        item = scan_items(capsys)["items"][0]
        assert item["metadata"] == {
            "name": "titan-0000001f6",
            "labels": {"nodename": "titan"},
            "annotations": {"harvesterhci.io/pcideviceDriver": "e1000e"},
        }
        assert item["status"] == {
            "address": "0000:00:1f.6",
            "vendorId": "8086",
            "deviceId": "15bb",
            "classId": "0200",
            "iommuGroup": "3",
            "nodeName": "titan",
            "resourceName": "intel.com/ETHERNET_CONNECTION_7_I219LM",
            "description": "Ethernet controller: Intel Corporation Ethernet Connection (7) I219-LM",
            "kernelDriverInUse": "e1000e",
            "numaNode": -1,
            "subsystemVendorId": "0000",
            "subsystemDeviceId": "0000",
            "revision": "00",
            "progIf": "00",
        }

    def test_numa_and_revision(self, host, capsys):
        """NUMA node and revision of a GPU are reported."""
        status = scan_items(capsys)["items"][1]["status"]
        assert (status["numaNode"], status["revision"], status["resourceName"]) == (
            1,
            "a1",
            "nvidia.com/GA102GL_A40",
        )

    def test_unknown_device_without_driver_or_group(self, host, capsys):
        """An unknown device with no driver and no group gets fallback names and empty fields."""
        item = scan_items(capsys)["items"][2]
        assert "annotations" not in item["metadata"]
        status = item["status"]
        assert status["description"] == "Class 1234: Vendor 1234 Device 5678"
        assert status["resourceName"] == "unknown.com/5678"
        assert (status["iommuGroup"], status["kernelDriverInUse"]) == ("", "")

    def test_node_name_from_environment(self, host, capsys, monkeypatch):
        """Without --node, NODE_NAME names the node."""
        monkeypatch.setenv("NODE_NAME", "worker-7")
        assert main(["scan", "-o", "json"]) == 0
        items = json.loads(capsys.readouterr().out)["items"]
        assert items[0]["metadata"]["name"] == "worker-7-0000001f6"


class TestOtherFormats:
    """Table and YAML."""

    def test_yaml_is_the_same_list(self, host, capsys):
        """YAML output holds the same objects as JSON output."""
        as_json = scan_items(capsys)
        assert main(["scan", "--node", "titan", "-o", "yaml"]) == 0
        assert yaml.safe_load(capsys.readouterr().out) == as_json

    def test_table_has_one_row_per_device(self, host, capsys):
        """The table has a header and one row per device with group and resourceName."""
        assert main(["scan", "--node", "titan"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:3] == ["ADDRESS", "IDS", "DRIVER"]
        assert len(lines) == 4
        row = lines[2].split()
        assert row[:6] == [
            "0000:65:00.0",
            "10de:2235",
            "nvidia",
            "40",
            "1",
            "nvidia.com/GA102GL_A40",
        ]


class TestBadInput:
    """Bad input: one line on stderr, non-zero exit, no traceback."""

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            pytest.param(["-o", "xml"], "invalid choice: 'xml'", id="bad-output"),
            pytest.param(["--sysfs", "/nowhere"], "/nowhere is not a sysfs tree", id="bad-root"),
            pytest.param(["--pci-ids", "/missing.ids"], "cannot read pci.ids", id="missing-ids"),
            pytest.param(["--pci-ids", "/etc/bad.ids"], "not a pci.ids database", id="bad-ids"),
            pytest.param(["--node", "Bad_Node!"], "invalid node name 'Bad_Node!'", id="bad-node"),
        ],
    )
    def test_one_line_error(self, host, fs, capsys, args, expected):
        """Each bad input names the bad value on a single stderr line."""
        fs.create_file("/etc/bad.ids", contents="this is not pci.ids\n")
        try:
            code = main(["scan", "--node", "titan", *args])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        assert code != 0
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert expected in captured.err
        assert "Traceback" not in captured.err

    def test_missing_database_says_how_to_install_it(self, fs, capsys):
        """No pci.ids anywhere: the error names the package to install."""
        SysfsTree(Path("/sys")).add(FakeDevice("0000:00:01.0"))
        assert main(["scan", "--node", "titan"]) == 1
        assert "apt-get install pci.ids" in capsys.readouterr().err


SCAN_AND_LIST_MODULES = """
import contextlib, io, sys
from pcidevices.cli import main
sys.argv = ["pcidevices", "scan", "--sysfs", sys.argv[1], "--node", "n1", "-o", "json"]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
print("\\n".join(sorted(sys.modules)))
"""


def test_scan_starts_without_the_machinery_it_does_not_use(tmp_path):
    """A scan imports no injector, no cluster or gRPC client and no claim engine.

    Scan is bound by its start-up: each of these costs tens of milliseconds a run and does
    nothing for a command that reads and names.
    """
    tree = SysfsTree(tmp_path / "sys").add(FakeDevice("0000:00:1f.6", driver="e1000e"))
    result = subprocess.run(
        [sys.executable, "-c", SCAN_AND_LIST_MODULES, str(tree.root)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert "pcihost.sysfs" in loaded  # the scan ran
    for heavy in ("injector", "kubernetes", "grpc", "pcicore.engine", "pcihost.binding"):
        assert heavy not in loaded
    # Nor the PCIDevice wire classes (attrs classes are built at import), which JSON skips.
    assert "pcioperator.wire.pcidevice" not in loaded


def run_console(*args: str, **popen) -> subprocess.Popen[bytes]:
    """``python -m pcidevices ARGS``: the console entry point, as the installed command runs.

    Buffered output, as a user's shell gives it (this suite may run with PYTHONUNBUFFERED).
    """
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.Popen(
        [sys.executable, "-m", "pcidevices", *args],
        stdout=popen.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        env=environ,
        **popen,
    )


def on_disk_tree(root: Path, count: int) -> SysfsTree:
    tree = SysfsTree(root)
    for index in range(count):
        tree.add(FakeDevice(f"0000:{index // 8 + 1:02x}:00.{index % 8}", driver="e1000e"))
    return tree


class TestConsoleEntryPoint:
    """The installed ``pcidevices`` ends a scan with ``os._exit``, the collector off.

    Nothing printed may be lost, and errors still end as one line.
    """

    def test_a_one_shot_scan_prints_every_device_before_the_process_ends(self, tmp_path):
        tree = on_disk_tree(tmp_path / "sys", 300)  # far more than one output buffer
        child = run_console("scan", "--sysfs", str(tree.root), "--node", "n1", "-o", "json")
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        items = json.loads(out)["items"]
        assert len(items) == 300
        assert items[-1]["status"]["address"] == "0000:26:00.3"

    def test_a_bad_sysfs_root_is_one_line_and_exit_status_1(self, tmp_path):
        child = run_console("scan", "--sysfs", str(tmp_path / "nowhere"))
        out, err = child.communicate(timeout=120)
        assert child.returncode == 1
        assert out == b""
        assert err.decode().count("\n") == 1
        assert "nowhere" in err.decode()

    def test_a_reader_gone_before_the_last_flush_is_exit_status_1_without_a_traceback(
        self, tmp_path
    ):
        tree = on_disk_tree(tmp_path / "sys", 1)  # the output fits in the buffer: written at exit
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the command writes anything
        try:
            child = run_console("scan", "--sysfs", str(tree.root), "-o", "json", stdout=write_end)
        finally:
            os.close(write_end)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 1
        assert b"Traceback" not in err
        assert b"Exception ignored" not in err

    def test_other_commands_exit_the_ordinary_way(self):
        child = run_console("--help")
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert b"scan" in out
