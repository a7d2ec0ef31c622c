"""The real agent on the test desktop, and what the tests read back from it.

This module owns the rig that drives the whole capture agent in-process (real
pynput hooks on XTEST input, the python-xlib window probe, mss grabs, the
decision engine and the pipeline, writing to a ``MemorySink``) and the small
readers tests use on what it captured: records decoded from the batches,
screenshots reassembled into frames, pixels of one colour counted, input
records inside a stretch of time. It also makes the work app a distinct
executable (a copy of the Python binary), so policies can match it by its
real path. The pytest fixtures around it live in ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from agent.app import Agent
from agent.config import AgentConfig
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.sinks.memory import MemorySink
from agent.sources._pynput import PynputHooks
from agent.sources._xorg import XorgWindowProbe
from agent.sources.screen import select_screen_grabber
from overt.wire.body import decode_body
from overt.wire.frames import reassemble
from overt.wire.records import (
    ClickRecord,
    KeyTimingRecord,
    MousePathRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
)
from policies.keys import generate_private_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload, sign_policy
from tests.desktop import ARTIFACTS, REPO_ROOT, Desktop

ROOT = REPO_ROOT

#: Colours as RGB. Frames are lossless for flat fills, but a frame that falls
#: back to a lossy codec shifts them a little: counts allow this much per channel.
COLOUR_TOLERANCE = 40


@dataclass
class Clock:
    """Real time plus an offset the test can move forward (pause expiry)."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Rig:
    agent: Agent
    sink: MemorySink
    hooks: PynputHooks
    clock: Clock
    desktop: Desktop
    #: Signs a new policy document into the agent's policy file (as device
    #: management would drop one in place).
    replace_policy: Callable[[dict[str, Any]], None] = lambda _doc: None
    _seen: list[Record] = field(default_factory=list)
    _images: dict[str, bytes] = field(default_factory=dict)
    _read: int = 0  # batches of the sink already decoded

    def settle(self, quiet: float = 0.4, timeout: float = 10.0) -> None:
        """Wait until the agent has taken in all injected input."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            seen = self.agent.status().events_seen
            if seen != last:
                last, since = seen, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def records(self) -> list[Record]:
        """Everything captured so far, in order (flushing the open batch)."""
        self.settle()
        self.agent.flush()
        for batch in self.sink.batches[self._read :]:
            records, images = decode_body(batch.body)
            self._seen.extend(records)
            self._images.update(images)
            self._read += 1
        return list(self._seen)

    def images(self) -> dict[str, bytes]:
        self.records()
        return dict(self._images)

    def now_ms(self) -> int:
        """The agent's clock now, in record milliseconds."""
        return round(self.clock() * 1000)


def policy_document(**capture: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (ROOT / "policies" / "examples" / "test-workapp.json").read_text(encoding="utf-8")
    )
    now = datetime.now(UTC).replace(microsecond=0)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=30)).isoformat()
    doc["apps"][0]["capture"].update(capture)
    return doc


def exe_policy_document(
    exe_paths: Iterable[str | Path | dict[str, str]],
    *,
    app_id: str = "overt-workapp",
    title_rules: Iterable[dict[str, str]] = (),
    **capture: Any,
) -> dict[str, Any]:
    """The test policy, allowing one app by its real executable only.

    ``exe_paths`` are absolute paths (or ``{"path", "sha256"}`` objects). No
    WM_CLASS, process or exe name is listed: those are what a window or a
    process says about itself.
    """
    doc = policy_document(**capture)
    app = doc["apps"][0]
    app["id"] = app_id
    app["match"] = {
        "exe_paths": [p if isinstance(p, dict) else str(p) for p in exe_paths],
    }
    rules = list(title_rules)
    if rules:
        app["title_rules"] = rules
    return doc


