"""The filter self-test: prove the allow-list filter holds before capturing.

Public capture tools have shipped exclusion lists that silently did nothing.
Before capture starts, and again after every policy change, the agent opens a
canary window (WM_CLASS ``overt-canary``) that no sane policy allows, and
checks two things end to end, with the real window probe and the real policy:

1. the window probe sees the canary where it is on screen (a probe that is
   blind to windows would make every app look like "no window");
2. the gate, deciding for what the probe reported, drops it.

If either fails — or the canary cannot be opened at all — the result says
why and the agent keeps capture off. Nothing is injected into the canary.

This module owns that check; the canary window itself lives in
``agent.sources.canary``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.events import Rect, WindowInfo
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState, decide_window
from agent.sources.canary import CANARY_CLASS, Canary, open_canary
from agent.sources.errors import SourceError
from agent.sources.window import WindowProbe
from policies.model import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SelfTestResult:
    passed: bool
    detail: str


def _center(rect: Rect) -> tuple[int, int]:
    return rect.x + rect.width // 2, rect.y + rect.height // 2


def _is_canary(window: WindowInfo | None, canary: Canary) -> bool:
    if window is None:
        return False
    return window.window_id == canary.window_id or CANARY_CLASS in (
        window.app.wm_class,
        window.app.wm_instance,
    )


def run_self_test(
    probe: WindowProbe,
    policy: Policy,
    now: float,
    *,
    opener: Callable[[], Canary] = open_canary,
    timeout: float = 5.0,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SelfTestResult:
    """Open a canary, check the probe sees it and the policy's gate drops it."""
    try:
        canary = opener()
    except SourceError as exc:
        return SelfTestResult(False, f"cannot open the canary window: {exc}")
    # Judge the filter alone: consent, pause and the self-test flag itself are
    # checked elsewhere and would otherwise mask what the allow-list does.
    state = CaptureState.build(
        policy, consent=ConsentRecord.accept(policy, now), self_test_passed=True
    )
    with canary:
        deadline = monotonic() + timeout
        seen: WindowInfo | None = None
        while monotonic() < deadline:
            rect = canary.geometry()
            if rect is not None:
                seen = probe.window_at(*_center(rect))
                if _is_canary(seen, canary):
                    break
            sleep(0.05)
        else:
            return SelfTestResult(
                False, "the window probe cannot see the canary window; capture stays off"
            )
        assert seen is not None
        decision = decide_window(state, seen, now)
        if decision.capture:
            return SelfTestResult(
                False,
                f"the policy allows the canary window ({CANARY_CLASS}) as app "
                f"{decision.app_id!r}; capture stays off",
            )
    log.info("filter self-test passed (canary dropped: %s)", decision.reason)
    return SelfTestResult(True, f"canary seen and dropped ({decision.reason})")
