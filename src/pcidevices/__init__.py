"""Composition roots and the `pcidevices` command line; the only layer that wires adapters."""
