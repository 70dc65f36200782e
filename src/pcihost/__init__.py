"""Host adapters: the kernel and files of the node pcidevices runs on.

sysfs (the PCI bus, driver binding, uevents), ``/proc`` and ``/sys`` host facts, ``/dev/vfio``,
the claim state file, the ``pci.ids`` file and the clock. Each implements a port of
`pcicore.ports`; none imports the Kubernetes or gRPC clients, so the one-shot commands
(``pcidevices scan``, the node-admin commands) run on them alone.
"""
