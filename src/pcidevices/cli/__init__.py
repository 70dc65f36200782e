"""The ``pcidevices`` command line: argument parsing and error reporting only.

Each sub-command lives in a ``cli_<name>`` module that registers its arguments with nothing but
``argparse``; the work behind a command is imported only when that command runs, so
``pcidevices scan`` never pays for the Kubernetes or gRPC clients. Every failure the user can fix
ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pcicore.errors import PciDevicesError
from pcidevices.extras import COMMAND_EXTRAS, missing_extra_message

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Sub-command modules, in the order `pcidevices --help` lists them.
COMMAND_MODULES = (
    "pcidevices.cli.scan",
    "pcidevices.cli.node",
    "pcidevices.cli.agent",
    "pcidevices.cli.dra",
    "pcidevices.cli.plugin",
    "pcidevices.cli.dra_plugin",
    "pcidevices.cli.webhook",
    "pcidevices.cli.controller",
)


# Which module registers each command: running one command imports only its module (the full
# parser is built for --help and for unknown commands). A test checks this against the modules.
COMMANDS = {
    "scan": "pcidevices.cli.scan",
    "bind": "pcidevices.cli.node",
    "release": "pcidevices.cli.node",
    "status": "pcidevices.cli.node",
    "restore": "pcidevices.cli.node",
    "agent": "pcidevices.cli.agent",
    "dra-slices": "pcidevices.cli.dra",
    "plugin": "pcidevices.cli.plugin",
    "dra-plugin": "pcidevices.cli.dra_plugin",
    "webhook": "pcidevices.cli.webhook",
    "webhook-certs": "pcidevices.cli.webhook",
    "controller": "pcidevices.cli.controller",
}

# Commands that read, print and end: their process neither collects garbage nor tears the
# interpreter down (see `console`).
ONE_SHOT = frozenset({"scan"})


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit with the usage status."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser of the sub-commands that ``modules`` register (default: all)."""
    parser = CommandParser(
        prog="pcidevices",
        description="Discover PCI devices and hand them to KubeVirt VMs through vfio-pci.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name in modules:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pcidevices`` with ``argv`` (default: the process arguments); return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `pcidevices scan` is start-up bound: registering every other command costs a tenth of it.
    module = COMMANDS.get(arguments[0]) if arguments else None
    parser = build_parser((module,) if module is not None else COMMAND_MODULES)
    args = parser.parse_args(arguments)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except PciDevicesError as err:
        sys.stderr.write(f"pcidevices {args.command}: error: {err}\n")
        return EXIT_ERROR
    except ModuleNotFoundError as err:
        # The base install has the domain library only; each command names the extra it needs.
        message = missing_extra_message(err, COMMAND_EXTRAS.get(args.command, "all"))
        if message is None:
            raise
        sys.stderr.write(f"pcidevices {args.command}: error: {message}\n")
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (``| head``) went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def console() -> NoReturn:
    """The ``pcidevices`` console script: `main` on the process arguments, then exit.

    A one-shot command (`ONE_SHOT`) is a few hundred milliseconds of work that makes thousands of
    objects and no reference cycles to speak of: it runs with the cyclic garbage collector off
    (its passes over the device objects cost about 3 % of a 4,096-device scan), and once its
    output is flushed the process ends with ``os._exit``, skipping the interpreter's tear-down
    (freeing every module and object, another 4 %). Nothing a one-shot command does is left to
    that tear-down: it starts no thread and registers no exit handler. In-process callers use
    `main`, which does neither.
    """
    arguments = sys.argv[1:]
    one_shot = bool(arguments) and arguments[0] in ONE_SHOT
    if not one_shot:
        sys.exit(main(arguments))
    gc.disable()
    code = main(arguments)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_ERROR  # as `main` does when the reader goes away sooner
    sys.stderr.flush()
    os._exit(code)
