"""Records to actions: the order a batch's records are taken in, and the
action columns of each input record.

This module owns what an action is, from the records of
``overt.wire.records``: a button press is a ``click`` (with its release's
time and place as ``end_*`` when the release is in the same batch; a
release without its press is a ``release``); a scroll is ``scroll``; a
pointer path is ``drag``, ``approach`` or ``hover``; a text span is ``text``
(already redacted on the device); a shortcut record is ``key``; key timing
records are ``key_down`` and ``key_up``.

Records are taken in time order within a batch (ties in body order). It is
pure: records in, column values out; sessions, screenshots and files are the
dataset writer's (:mod:`collector.export.dataset`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from overt.wire.records import (
    ClickRecord,
    KeyTimingRecord,
    MousePathRecord,
    Record,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
)

from .errors import BatchRejected


def in_time_order(records: list[Record]) -> Iterator[tuple[Record, ClickRecord | None]]:
    """Each record in time order (ties in body order), with a press's release
    when the batch holds it; a release paired with its press is not given on
    its own."""
    order = sorted(range(len(records)), key=_sort_keys(records).__getitem__)
    releases = _pair_clicks(records, order)
    consumed = {j for j in releases.values() if j is not None}
    for i in order:
        if i in consumed:
            continue
        j = releases.get(i)
        release = None if j is None else records[j]
        assert release is None or isinstance(release, ClickRecord)
        yield records[i], release


def action_columns(rec: Record, release: ClickRecord | None) -> dict[str, Any]:
    """The action columns of one input record (not context, marker or screenshot)."""
    if isinstance(rec, ClickRecord):
        a = _blank(rec.t, "click" if rec.pressed else "release")
        a.update(button=rec.button, x=rec.x, y=rec.y)
        if release is not None:
            a.update(end_ms=release.t, end_x=release.x, end_y=release.y)
        return a
    if isinstance(rec, ScrollRecord):
        a = _blank(rec.t, "scroll")
        a.update(x=rec.x, y=rec.y, dx=rec.dx, dy=rec.dy)
        return a
    if isinstance(rec, MousePathRecord):
        points = rec.points()
        a = _blank(rec.t, rec.kind.value)
        last = points[-1]
        a.update(
            x=rec.x,
            y=rec.y,
            end_x=last[1],
            end_y=last[2],
            end_ms=last[0] + rec.dwell_ms,
            path=[[t - rec.t, x, y] for t, x, y in points],
            dwell_ms=rec.dwell_ms,
        )
        return a
    if isinstance(rec, TextSpanRecord):
        a = _blank(rec.t, "text")
        a.update(end_ms=max(rec.t, rec.end), text=rec.text, redactions=rec.redactions)
        return a
    if isinstance(rec, ShortcutRecord):
        a = _blank(rec.t, "key")
        a.update(keys=rec.key)
        return a
    if isinstance(rec, KeyTimingRecord):
        return _blank(rec.t, "key_down" if rec.pressed else "key_up")
    raise BatchRejected("invalid body", f"unknown record type {type(rec).__name__}")


def _sort_keys(records: list[Record]) -> list[tuple[int, int]]:
    """Time order, ties in body order. Screenshot times are made non-decreasing
    in body order, so a chain's deltas are applied in the order they were
    encoded even if the device's clock stepped back."""
    keys = []
    last_shot = -(2**63)
    for i, r in enumerate(records):
        t = r.t
        if isinstance(r, ScreenshotRecord):
            t = last_shot = max(t, last_shot)
        keys.append((t, i))
    return keys


def _pair_clicks(records: list[Record], order: list[int]) -> dict[int, int | None]:
    """Each press's index -> the index of its release (None when not in the batch)."""
    pairs: dict[int, int | None] = {}
    open_press: dict[str, int] = {}
    for i in order:
        r = records[i]
        if not isinstance(r, ClickRecord):
            continue
        if r.pressed:
            open_press[r.button] = i
            pairs[i] = None
        elif r.button in open_press:
            pairs[open_press.pop(r.button)] = i
    return pairs


def _blank(t: int, action: str) -> dict[str, Any]:
    return {
        "t_ms": t,
        "end_ms": t,
        "action": action,
        "button": "",
        "x": None,
        "y": None,
        "end_x": None,
        "end_y": None,
        "dx": 0,
        "dy": 0,
        "path": [],
        "dwell_ms": 0,
        "keys": "",
        "text": "",
        "redactions": 0,
    }
