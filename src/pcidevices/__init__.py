"""Composition roots and the `pcidevices` command line; the only layer that wires adapters."""

# The one place the version is written: the package metadata (pyproject.toml reads it from here),
# `pcidevices --version`, the image's labels and the Helm chart's appVersion all take it from it.
__version__ = "0.1.0"