@contextlib.contextmanager
def agents(desktop: Desktop, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``start(consent=True, probe=None, document=None, **capture) -> Rig``.

    ``document`` is a whole policy document; without it, the example test
    policy with ``capture`` settings. Every agent started is stopped at exit.
    """
    started: list[Agent] = []
    tmp_path.mkdir(parents=True, exist_ok=True)

    def start(
        *,
        consent: bool = True,
        probe: XorgWindowProbe | None = None,
        document: dict[str, Any] | None = None,
        **capture: Any,
    ) -> Rig:
        key = generate_private_key()
        doc = document if document is not None else policy_document(**capture)
        payload = json.dumps(doc).encode()
        policy_file = tmp_path / "policy.signed.json"
        policy_file.write_bytes(sign_policy(payload, [key]))
        clock = Clock()
        state_dir = tmp_path / "state"
        if consent:
            LocalState(state_dir).save_consent(
                ConsentRecord.accept(parse_policy_payload(payload), clock())
            )
        config = AgentConfig(
            trusted=SignerSet(keys=(public_key_model(key.public_key()),), threshold=1),
            tenant="example-corp",
            device_group="office",
            state_dir=state_dir,
            policy_file=policy_file,
            clock=clock,
        )
        sink = MemorySink()
        hooks = PynputHooks(clock=clock)
        agent = Agent(
            config,
            probe=probe or XorgWindowProbe(),
            hooks=hooks,
            grabber=select_screen_grabber(),
            sink=sink,
        )
        agent.start()
        started.append(agent)

        def replace_policy(new: dict[str, Any]) -> None:
            tmp = policy_file.with_suffix(".tmp")
            tmp.write_bytes(sign_policy(json.dumps(new).encode(), [key]))
            os.replace(tmp, policy_file)

        return Rig(agent, sink, hooks, clock, desktop, replace_policy)

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


# -- the work app as a distinct executable ------------------------------------


@dataclass(frozen=True)
class DistinctPython:
    """A copy of the Python binary under its own name, and how to run it."""

    path: Path
    env: dict[str, str]

    def argv(self, module: str, *args: str | int) -> list[str]:
        return [str(self.path), "-m", module, *map(str, args)]


def copy_python(directory: Path, name: str = "overt-workapp-python") -> DistinctPython:
    """Copy the real Python executable to ``directory/name`` and check it runs.

    ``/proc/PID/exe`` of a program started with it is that copy, so a policy
    can allow exactly that program by path while every other Python program
    (the other apps, the helper windows, the tests) runs under another one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    shutil.copy2(os.path.realpath(sys.executable), target)
    target.chmod(0o755)
    site = sysconfig.get_paths()["purelib"]
    env = {
        **os.environ,
        "PYTHONHOME": sys.base_prefix,
        "PYTHONPATH": os.pathsep.join([str(ROOT), site]),
        "QT_QPA_PLATFORM": "xcb",
    }
    check = subprocess.run(
        [str(target), "-c", "import PySide6.QtWidgets, Xlib, tests.e2e.workapp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"the copied Python at {target} does not start: {check.stderr}")
    return DistinctPython(target, env)


# -- reading back what was captured ---------------------------------------------

INPUT_RECORDS = (
    TextSpanRecord,
    ShortcutRecord,
    KeyTimingRecord,
    ClickRecord,
    ScrollRecord,
    MousePathRecord,
)


def of(records: Iterable[Record], kind: type | tuple[type, ...]) -> list[Any]:
    return [r for r in records if isinstance(r, kind)]


def span_of(record: Record) -> tuple[int, int]:
    """The stretch of time (ms) a record speaks about."""
    if isinstance(record, TextSpanRecord):
        return record.t, record.end
    if isinstance(record, MousePathRecord):
        last = record.points()[-1][0]
        return record.t, last + record.dwell_ms
    return record.t, record.t


def input_between(records: Iterable[Record], start_ms: int, end_ms: int) -> list[Record]:
    """Input records that speak about any instant in [start_ms, end_ms]."""
    out: list[Record] = []
    for rec in of(records, INPUT_RECORDS):
        first, last = span_of(rec)
        if first <= end_ms and last >= start_ms:
            out.append(rec)
    return out


def typed(records: Iterable[Record]) -> str:
    return "".join(s.text for s in of(records, TextSpanRecord))


def frames(records: Iterable[Record], images: dict[str, bytes]) -> list[Image.Image]:
    """Every screenshot as the frame it shows (deltas applied to their keyframe)."""
    shots = of(records, ScreenshotRecord)
    chains: dict[str, list[tuple[ScreenshotRecord, bytes]]] = {}
    out = []
    for shot in shots:
        if shot.kind is ScreenshotKind.KEYFRAME:
            chains[shot.image] = []
            out.append(reassemble(images[shot.image]))
        else:
            assert shot.base is not None
            chain = chains.setdefault(shot.base, [])
            chain.append((shot, images[shot.image]))
            out.append(reassemble(images[shot.base], chain))
    return out


def count_colour(image: Image.Image, rgb: tuple[int, int, int], tol: int = COLOUR_TOLERANCE) -> int:
    """How many pixels of ``image`` are ``rgb`` (within ``tol`` per channel)."""
    bands = image.convert("RGB").split()
    mask = None
    for band, want in zip(bands, rgb, strict=True):
        near = band.point(lambda v, w=want: 255 if abs(v - w) <= tol else 0)
        mask = near if mask is None else ImageChops.multiply(mask, near)
    assert mask is not None
    return int(mask.histogram()[255])


def save_frames(images: Iterable[Image.Image], directory: Path, prefix: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = directory / f"{prefix}-{i}.png"
        image.save(path)
        paths.append(path)
    return paths


# -- the attack counts ------------------------------------------------------------

ATTACKS = ARTIFACTS / "filter-attacks"
COUNTS = ATTACKS / "counts.json"


def record_counts(case: str, counts: dict[str, Any]) -> str:
    """Merge one case's counts into ``artifacts/filter-attacks/counts.json``;
    return its summary line."""
    ATTACKS.mkdir(parents=True, exist_ok=True)
    try:
        everything = json.loads(COUNTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        everything = {}
    everything[case] = counts
    tmp = COUNTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(everything, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, COUNTS)
    parts = ", ".join(f"{k}={v}" for k, v in counts.items())
    return f"filter attack {case}: {parts}"
