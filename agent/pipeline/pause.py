"""The employee's pause: an immutable value saying whether, and until when,
capture is paused.

This module owns the pause rules only:

- a pause lasts at most ``max_minutes`` (the policy's ``pause.max_minutes``,
  30 by default); asking for more is *clamped* to the maximum rather than
  rejected, because the one-click tray action means "as long as I may";
- a new pause while paused replaces the remaining time, measured from ``now``,
  so it can never end later than ``now + max_minutes``;
- capture resumes on its own at ``resumes_at``: ``is_paused(resumes_at)`` is
  False;
- ``resume()`` ends a pause early.

It does not own stopping the hooks, dropping buffered events or announcing the
resume (the agent does that by watching ``resumes_at``), and it never reads a
clock: every time is passed in as float seconds since the epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The policy's default pause length, used when no policy is in force.
DEFAULT_MAX_MINUTES = 30


@dataclass(frozen=True, slots=True)
class PauseState:
    """Whether capture is paused: ``resumes_at`` is None when it is not.

    ``started_at`` is when the current run of pauses began (a pause that
    replaces a running one keeps it), so the tray can say "paused since".
    """

    resumes_at: float | None = None
    started_at: float | None = None

    def is_paused(self, now: float) -> bool:
        return self.resumes_at is not None and now < self.resumes_at

    def remaining_seconds(self, now: float) -> float:
        """Seconds until capture resumes; 0.0 when not paused."""
        if self.resumes_at is None or now >= self.resumes_at:
            return 0.0
        return self.resumes_at - now

    def pause(
        self,
        now: float,
        minutes: float | None = None,
        max_minutes: int = DEFAULT_MAX_MINUTES,
    ) -> PauseState:
        """Pause for ``minutes`` from ``now`` (the maximum when None).

        More than ``max_minutes`` is clamped to ``max_minutes``. Raises
        ValueError for a length that is not a positive, finite number, which
        is a caller's bug and not an employee's choice.
        """
        if max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {max_minutes}")
        if minutes is None:
            minutes = max_minutes
        if not math.isfinite(minutes) or minutes <= 0:
            raise ValueError(f"a pause must last a positive number of minutes, got {minutes}")
        length = min(minutes, max_minutes) * 60.0
        started = self.started_at if self.is_paused(now) else now
        return PauseState(resumes_at=now + length, started_at=started)

    def resume(self) -> PauseState:
        """End the pause now (a no-op when not paused)."""
        return RUNNING


#: Not paused.
RUNNING = PauseState()
