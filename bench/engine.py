"""Decision engine throughput on one core, for a fixed, realistic event mix.

Run:  .venv/bin/python bench/engine.py [--events N] [--runs R]

The workload is generated from a fixed seed: one input event every 5 ms
(200 events/s, a busy typist with a moving mouse) spread over eight windows
(allowed apps, an actions-only chat app, an app off the allow-list, a
never-captured password manager, and no focused window), a focus switch every
few hundred events, a title change every few hundred events (each a new title,
as in a browser or mail client), a pause with an early resume and one that
runs out, and an exemption grant that appears and expires.

It times ``DecisionEngine.decide`` (the cached hot path) and, as the baseline
in the same run, the uncached pure ``decide`` over the same events, and
reports the median of several runs. Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.events import AppIdentity
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState, Decision, DecisionEngine, decide
from bench._machine import machine
from policies.model import (
    AppMatch,
    AppRule,
    CaptureSettings,
    Category,
    DatasetKey,
    DeniedApp,
    Grant,
    KeyMode,
    Notice,
    Policy,
    Retention,
    Scope,
    TitleAction,
    TitleRule,
)

T0 = 1_800_000_000.0
STEP = 0.005  # seconds between events

Event = tuple[AppIdentity | None, str, float, CaptureState | None]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _rule(rule_id: str, match: AppMatch, **capture: object) -> AppRule:
    rules: tuple[TitleRule, ...] = ()
    if rule_id == "browser":
        rules = (
            TitleRule(pattern="(?i)private browsing", action="skip"),
            TitleRule(pattern="(?i)payroll", action="drop"),
            TitleRule(pattern=r"\b\d{6,}\b", action="mask"),
        )
    return AppRule(
        id=rule_id,
        name=rule_id,
        match=match,
        capture=CaptureSettings(**capture),
        title_rules=rules,
    )


def build_policy() -> Policy:
    apps = (
        _rule("browser", AppMatch(process_names=("firefox",), wm_classes=("Navigator",))),
        _rule("editor", AppMatch(exe_names=("code",), wm_classes=("Code",)), keystrokes="text"),
        _rule("terminal", AppMatch(wm_classes=("gnome-terminal-server",)), keystrokes="timing"),
        _rule("office", AppMatch(process_names=("soffice.bin",), wm_classes=("libreoffice",))),
        _rule("crm", AppMatch(wm_classes=("crm.example.com",))),
        _rule("sheets", AppMatch(bundle_ids=("com.microsoft.Excel",))),
        _rule("mail", AppMatch(process_names=("thunderbird",)), titles=TitleAction.MASK),
        _rule(
            "chat",
            AppMatch(wm_classes=("Slack",), process_names=("slack",)),
            actions_only=True,
            keystrokes=KeyMode.TEXT,
        ),
    )
    return Policy(
        version=7,
        issued_at=_at(T0 - 86_400),
        expires=_at(T0 + 7 * 86_400),
        scope=Scope(tenant="acme", device_groups=("*",)),
        notice=Notice(organisation="Acme", contact="privacy@acme.example"),
        dataset_key=DatasetKey(key_id="ds-1", public_key=base64.b64encode(b"k" * 32).decode()),
        apps=apps,
        never_capture=(
            DeniedApp(name="KeePassXC", match=AppMatch(process_names=("keepassxc",))),
            DeniedApp(name="Signal", match=AppMatch(wm_classes=("signal",))),
        ),
        retention=Retention(days=90, readers=("the data team",)),
    )


WINDOWS: list[tuple[AppIdentity | None, str]] = [
    (AppIdentity("firefox", "Navigator", "firefox", "firefox"), "Mozilla Firefox"),
    (AppIdentity("code", "code", "Code", "code"), "decision.py - overt - Visual Studio Code"),
    (AppIdentity("gnome-terminal-", "gnome-terminal-server", "Gnome-terminal"), "~/src"),
    (AppIdentity("thunderbird", "Mail", "thunderbird", "thunderbird"), "Inbox - Thunderbird"),
    (AppIdentity("slack", "slack", "Slack", "slack"), "Slack | #general | Acme"),
    (AppIdentity("spotify", "spotify", "Spotify", "spotify"), "Spotify Premium"),
    (AppIdentity("keepassxc", "keepassxc", "KeePassXC", "keepassxc"), "Passwords.kdbx"),
    (None, ""),
]
WEIGHTS = [30, 25, 10, 12, 10, 5, 3, 5]


def build_workload(n: int, seed: int = 1) -> tuple[CaptureState, list[Event]]:
    rng = random.Random(seed)
    policy = build_policy()
    state = CaptureState.build(
        policy, consent=ConsentRecord.accept(policy, T0 - 3600), self_test_passed=True
    )
    first = state
    titles = {i: title for i, (_, title) in enumerate(WINDOWS)}
    focus = 0
    changes: dict[int, CaptureState] = {}
    # Human-scale state changes at fixed fractions of the run.
    grant = Grant(
        grant_id="g1",
        request_id="r1",
        tenant="acme",
        device_id="d1",
        category=Category.BANDWIDTH,
        issued_at=_at(T0 - 60),
        expires=_at(T0 + n * STEP * 0.6),
    )
    plan: list[tuple[float, Callable[[CaptureState, float], CaptureState]]] = [
        (0.10, lambda s, now: s.paused(now, 5)),
        (0.12, lambda s, now: s.resumed()),
        (0.30, lambda s, now: s.with_grants((grant,))),  # expires by itself at 0.6
        (0.45, lambda s, now: s.with_power(on_battery=True)),
        (0.55, lambda s, now: s.with_power(on_battery=False)),
        (0.75, lambda s, now: s.paused(now, 1)),  # runs out by itself
    ]
    for fraction, change in plan:
        i = int(n * fraction)
        state = change(state, T0 + i * STEP)
        changes[i] = state
    events: list[Event] = []
    counter = 0
    for i in range(n):
        if rng.random() < 1 / 300:
            focus = rng.choices(range(len(WINDOWS)), WEIGHTS)[0]
        if rng.random() < 1 / 400 and WINDOWS[focus][0] is not None:
            counter += 1
            if rng.random() < 0.05:
                titles[focus] = f"Private Browsing {counter}"
            else:
                titles[focus] = f"Ticket {1000000 + counter} - item {counter} - {WINDOWS[focus][1]}"
        events.append((WINDOWS[focus][0], titles[focus], T0 + i * STEP, changes.get(i)))
    return first, events


def run_engine(first: CaptureState, events: list[Event]) -> tuple[float, list[Decision]]:
    engine = DecisionEngine(first)
    out: list[Decision] = []
    append = out.append
    decide_ = engine.decide
    set_state = engine.set_state
    start = time.perf_counter()
    for app, title, now, change in events:
        if change is not None:
            set_state(change)
        append(decide_(app, title, now))
    return time.perf_counter() - start, out


def run_pure(first: CaptureState, events: list[Event]) -> tuple[float, list[Decision]]:
    state = first
    out: list[Decision] = []
    append = out.append
    start = time.perf_counter()
    for app, title, now, change in events:
        if change is not None:
            state = change
        append(decide(state, app, title, now))
    return time.perf_counter() - start, out


def median_rate(
    runner: Callable[[CaptureState, list[Event]], tuple[float, list[Decision]]],
    first: CaptureState,
    events: list[Event],
    runs: int,
) -> tuple[float, list[Decision]]:
    times: list[float] = []
    decisions: list[Decision] = []
    for _ in range(runs):
        elapsed, decisions = runner(first, events)
        times.append(elapsed)
    return len(events) / statistics.median(times), decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    first, events = build_workload(args.events)
    engine_rate, cached = median_rate(run_engine, first, events, args.runs)
    pure_rate, pure = median_rate(run_pure, first, events, max(3, args.runs // 2))
    if cached != pure:
        raise SystemExit("the cached engine disagrees with the pure function")
    reasons = Counter(d.reason.value for d in cached)
    print(f"machine:   {machine()}")
    print(f"workload:  {len(events):,} events, reasons {dict(reasons.most_common())}")
    print(
        f"engine:    {engine_rate:,.0f} decisions/s, {1e6 / engine_rate:.3f} µs/decision "
        f"(median of {args.runs} runs)"
    )
    print(
        f"baseline:  {pure_rate:,.0f} decisions/s, {1e6 / pure_rate:.3f} µs/decision "
        f"(uncached pure decide, median of {max(3, args.runs // 2)} runs)"
    )
    print(f"speed-up:  {engine_rate / pure_rate:.1f}x")


if __name__ == "__main__":
    main()
