"""The pure domain of pcidevices: PCI devices, naming rules, claims and policies.

Nothing in this package performs I/O; hosts, clusters and kubelets are reached through the
Protocols in `pcicore.ports`, implemented by adapters in `pcioperator` and `pciplugin`.
"""
