"""Wire-field helpers: a renamed field is kept at its default; timestamps are UTC in any zone."""

from __future__ import annotations

import datetime as dt
import time

from pcihost.wirefields import OMIT_IF_DEFAULT_KEY, format_timestamp, wire_name


def test_wire_name_keeps_the_field_by_default():
    """A renamed field is written even at its default unless asked otherwise."""
    assert wire_name("pciVendorSelector")[OMIT_IF_DEFAULT_KEY] is False


def test_timestamps_are_written_in_utc_whatever_the_local_zone(monkeypatch):
    """RFC 3339 with Z: a moment at +09:00 is written as the UTC time, in any TZ."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        moment = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
        assert format_timestamp(moment) == "2026-01-01T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()
