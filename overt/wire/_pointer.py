"""The pointer stream of a batch body: every mouse path record, bit-packed.

Private to ``overt.wire.body``, which frames the stream and checks it against
the body's limits; this module only turns path records into bits and back.
It is its own module because it is the one part of the body that is not
byte-aligned: Exp-Golomb codes with an order chosen per column, path starts
coded from where the previous path stopped, and steps coded from what the
steps before them predict. docs/FORMATS.md ("The pointer stream") specifies
the bits.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import BodyFormatError, BodyLimitError, FormatError
from .records import MousePathRecord, PathKind

#: Path kinds in the stream: codes 0, 10 and 11 (hovers are the most common).
KINDS = (PathKind.HOVER, PathKind.APPROACH, PathKind.DRAG)
_I64 = 2**63


def chain(paths: Sequence[MousePathRecord]) -> dict[str, list[int]]:
    """Each path's first sample (t, x, y) as a difference from the previous
    path's anchor: its last sample, with its dwell added to the time (the
    first path: from zero). Pointer paths mostly start where and when the
    last one stopped: a hover where the approach before it ended, an approach
    where the hover before it was."""
    at = ax = ay = 0
    ts, xs, ys = [], [], []
    for p in paths:
        ts.append(p.t - at)
        xs.append(p.x - ax)
        ys.append(p.y - ay)
        at, ax, ay = p.t + sum(p.dt) + p.dwell_ms, p.x + sum(p.dx), p.y + sum(p.dy)
    return {"t": ts, "x": xs, "y": ys}


def _unchain(
    ts: list[int],
    xs: list[int],
    ys: list[int],
    dts: Sequence[tuple[int, ...]],
    dxs: Sequence[tuple[int, ...]],
    dys: Sequence[tuple[int, ...]],
    dwells: list[int],
) -> None:
    """Undo :func:`chain` in place (``ts``, ``xs``, ``ys`` become absolute)."""
    at = ax = ay = 0
    for i in range(len(ts)):
        ts[i] += at
        xs[i] += ax
        ys[i] += ay
        at, ax, ay = ts[i] + sum(dts[i]) + dwells[i], xs[i] + sum(dxs[i]), ys[i] + sum(dys[i])


class BitWriter:
    """Bits, most significant first, into bytes; the last byte is padded with zeros."""

    __slots__ = ("_acc", "_bits", "_out")

    def __init__(self) -> None:
        self._acc = 0
        self._bits = 0
        self._out = bytearray()

    def write(self, value: int, width: int) -> None:
        """``value`` (below ``2**width``) in ``width`` bits."""
        self._acc = (self._acc << width) | value
        self._bits += width
        if self._bits >= 64:  # keep the accumulator small: whole bytes go out
            spare = self._bits & 7
            self._out += (self._acc >> spare).to_bytes(self._bits >> 3, "big")
            self._acc &= (1 << spare) - 1
            self._bits = spare

    def exp_golomb(self, u: int, k: int) -> None:
        """``u`` ≥ 0 as Exp-Golomb of order ``k``: ``u + 2**k`` in n bits after n - k - 1 zeros."""
        v = u + (1 << k)
        self.write(v, 2 * v.bit_length() - k - 1)

    def getvalue(self) -> bytes:
        pad = -self._bits & 7
        return bytes(self._out) + (self._acc << pad).to_bytes((self._bits + pad) >> 3, "big")


class _BitReader:
    """The reading side of :class:`BitWriter`."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._end = 8 * len(data)
        self.pos = 0  # in bits

    @property
    def left(self) -> int:
        return self._end - self.pos

    def read(self, width: int) -> int:
        end = self.pos + width
        if end > self._end:
            raise BodyFormatError("the pointer stream is cut off")
        first, last = self.pos >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big") >> (8 * last - end)
        self.pos = end
        return chunk & ((1 << width) - 1)

    def exp_golomb(self, k: int) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > 64:
                raise BodyFormatError("an Exp-Golomb code longer than 64 bits")
        return ((1 << (zeros + k)) | self.read(zeros + k)) - (1 << k)


