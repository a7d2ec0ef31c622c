"""Where the X server sends input, read from the server's own event stream.

This module owns the probe's *view* of the server: one X connection on which
it selects, without disturbing any other client,

- XInput2 raw key and button events on the root (XI 2.1+ delivers them to
  every client that asks, whoever holds a grab), so every real key press and
  click appears in this connection's stream at the point the server
  processed it;
- FocusIn/FocusOut on the root and on each of its children (every change of
  input focus between top-level windows, and every keyboard grab taken or
  released by anyone, shows there);
- Enter/Leave on the same windows (a pointer grab taken or released with the
  pointer elsewhere shows as a crossing of mode Grab/Ungrab);
- SubstructureNotify on the root and ShapeNotify on its children, which keep
  a :class:`~agent.sources._xorg_stack.RootStack` current.

Events on one connection arrive in the order the server produced them, and a
reply arrives after every event produced before the request was processed.
That is what the decisions below rest on; no timestamp is compared with
another clock.

A **read** (:meth:`ServerView.read`) asks, between two of this connection's
own property changes, whether anyone holds the keyboard or the pointer
(``GrabKeyboard``/``GrabPointer`` on an unmapped window of ours: the server
answers ``AlreadyGrabbed`` when another client holds a grab and
``GrabNotViewable`` otherwise, and never grants it), which window has the
input focus and which buttons are down. A read is *settled* when no focus,
grab or stacking change came between its two markers.

A **key** is placed by its raw event's position in the stream: the read's
focus and keyboard-grab answers hold for the key only when no focus or grab
change lies between the key and the read. A **button press** is placed the
same way for the stacking (the stack as it was when the raw press came by is
kept), and is refused when a pointer grab by another client was in force:
seen at the read with no button down, or shown by Grab/Ungrab crossings
around the press. Anything not known — no raw event seen, a read that did not
settle, a model marked dirty — answers None, and the caller drops the event.

Not covered, by the protocol's nature: a grab taken and released again
between a key and the next read *with the focus window itself as its grab
window* leaves no trace here (no focus events are generated for it). And a
press is accepted under a pointer grab that outlasts it when the pressed
program mapped a window after the press (its own menu opening under the
pointer crosses nothing); should another client hold a grab that the press
did not end at that very moment, the press would be misattributed.

Grabs by a window watched too late: a program that creates a window, maps
it and grabs the keyboard in one burst (a drop-down, a launcher) can take
the grab before the server has processed this connection's selection on the
new window, so the FocusIn of mode Grab that names the holder never comes;
the FocusOut of mode Grab on the window that had focus does. The holder is
then one of the windows whose selection no marker has yet confirmed (a grab
on any other window, or on a window inside one, shows a FocusIn on a watched
window): when exactly one such window exists, it is taken as the holder and
judged like any other; with none or several, keys under that grab answer
None.

Not thread-safe: the probe calls it under its lock.

One piece, though over 600 lines: every answer here rests on the order of
events on this one connection, and the markers, the history of raw events,
the focus and grab changes and the stacking it keeps are read together by
each answer. Split across modules, that shared state would have to be
handed around whole, and a change to one rule could not be judged without
the others. The stacking itself, which needs no event order, is
:mod:`agent.sources._xorg_stack`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import sleep
from typing import Any

from agent.events import Rect
from agent.sources._xorg_stack import SHAPE_BOUNDING, SHAPE_INPUT, RootStack, TopLevel

log = logging.getLogger(__name__)

# Protocol numbers python-xlib does not name in one place.
_RAW_KEY_PRESS, _RAW_KEY_RELEASE, _RAW_BUTTON_PRESS, _RAW_BUTTON_RELEASE = 13, 14, 15, 16
_NOTIFY_GRAB, _NOTIFY_UNGRAB = 1, 2
_GRAB_SUCCESS, _GRAB_NOT_VIEWABLE = 0, 3
_POINTER_ROOT = 1
_GENERIC_EVENT = 35
_BUTTONS_MASK = 0x1F00  # Button1Mask .. Button5Mask

#: How many raw input events and grab crossings are remembered.
_HISTORY = 512
#: How many reads are tried before an answer is given up as "in flux".
_READ_TRIES = 3
#: How long after a press (server ms) the pointer's grabs are judged, at the least.
_SETTLE_MS = 30
_SETTLE_TRIES = 3

KEY, BUTTON = "key", "button"


@dataclass(frozen=True, slots=True)
class Read:
    """What one read found, and where in the stream it stands."""

    start: int  # stream position of the opening marker
    end: int  # stream position of the closing marker
    time: int  # server time of the closing marker
    settled: bool
    keyboard_grabbed: bool
    pointer_grabbed: bool
    buttons_down: bool
    focus: int  # window id; 0 None, 1 PointerRoot


@dataclass(frozen=True, slots=True)
class KeyTarget:
    """The input focus at a key, and the window holding a keyboard grab then, if any."""

    focus: int
    grab_window: int | None = None


@dataclass(frozen=True, slots=True)
class _Raw:
    position: int
    kind: str
    pressed: bool
    time: int
    #: The stack as it was when a button press came by (None for keys, releases).
    stack: tuple[tuple[int, ...], dict[int, TopLevel]] | None
    #: For keys: the window holding the keyboard grab when the key came by.
    holder: int | None = None


class ServerView:
    """The event-stream view of one X connection (see the module docstring)."""

    def __init__(self, reader: Any) -> None:
        from Xlib import X
        from Xlib.ext import xinput

        self._reader = reader
        self._X = X
        self._xinput = xinput
        d = reader.d
        self._d = d
        self.stack = RootStack()
        self._position = 0
        self._focus_changes: deque[int] = deque(maxlen=_HISTORY)
        self._stack_changes: deque[int] = deque(maxlen=_HISTORY)
        self._grab_crossings: deque[tuple[int, int]] = deque(maxlen=_HISTORY)
        self._maps: deque[tuple[int, int]] = deque(maxlen=_HISTORY)  # (position, window)
        self._raw: deque[_Raw] = deque(maxlen=_HISTORY)
        self._markers: dict[int, int] = {}  # marker number -> stream position
        self._next_marker = 0
        self._markers_seen = 0
        self._marker_time = 0  # server time of the newest marker
        self._key_read: Read | None = None
        #: The window that took the keyboard grab in force, as focus events showed.
        self._keyboard_holder: int | None = None
        self._watched: set[int] = set()
        #: Windows whose selection the server may not have processed yet: no
        #: marker made after it has come back. A grab one of them takes can
        #: go unseen (see "Grabs by a window watched too late" above).
        self._unconfirmed: set[int] = set()
        self._shape_pending: set[int] = set()
        self._has_shape = d.has_extension("SHAPE")
        self._shape_event = d.extension_event.ShapeNotify if self._has_shape else -1
        self._marker_atom = d.intern_atom("_OVERT_PROBE_MARKER")
        root = reader.root
        # An unmapped window of ours: markers are property changes on it, and
        # grabs asked for on it can never be granted.
        self._window = root.create_window(
            -10, -10, 1, 1, 0, 0, X.InputOnly, X.CopyFromParent,
            event_mask=X.PropertyChangeMask, override_redirect=True,
        )  # fmt: skip
        self._setup_raw_events()
        root.change_attributes(
            event_mask=X.SubstructureNotifyMask
            | X.FocusChangeMask
            | X.EnterWindowMask
            | X.LeaveWindowMask
        )
        self.reload()

    # -- setting up -----------------------------------------------------------

    def _setup_raw_events(self) -> None:
        from Xlib.protocol import rq

        d = self._d
        if not d.has_extension("XInputExtension"):
            raise RuntimeError("the X server has no XInput extension")
        # python-xlib's own query asks for 2.0; the server must know we speak
        # 2.1+, or it withholds raw events while a grab is active.
        version = self._xinput.XIQueryVersion(
            display=d.display,
            opcode=d.display.get_extension_major("XInputExtension"),
            major_version=2,
            minor_version=2,
        )
        if (version.major_version, version.minor_version) < (2, 1):
            raise RuntimeError("the X server's XInput is older than 2.1 (no raw events)")
        raw_struct = rq.Struct(
            rq.Card16("deviceid"),
            rq.Card32("time"),
            rq.Card32("detail"),
        )
        opcode = d.display.get_extension_major("XInputExtension")
        for evtype in (_RAW_KEY_PRESS, _RAW_KEY_RELEASE, _RAW_BUTTON_PRESS, _RAW_BUTTON_RELEASE):
            d.ge_add_event_data(opcode, evtype, raw_struct)
        self._xi_opcode = opcode
        mask = (
            (1 << _RAW_KEY_PRESS)
            | (1 << _RAW_KEY_RELEASE)
            | (1 << _RAW_BUTTON_PRESS)
            | (1 << _RAW_BUTTON_RELEASE)
        )
        self._reader.root.xinput_select_events([(self._xinput.AllMasterDevices, mask)])

    def reload(self) -> None:
        """Read the root's children again (at start, and whenever the model is dirty)."""
        reader, X = self._reader, self._X
        children: list[TopLevel] = []
        for child in reader.root.query_tree().children:
            wid = int(child.id)
            if wid == self._window.id:
                continue
            try:
                attrs = child.get_attributes()
                geometry = child.get_geometry()
                self._watch(child, wid)
                bounding, input_ = self._shapes(child)
            except reader.gone:
                continue
            border = int(geometry.border_width)
            rect = Rect(
                int(geometry.x),
                int(geometry.y),
                int(geometry.width) + 2 * border,
                int(geometry.height) + 2 * border,
            )
            children.append(
                TopLevel(
                    wid,
                    rect,
                    border,
                    mapped=attrs.map_state != X.IsUnmapped,
                    override_redirect=bool(attrs.override_redirect),
                    bounding=bounding,
                    input=input_,
                )
            )
        self.stack.reset(children)
        self._stack_changes.append(self._position)

    def _watch(self, window: Any, wid: int) -> None:
        if wid in self._watched:
            return
        X = self._X
        window.change_attributes(
            event_mask=X.FocusChangeMask | X.EnterWindowMask | X.LeaveWindowMask
        )
        if self._has_shape:
            window.shape_select_input(1)
        # Sent now, not with the next request: the sooner the server has it,
        # the fewer grabs can come before it.
        self._d.flush()
        self._watched.add(wid)
        self._unconfirmed.add(wid)

    def _shapes(self, window: Any) -> tuple[tuple[Rect, ...] | None, tuple[Rect, ...] | None]:
        if not self._has_shape:
            return None, None
        extents = window.shape_query_extents()
        bounding = self._rects(window, SHAPE_BOUNDING) if extents.bounding_shaped else None
        # No extents flag tells whether an input shape is set: read it, and
        # treat a single rectangle that covers the window as no shape.
        input_ = self._rects(window, SHAPE_INPUT)
        return bounding, input_

    def _rects(self, window: Any, kind: int) -> tuple[Rect, ...] | None:
        reply = window.shape_get_rectangles(kind)
        rects = tuple(
            Rect(int(r.x), int(r.y), int(r.width), int(r.height)) for r in reply.rectangles
        )
        if kind == SHAPE_INPUT and len(rects) == 1:
            geometry = window.get_geometry()
            whole = Rect(0, 0, int(geometry.width), int(geometry.height))
            if rects[0].intersect(whole) == whole:
                return None
        return rects

    # -- the stream -----------------------------------------------------------

    def drain(self) -> None:
        """Take in every event this connection has received."""
        d = self._d
        while d.pending_events():
            self._take(d.next_event())
        if self._shape_pending:
            self._refresh_shapes()

    def _take(self, event: Any) -> None:
        X = self._X
        self._position += 1
        position = self._position
        kind = event.type
        if kind == X.PropertyNotify:
            if event.window.id == self._window.id and event.atom == self._marker_atom:
                # Markers come back in the order they were made (one stream).
                self._markers_seen += 1
                self._markers[self._markers_seen] = position
                self._marker_time = int(event.time)
            return
        if kind == _GENERIC_EVENT:
            self._take_raw(event, position)
            return
        if kind == self._shape_event:
            self._shape_pending.add(event.window.id)
            self._stack_changes.append(position)
            self.stack.generation += 1
            return
        if kind in (X.FocusIn, X.FocusOut):
            self._focus_changes.append(position)
            # A keyboard grab shows as focus moving to the grab window (mode
            # Grab) and back (mode Ungrab): where it went is who holds it.
            if event.mode == _NOTIFY_GRAB and kind == X.FocusIn:
                self._keyboard_holder = int(event.window.id)
            elif event.mode == _NOTIFY_GRAB:
                # Focus left for a grab; the FocusIn that names the holder
                # follows, unless the holder's window was watched too late.
                # Then it is the one window that may have been, if only one.
                late = self._unconfirmed
                self._keyboard_holder = next(iter(late)) if len(late) == 1 else None
            elif event.mode == _NOTIFY_UNGRAB:
                self._keyboard_holder = None
            return
        if kind in (X.EnterNotify, X.LeaveNotify):
            if event.mode in (_NOTIFY_GRAB, _NOTIFY_UNGRAB):
                self._grab_crossings.append((position, int(event.mode)))
            return
        if self._take_structure(event, self._reader.root.id):
            self._stack_changes.append(position)

    def _take_raw(self, event: Any, position: int) -> None:
        if getattr(event, "extension", None) != self._xi_opcode:
            return
        data = event.data
        evtype = event.evtype
        if evtype in (_RAW_KEY_PRESS, _RAW_KEY_RELEASE):
            pressed = evtype == _RAW_KEY_PRESS
            holder = self._keyboard_holder
            self._raw.append(_Raw(position, KEY, pressed, int(data.time), None, holder))
        elif evtype in (_RAW_BUTTON_PRESS, _RAW_BUTTON_RELEASE):
            pressed = evtype == _RAW_BUTTON_PRESS
            snapshot = (
                (tuple(self.stack.order), dict(self.stack.windows))
                if pressed and not self.stack.dirty
                else None
            )
            self._raw.append(_Raw(position, BUTTON, pressed, int(data.time), snapshot))

    def _take_structure(self, event: Any, root_id: int) -> bool:
        """Apply a structure event to the stack; True if it changed anything."""
        X = self._X
        stack = self.stack
        kind = event.type
        parent = getattr(event, "event", None)
        on_root = parent is not None and getattr(parent, "id", None) == root_id
        if kind == X.CreateNotify:
            if event.parent.id != root_id or event.window.id == self._window.id:
                return False
            border = int(event.border_width)
            rect = Rect(
                int(event.x),
                int(event.y),
                int(event.width) + 2 * border,
                int(event.height) + 2 * border,
            )
            stack.created(event.window.id, rect, border, override_redirect=bool(event.override))
            with contextlib.suppress(*self._reader.gone):
                self._watch(event.window, event.window.id)
            self._shape_pending.add(event.window.id)
            return True
        if not on_root:
            return False
        wid = event.window.id
        if wid == self._window.id:
            return False
        if kind == X.DestroyNotify:
            stack.destroyed(wid)
            self._watched.discard(wid)
            self._unconfirmed.discard(wid)
        elif kind == X.MapNotify:
            stack.mapped(wid, override_redirect=bool(event.override))
            self._maps.append((self._position, wid))
        elif kind == X.UnmapNotify:
            stack.unmapped(wid)
        elif kind == X.ConfigureNotify:
            border = int(event.border_width)
            rect = Rect(
                int(event.x),
                int(event.y),
                int(event.width) + 2 * border,
                int(event.height) + 2 * border,
            )
            above = event.above_sibling
            stack.configured(
                wid,
                rect,
                border,
                int(above.id) if above else 0,
                override_redirect=bool(event.override),
            )
        elif kind == X.CirculateNotify:
            stack.circulated(wid, on_top=event.place == X.PlaceOnTop)
        elif kind == X.GravityNotify:
            stack.moved(wid, int(event.x), int(event.y))
        elif kind == X.ReparentNotify:
            if event.parent.id == root_id:
                stack.reparented(wid, to_root=True, override_redirect=bool(event.override))
            elif wid in stack.windows:
                stack.reparented(wid, to_root=False)
            else:
                return False
        else:
            return False
        return True

    def _refresh_shapes(self) -> None:
        pending, self._shape_pending = self._shape_pending, set()
        for wid in pending:
            if wid not in self.stack.windows:
                continue
            window = self._d.create_resource_object("window", wid)
            try:
                bounding, input_ = self._shapes(window)
            except self._reader.gone:
                continue
            self.stack.shaped(wid, SHAPE_BOUNDING, bounding)
            self.stack.shaped(wid, SHAPE_INPUT, input_)

    # -- reads ----------------------------------------------------------------

    def _mark(self) -> int:
        self._next_marker += 1
        self._window.change_property(self._marker_atom, self._marker_atom, 32, [self._next_marker])
        return self._next_marker

    def read(self, *, pointer: bool = True) -> Read:
        """One read of focus and grabs (and, with ``pointer``, buttons), placed in the stream."""
        X = self._X
        window, d = self._window, self._d
        watching = set(self._unconfirmed)  # selections sent before the opening marker
        opening = self._mark()
        keyboard = window.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        if keyboard == _GRAB_SUCCESS:  # pragma: no cover - an unmapped window
            d.ungrab_keyboard(X.CurrentTime)
        focus = d.get_input_focus().focus
        grabbed, buttons = _GRAB_NOT_VIEWABLE, 0
        if pointer:
            grabbed = window.grab_pointer(
                False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime
            )
            if grabbed == _GRAB_SUCCESS:  # pragma: no cover - an unmapped window
                d.ungrab_pointer(X.CurrentTime)
            buttons = self._reader.root.query_pointer().mask
        closing = self._mark()
        d.get_input_focus()  # a round trip: the closing marker is now in the queue
        self.drain()
        start, end = self._markers.pop(opening, None), self._markers.pop(closing, None)
        if start is None or end is None:
            return Read(0, 0, 0, False, True, True, True, 0)
        # The server processed those selections before the opening marker.
        self._unconfirmed -= watching
        settled = not (
            _any_between(self._focus_changes, start, end)
            or _any_between(self._stack_changes, start, end)
            or any(start < p < end for p, _ in self._grab_crossings)
            or self.stack.dirty
        )
        focus_id = focus if isinstance(focus, int) else int(focus.id)
        return Read(
            start,
            end,
            self._marker_time,
            settled,
            keyboard_grabbed=keyboard != _GRAB_NOT_VIEWABLE,
            pointer_grabbed=grabbed != _GRAB_NOT_VIEWABLE,
            buttons_down=bool(buttons & _BUTTONS_MASK),
            focus=focus_id,
        )

    def settled_read(self, *, pointer: bool = True) -> Read | None:
        for _ in range(_READ_TRIES):
            if self.stack.dirty:
                self.reload()
            result = self.read(pointer=pointer)
            if result.settled:
                if not pointer:
                    self._key_read = result
                return result
        return None

    def find_raw(self, kind: str, pressed: bool, time: int) -> _Raw | None:
        """The raw event of an input pynput reported (kind, press or release, server time)."""
        for raw in reversed(self._raw):
            if raw.kind == kind and raw.pressed == pressed and raw.time == time:
                return raw
        return None

    def _find_key(self, time: int) -> _Raw | None:
        return self.find_raw(KEY, True, time) or self.find_raw(KEY, False, time)

    # -- answers --------------------------------------------------------------

    def key_focus(self, time: int) -> KeyTarget | None:
        """Where a key at server ``time`` went, or None if not known.

        A key that came while a keyboard grab was in force (as the focus
        events of mode Grab and Ungrab show) went to the grab window's
        client: ``grab_window`` names it, and the caller judges that window,
        not the focus. None when focus was None or PointerRoot (keys then go
        where the pointer is), when a grab was held that no focus event
        showed being taken, or when focus or grabs changed between the key
        and the read.
        """
        self.drain()
        raw = self._find_key(time)
        result = self._key_read
        # Keys that waited in the agent's queue come before the last read: it
        # answers for them too, with no new round trip.
        if raw is None or result is None or raw.position > result.start:
            result = self.settled_read(pointer=False)
            raw = self._find_key(time)
        if raw is None or result is None:
            return None
        if raw.holder is not None:
            # A grab was in force at the key: it went to the grab window's
            # client, whatever focus did afterwards (a menu closing on Enter).
            return KeyTarget(result.focus, grab_window=raw.holder)
        low, high = sorted((raw.position, result.start))
        high = max(high, result.end)
        if _any_between(self._focus_changes, low, high) or any(
            low < p < high for p, _ in self._grab_crossings
        ):
            return None
        if result.focus <= _POINTER_ROOT:
            return None
        if result.keyboard_grabbed:
            return None  # a grab that no focus event showed being taken: whose is unknown
        return KeyTarget(result.focus)

    def pointer_top(
        self, x: int, y: int, time: int, same_process: Callable[[int, int], bool]
    ) -> TopLevel | None:
        """The root child a button press at (x, y), server ``time``, went to; None if unknown.

        ``same_process(top, window)`` tells whether a window belongs to the
        program behind root child ``top``.
        """
        result = self.settled_read()
        # A press that dismisses another client's menu ends that client's
        # grab right after it; wait until the server has had the time to do
        # so, so that the Ungrab crossing is seen before deciding.
        for _ in range(_SETTLE_TRIES):
            if result is None or result.time - time >= _SETTLE_MS:
                break
            sleep((_SETTLE_MS - max(0, result.time - time) + 1) / 1000)
            result = self.settled_read()
        if result is None:
            return None
        raw = self.find_raw(BUTTON, True, time)
        if raw is None or raw.stack is None:
            return None  # no raw press seen, or the stack was being read again then
        order, windows = raw.stack
        top = RootStack(order=list(order), windows=windows, dirty=False).top_at(x, y)
        if top is None or self._pointer_grab_around(raw.position, result, top, same_process):
            return None
        return top

    def _pointer_grab_around(
        self,
        position: int,
        result: Read,
        top: TopLevel,
        same_process: Callable[[int, int], bool],
    ) -> bool:
        """Whether another client may have held an explicit pointer grab at ``position``."""
        if result.pointer_grabbed and not result.buttons_down:
            # A grab now that no button holds: an explicit one. It was in force
            # at the press unless it began after it: shown by a Grab crossing,
            # or by a window the pressed program mapped after the press (its
            # own menu or drop-down opening under the pointer, which crosses
            # nothing).
            began_after = any(
                p > position and mode == _NOTIFY_GRAB for p, mode in self._grab_crossings
            ) or any(p > position and same_process(top.window_id, wid) for p, wid in self._maps)
            if not began_after:
                return True
        grabbed = False
        for p, mode in self._grab_crossings:
            if p < position:
                grabbed = mode == _NOTIFY_GRAB
            else:
                # The first crossing after the press tells what was in force.
                return grabbed or mode == _NOTIFY_UNGRAB
        return grabbed

    def changed_since(self, generation: int) -> bool:
        return self.stack.generation != generation or self.stack.dirty


def _any_between(positions: deque[int], low: int, high: int) -> bool:
    return any(low < p < high for p in positions)
