"""Policies, grants and states for the decision-engine tests, built directly
from the model (no signing: these tests start after verification)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState
from policies.model import (
    AppMatch,
    AppRule,
    BatteryRules,
    CaptureSettings,
    Category,
    DatasetKey,
    DeniedApp,
    Grant,
    KeyMode,
    Notice,
    PauseRules,
    Policy,
    Retention,
    Scope,
    Screenshots,
    TitleAction,
    TitleRule,
    UploadRules,
)

#: The fake "now" every test starts from (epoch seconds).
T0 = 1_800_000_000.0
DAY = 86_400.0
POLICY_EXPIRES = T0 + 7 * DAY


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def app_rule(
    rule_id: str,
    *,
    process: tuple[str, ...] = (),
    wm: tuple[str, ...] = (),
    exe: tuple[str, ...] = (),
    bundle: tuple[str, ...] = (),
    keys: KeyMode = KeyMode.SHORTCUTS,
    mouse: bool = True,
    screenshots: bool = True,
    max_width: int = 1280,
    titles: TitleAction = TitleAction.KEEP,
    actions_only: bool = False,
    title_rules: tuple[tuple[str, str], ...] = (),
) -> AppRule:
    return AppRule(
        id=rule_id,
        name=rule_id.title(),
        match=AppMatch(process_names=process, wm_classes=wm, exe_names=exe, bundle_ids=bundle),
        capture=CaptureSettings(
            keystrokes=keys,
            mouse=mouse,
            screenshots=Screenshots(enabled=screenshots, max_width=max_width),
            titles=titles,
            actions_only=actions_only,
        ),
        title_rules=tuple(TitleRule(pattern=p, action=a) for p, a in title_rules),
    )


DEFAULT_APPS = (
    app_rule("browser", process=("firefox",), wm=("Navigator",), keys=KeyMode.TEXT),
    app_rule("editor", exe=("code",), bundle=("com.microsoft.VSCode",)),
    app_rule("chat", wm=("Slack",), actions_only=True, keys=KeyMode.TEXT),
)


def make_policy(
    *,
    version: int = 1,
    apps: tuple[AppRule, ...] = DEFAULT_APPS,
    never: tuple[AppMatch, ...] = (),
    expires: float = POLICY_EXPIRES,
    retention_days: int = 30,
    readers: tuple[str, ...] = ("the data team",),
    dataset_key_id: str = "dataset-2026",
    pause_max_minutes: int = 30,
    battery_screenshots: bool = False,
    upload: UploadRules | None = None,
) -> Policy:
    return Policy(
        version=version,
        issued_at=at(T0 - DAY),
        expires=at(expires),
        scope=Scope(tenant="acme", device_groups=("*",)),
        notice=Notice(organisation="Acme", contact="privacy@acme.example"),
        dataset_key=DatasetKey(
            key_id=dataset_key_id, public_key=base64.b64encode(b"k" * 32).decode()
        ),
        apps=apps,
        never_capture=tuple(DeniedApp(name=f"denied{i}", match=m) for i, m in enumerate(never)),
        pause=PauseRules(max_minutes=pause_max_minutes),
        battery=BatteryRules(screenshots=battery_screenshots),
        upload=upload or UploadRules(),
        retention=Retention(days=retention_days, readers=readers),
    )


def make_grant(category: Category, expires: float, grant_id: str = "g1") -> Grant:
    return Grant(
        grant_id=grant_id,
        request_id="r1",
        tenant="acme",
        device_id="dev1",
        category=category,
        issued_at=at(T0 - DAY),
        expires=at(expires),
    )


def capturing_state(policy: Policy | None = None, **changes: object) -> CaptureState:
    """A state in which capture runs: policy, consent to it, passed self-test."""
    policy = policy or make_policy()
    kwargs: dict[str, object] = {
        "consent": ConsentRecord.accept(policy, T0 - 60),
        "self_test_passed": True,
    }
    kwargs.update(changes)
    return CaptureState.build(policy, **kwargs)  # type: ignore[arg-type]