def _exp_golomb_order(values: Sequence[int]) -> int:
    """The order k that codes ``values`` (≥ 0), and k itself, in about the fewest bits.

    A value of bit length L takes about 2 * max(L, k + 1) - k - 1 bits at order
    k, so the sums come from a histogram of bit lengths (ignoring the rare
    carry that adds a bit); k takes 2 * bit_length(k + 1) - 1 bits.
    """
    lengths: dict[int, int] = {}
    for u in values:
        n = u.bit_length()
        lengths[n] = lengths.get(n, 0) + 1
    return min(
        range(max(lengths) + 1),
        key=lambda k: (
            2 * (k + 1).bit_length() + sum(c * (2 * max(n, k + 1) - k) for n, c in lengths.items())
        ),
    )


def write_column(w: BitWriter, values: Sequence[int]) -> None:
    """A column of integers: a sign bit (zigzag when any is negative), its
    Exp-Golomb order k (order 0), then each value at order k. No header when
    empty: the reader knows how many values to expect."""
    if not values:
        return
    if not all(-_I64 <= v < _I64 for v in values):
        raise FormatError("an integer in a record does not fit in 64 bits")
    signed = any(v < 0 for v in values)
    us = [(v << 1) ^ (v >> 63) for v in values] if signed else values
    k = _exp_golomb_order(us)
    w.write(signed, 1)
    w.exp_golomb(k, 0)
    for u in us:
        w.exp_golomb(u, k)


def _read_column(r: _BitReader, count: int) -> list[int]:
    if count == 0:
        return []
    signed = r.read(1)
    k = r.exp_golomb(0)
    if k > 64:
        raise BodyFormatError("an Exp-Golomb order above 64")
    if count * (k + 1) > r.left:  # every value takes at least k + 1 bits
        raise BodyFormatError("the pointer stream is shorter than its records need")
    us = [r.exp_golomb(k) for _ in range(count)]
    if signed:
        if any(u >> 64 for u in us):
            raise BodyFormatError("an integer does not fit in 64 bits")
        return [(u >> 1) ^ -(u & 1) for u in us]
    if any(u >> 63 for u in us):
        raise BodyFormatError("an integer does not fit in 64 bits")
    return us


def _predict(d: Sequence[int], dt: Sequence[int], i: int) -> int:
    """Step ``i`` of a path's ``dx`` or ``dy`` (``d``) as the steps before it
    in the same path foretell it: nothing for the first step; after two steps
    as long in time as this one, the last step plus the change from the one
    before (a pointer keeps accelerating); otherwise the last step scaled to
    this step's duration, rounded half up (the last, shorter step of a
    resampled path)."""
    if i == 0:
        return 0
    if i >= 2 and dt[i] == dt[i - 1] == dt[i - 2]:
        return 2 * d[i - 1] - d[i - 2]
    if dt[i - 1] > 0:
        return (2 * d[i - 1] * dt[i] + dt[i - 1]) // (2 * dt[i - 1])
    return d[i - 1]


def _predicted_steps(paths: Sequence[MousePathRecord]) -> list[list[int]] | None:
    """The step columns of the predicted coding: the period (the most common
    ``dt``, the smallest of equals), every ``dt`` less the period, and every
    ``dx`` and ``dy`` less its prediction; ``None`` when a value does not fit
    in 64 bits (the raw coding is used then)."""
    counts: dict[int, int] = {}
    for p in paths:
        for v in p.dt:
            counts[v] = counts.get(v, 0) + 1
    period = min(counts, key=lambda v: (-counts[v], v))
    dts = [v - period for p in paths for v in p.dt]
    res: list[list[int]] = [[], []]
    for p in paths:
        for col, d in zip(res, (p.dx, p.dy), strict=True):
            col.extend(d[i] - _predict(d, p.dt, i) for i in range(len(d)))
    columns = [[period], dts, *res]
    if not all(-_I64 <= v < _I64 for col in columns for v in col):
        return None
    return columns


