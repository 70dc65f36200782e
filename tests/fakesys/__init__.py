"""Declarative sysfs trees for tests and benchmarks, laid out as the Linux kernel lays them out."""

from fakesys.tree import FakeDevice, SysfsTree

__all__ = ["FakeDevice", "SysfsTree"]
