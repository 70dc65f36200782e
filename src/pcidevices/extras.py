"""Which optional dependency set ("extra") each command needs, and the error when one is missing.

``pip install pcidevices`` installs the domain library (`pcicore`), the host adapters and what
they need (attrs, cattrs, injector); with it alone run ``pcidevices scan`` (table and JSON) and
the node commands (bind, release, status, restore).
``pcidevices[yaml]`` adds ``scan -o yaml``, ``pcidevices[agent]`` the cluster processes,
``pcidevices[kubectl]`` the kubectl plugin.
A command run without its extra ends in one line naming the module and the extra to install.
"""

from __future__ import annotations

from typing import Final

# The top-level modules the extras bring in (pyproject.toml's optional dependencies).
OPTIONAL_MODULES: Final = frozenset(
    {"yaml", "kubernetes", "urllib3", "grpc", "google", "prometheus_client"}
)

# The extra each `pcidevices` command needs (the node commands need none).
COMMAND_EXTRAS: Final = {
    "scan": "yaml",
    "agent": "agent",
    "dra-slices": "agent",
    "plugin": "agent",
    "dra-plugin": "agent",
    "webhook": "agent",
    "webhook-certs": "agent",
    "controller": "agent",
}


def missing_extra_message(error: ModuleNotFoundError, extra: str) -> str | None:
    """The one-line fix for ``error`` if an optional dependency is missing, else None.

    None means the missing module is not one an extra provides: a broken install or a bug,
    which the caller lets through as it is.
    """
    # A command missing from COMMAND_EXTRAS asks for "all".
    top = (error.name or "").partition(".")[0]
    if top not in OPTIONAL_MODULES:
        return None
    return (
        f"the Python module {top!r} is not installed; this command needs the "
        f"'{extra}' extra: pip install 'pcidevices[{extra}]'"
    )