def write_stream(paths: Sequence[MousePathRecord]) -> bytes:
    """The path records of a body as one bit-packed stream.

    The encoder writes the steps both raw and predicted and keeps the shorter
    (raw when a predicted value would not fit in 64 bits). Exp-Golomb with an
    order chosen per column fits small, skewed values (a hover starting 2 px
    from where the last path stopped) and large ones alike, with no table to
    pay for in every batch.
    """
    for p in paths:
        if not len(p.dt) == len(p.dx) == len(p.dy):
            raise FormatError("a path's dt, dx and dy differ in length")
    starts = chain(paths)
    columns: list[Sequence[int]] = [[len(p.dt) for p in paths]]
    columns += [starts[name][:1] for name in ("t", "x", "y")]
    columns += [starts[name][1:] for name in ("t", "x", "y")]
    columns.append([p.dwell_ms for p in paths])

    def head() -> BitWriter:
        w = BitWriter()
        for p in paths:
            code = KINDS.index(p.kind)
            w.write((0, 0b10, 0b11)[code], min(2, code + 1))
        for values in columns:
            write_column(w, values)
        return w

    raw = [[v for p in paths for v in getattr(p, name)] for name in ("dt", "dx", "dy")]
    if not raw[0]:
        return head().getvalue()
    best = b""
    for mode, steps in ((0, raw), (1, _predicted_steps(paths))):
        if steps is None:
            continue
        w = head()
        w.write(mode, 1)
        for values in steps:
            write_column(w, values)
        out = w.getvalue()
        if not best or len(out) < len(best):
            best = out
    return best


def read_stream(data: bytes, count: int, max_steps: int) -> list[MousePathRecord]:
    """``count`` path records from ``data``, which must be the whole stream;
    ``BodyLimitError`` ("path steps") before reading more than ``max_steps``
    steps."""
    r = _BitReader(data)
    kinds = []
    for _ in range(count):
        code = r.read(1) and 1 + r.read(1)
        kinds.append(KINDS[code])
    steps = _read_column(r, count)
    if any(n < 0 for n in steps):
        raise BodyFormatError("a negative sample count")
    first = [_read_column(r, min(1, count)) for _ in range(3)]  # t, x, y
    rest = [_read_column(r, max(0, count - 1)) for _ in range(3)]
    ts, xs, ys = (a + b for a, b in zip(first, rest, strict=True))
    dwells = _read_column(r, count)
    total = sum(steps)
    if total > max_steps:
        raise BodyLimitError("path steps", f"{total} path steps, at most {max_steps}")
    predicted = total > 0 and r.read(1) == 1
    if predicted:
        (period,) = _read_column(r, 1)
        flat = [[v + period for v in _read_column(r, total)]]
        if any(not -_I64 <= v < _I64 for v in flat[0]):
            raise BodyFormatError("an integer does not fit in 64 bits")
        flat += [_read_column(r, total) for _ in range(2)]  # residuals of dx, dy
    else:
        flat = [_read_column(r, total) for _ in range(3)]  # dt, dx, dy
    dts: list[tuple[int, ...]] = []
    dxs: list[tuple[int, ...]] = []
    dys: list[tuple[int, ...]] = []
    at = 0
    for n in steps:
        dt = flat[0][at : at + n]
        dts.append(tuple(dt))
        for out, col in ((dxs, flat[1]), (dys, flat[2])):
            d = col[at : at + n]
            if predicted:
                for i in range(n):
                    d[i] += _predict(d, dt, i)
                    if not -_I64 <= d[i] < _I64:  # else a crafted stream doubles a value per step
                        raise BodyFormatError("an integer does not fit in 64 bits")
            out.append(tuple(d))
        at += n
    _unchain(ts, xs, ys, dts, dxs, dys, dwells)
    paths = [
        MousePathRecord(*row) for row in zip(ts, kinds, xs, ys, dts, dxs, dys, dwells, strict=True)
    ]
    if r.read(-r.pos & 7):
        raise BodyFormatError("the pointer stream's padding is not zero")
    if r.left:
        raise BodyFormatError("the pointer stream is longer than its records")
    return paths
