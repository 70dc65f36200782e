"""The one cattrs converter of every wire format: camelCase JSON in, domain values out.

Every document pcidevices reads or writes — the claim state file here in `pcihost`, and the
Kubernetes objects' wire forms in `pcioperator.wire` — goes through `CONVERTER`. It lives in
`pcihost` because that is the lowest adapter layer both can import (`pcicore` may not import
cattrs); it does no I/O itself.

How it converts:

- **attrs classes** get camelCase keys from a hook *factory*: when the converter first meets a
  class it generates that class's (un)structure function, renaming each field from its name
  (`pcihost.wirefields.camel_case`). Nothing is registered per class, so the order classes are
  met in does not matter. A field whose key is not the plain camelCase of its name says so with
  `pcihost.wirefields.wire_name` (``totalVFs``); a field that Kubernetes omits when empty uses
  `pcihost.wirefields.OMIT_IF_DEFAULT`. (Those rules live apart, without cattrs, so a module
  can declare its wire classes without paying for importing cattrs until it converts.)
- **domain values**: `PciAddress` is its canonical text (parsed with `PciAddress.parse`, so a
  bad address fails here, naming itself); a `DriverName` is checked with `parse_driver_name`;
  enums are their values; a `datetime` is an RFC 3339 UTC timestamp in seconds
  (`pcihost.wirefields.format_timestamp`, the one formatter of such timestamps).

Errors: structuring raises `cattrs.BaseValidationError`; `describe_error` turns it into one line
that names the bad field and value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from pcicore.address import PciAddress
from pcicore.device import DriverName, parse_driver_name
from pcihost.wirefields import (
    OMIT_IF_DEFAULT_KEY,
    WIRE_NAME_KEY,
    camel_case,
    format_timestamp,
    parse_timestamp,
)


def describe_error(err: Exception) -> str:
    """One line naming each bad field of a failed structuring and what was wrong with it."""
    if isinstance(err, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(err, format_exception=_format_exception))
    return str(err)


def _format_exception(err: BaseException, type_: type | None) -> str:
    if isinstance(err, KeyError):
        return "required field missing"
    if isinstance(err, ValueError | TypeError) and str(err):
        return str(err)
    return f"invalid value for type, expected {getattr(type_, '__name__', type_)}"


def _overrides(cls: type, *, unstructuring: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for field in attrs.fields(cls):
        name = field.metadata.get(WIRE_NAME_KEY) or camel_case(field.name)
        if unstructuring and field.metadata.get(OMIT_IF_DEFAULT_KEY):
            overrides[field.name] = override(rename=name, omit_if_default=True)
        else:
            overrides[field.name] = override(rename=name)
    return overrides


def _structure_driver(value: object, _type: object) -> DriverName:
    return parse_driver_name(value, "fix the value or remove it where it was written")


def make_converter() -> cattrs.Converter:
    """A converter with the rules in this module's docstring (tests may make their own)."""
    converter = cattrs.Converter(forbid_extra_keys=False)

    def structure_factory(cls: type) -> Callable[[Mapping[str, Any], Any], Any]:
        return make_dict_structure_fn(cls, converter, **_overrides(cls, unstructuring=False))

    def unstructure_factory(cls: type) -> Callable[[Any], dict[str, Any]]:
        return make_dict_unstructure_fn(
            cls,
            converter,
            _cattrs_omit_if_default=False,
            **_overrides(cls, unstructuring=True),
        )

    converter.register_structure_hook_factory(attrs.has, structure_factory)
    converter.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    # Domain values registered for their class win over the attrs factory above.
    converter.register_structure_hook(PciAddress, lambda value, _: PciAddress.parse(value))
    converter.register_unstructure_hook(PciAddress, str)
    converter.register_structure_hook(DriverName, _structure_driver)
    converter.register_structure_hook(dt.datetime, lambda value, _: parse_timestamp(value))
    converter.register_unstructure_hook(dt.datetime, format_timestamp)
    return converter


CONVERTER: Final = make_converter()
"""The converter every wire form and file format uses."""
