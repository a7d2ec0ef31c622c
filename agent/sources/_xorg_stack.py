"""What the X server says about the root window's children, kept current from its events.

This module owns a plain model of the top-level windows as the server stacks
them — every child of the root, window-manager frames and override-redirect
popups alike, bottom to top — with each one's outer rectangle, whether it is
mapped, and its SHAPE regions. The X probe (:mod:`agent.sources._xorg`) reads
the tree once, then feeds this model the root's SubstructureNotify events
(Create, Destroy, Map, Unmap, Configure, Circulate, Reparent, Gravity) and
ShapeNotify, so that "which window is on top at this point" and "what covers
this window" are answered from memory, without a round trip per input event.

It makes no X calls and imports no X library; tests feed it events by hand.

Guarantees, and where it stops:

- The stacking order follows ConfigureNotify's ``above_sibling`` exactly as
  the protocol defines it (0: bottom of the stack). An event that names a
  window the model does not know, or a sibling it does not know, marks the
  model ``dirty``: the owner must read the tree again before trusting it.
- ``generation`` grows with every event that could change what is on top
  anywhere, so a caller can tell that nothing changed between two moments.
- Hit-testing follows how the server routes the pointer: a point belongs to
  the topmost mapped child whose rectangle holds it, unless that child's
  bounding or input shape leaves the point out, in which case the point falls
  through to the children below.
- Covering is conservative: a mapped window above another hides the whole of
  its outer rectangle, shaped or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.events import Rect, intersect_region, subtract

#: SHAPE kinds as the protocol numbers them.
SHAPE_BOUNDING, SHAPE_CLIP, SHAPE_INPUT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class TopLevel:
    """One child of the root window."""

    window_id: int
    #: Outer rectangle in root coordinates, border included.
    rect: Rect
    border: int = 0
    mapped: bool = False
    override_redirect: bool = False
    #: Bounding and input shapes, relative to the window's origin inside its
    #: border; None where the window is not shaped (its rectangle is its shape).
    bounding: tuple[Rect, ...] | None = None
    input: tuple[Rect, ...] | None = None

    def _shape_holds(self, shape: tuple[Rect, ...] | None, x: int, y: int) -> bool:
        if shape is None:
            return True
        ox, oy = self.rect.x + self.border, self.rect.y + self.border
        return any(r.contains(x - ox, y - oy) for r in shape)

    def takes_pointer_at(self, x: int, y: int) -> bool:
        """Whether the pointer at root point (x, y) is inside this window."""
        return (
            self.mapped
            and self.rect.contains(x, y)
            and self._shape_holds(self.bounding, x, y)
            and self._shape_holds(self.input, x, y)
        )

    def shape_region(self) -> list[Rect]:
        """Where this window can show pixels, in root coordinates."""
        if self.bounding is None:
            return [self.rect]
        ox, oy = self.rect.x + self.border, self.rect.y + self.border
        return intersect_region([r.translated(ox, oy) for r in self.bounding], [self.rect])


@dataclass
class RootStack:
    """The root's children, bottom to top, as the server's events describe them."""

    #: Window ids, bottom of the stack first.
    order: list[int] = field(default_factory=list)
    windows: dict[int, TopLevel] = field(default_factory=dict)
    generation: int = 0
    #: The model may disagree with the server: read the tree again.
    dirty: bool = True

    # -- loading ------------------------------------------------------------

    def reset(self, children: list[TopLevel]) -> None:
        """Start again from a fresh read of the tree (``children`` bottom to top)."""
        self.order = [c.window_id for c in children]
        self.windows = {c.window_id: c for c in children}
        self.dirty = False
        self.generation += 1

    # -- events ---------------------------------------------------------------

    def created(self, window_id: int, rect: Rect, border: int, *, override_redirect: bool) -> None:
        """CreateNotify on the root: a new child, on top, not yet mapped."""
        self._drop(window_id)
        self.windows[window_id] = TopLevel(
            window_id, rect, border, override_redirect=override_redirect
        )
        self.order.append(window_id)
        self.generation += 1

    def destroyed(self, window_id: int) -> None:
        self._drop(window_id)
        self.generation += 1

    def mapped(self, window_id: int, *, override_redirect: bool) -> None:
        self._update(window_id, mapped=True, override_redirect=override_redirect)

    def unmapped(self, window_id: int) -> None:
        self._update(window_id, mapped=False)

    def configured(
        self,
        window_id: int,
        rect: Rect,
        border: int,
        above_sibling: int,
        *,
        override_redirect: bool,
    ) -> None:
        """ConfigureNotify: new geometry, and the window now lies just above ``above_sibling``."""
        if not self._update(
            window_id, rect=rect, border=border, override_redirect=override_redirect
        ):
            return
        self.order.remove(window_id)
        if above_sibling == 0:
            self.order.insert(0, window_id)
        elif above_sibling in self.windows:
            self.order.insert(self.order.index(above_sibling) + 1, window_id)
        else:
            self.order.append(window_id)
            self.dirty = True

    def circulated(self, window_id: int, *, on_top: bool) -> None:
        if window_id not in self.windows:
            self.dirty = True
            return
        self.order.remove(window_id)
        if on_top:
            self.order.append(window_id)
        else:
            self.order.insert(0, window_id)
        self.generation += 1

    def moved(self, window_id: int, x: int, y: int) -> None:
        """GravityNotify: the window moved because its parent was resized."""
        current = self.windows.get(window_id)
        if current is None:
            self.dirty = True
            return
        self._update(window_id, rect=Rect(x, y, current.rect.width, current.rect.height))

    def reparented(
        self,
        window_id: int,
        *,
        to_root: bool,
        rect: Rect | None = None,
        border: int = 0,
        override_redirect: bool = False,
    ) -> None:
        """ReparentNotify: a window became a child of the root, or stopped being one."""
        if not to_root:
            self.destroyed(window_id)
            return
        # A window reparented to the root keeps its map state, which the event
        # does not carry: it is placed unmapped and the tree must be read again.
        self.created(
            window_id, rect or Rect(0, 0, 0, 0), border, override_redirect=override_redirect
        )
        self.dirty = True

    def shaped(self, window_id: int, kind: int, rects: tuple[Rect, ...] | None) -> None:
        """ShapeNotify (with the rectangles read back): a new bounding or input shape."""
        if kind == SHAPE_BOUNDING:
            self._update(window_id, bounding=rects)
        elif kind == SHAPE_INPUT:
            self._update(window_id, input=rects)

    # -- questions ------------------------------------------------------------

    def top_at(self, x: int, y: int) -> TopLevel | None:
        """The child the pointer at root point (x, y) is in, or None (the root)."""
        for window_id in reversed(self.order):
            window = self.windows[window_id]
            if window.takes_pointer_at(x, y):
                return window
        return None

    def visible_part(self, window_id: int, area: Rect) -> list[Rect] | None:
        """The parts of ``area`` where child ``window_id`` is not covered by a child above it.

        None when the window is not a known, mapped child.
        """
        window = self.windows.get(window_id)
        if window is None or not window.mapped:
            return None
        region = intersect_region([area], window.shape_region())
        above = self.order[self.order.index(window_id) + 1 :]
        for other_id in above:
            other = self.windows[other_id]
            if other.mapped:
                region = subtract(region, other.rect)
                if not region:
                    break
        return region

    # -- internals ------------------------------------------------------------

    def _drop(self, window_id: int) -> None:
        if window_id in self.windows:
            del self.windows[window_id]
            self.order.remove(window_id)

    def _update(self, window_id: int, **changes: object) -> bool:
        current = self.windows.get(window_id)
        if current is None:
            self.dirty = True
            return False
        self.windows[window_id] = replace(current, **changes)  # type: ignore[arg-type]
        self.generation += 1
        return True
