"""The command line's command table matches what the command modules register."""

from __future__ import annotations

import argparse

from pcidevices.cli import COMMAND_MODULES, COMMANDS, build_parser


def registered(module: str) -> set[str]:
    parser = build_parser((module,))
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_command_maps_to_the_module_that_registers_it():
    """Running a command alone builds a parser that knows it."""
    for command, module in COMMANDS.items():
        assert command in registered(module), (command, module)


def test_every_registered_command_is_in_the_table():
    """No command is reachable only through the full parser."""
    everything = set().union(*(registered(module) for module in COMMAND_MODULES))
    assert everything == set(COMMANDS)
