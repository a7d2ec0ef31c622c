"""A plain-language summary of a policy, for ``overt policy show`` and for review.

Owns wording only: :func:`describe` takes an already validated
:class:`~policies.model.Policy` and returns text; :func:`identity_warnings`
names the app rules that a program could match by claiming values it declares
itself. It does not verify anything
and says nothing about whether the file it came from was signed; the caller
says that.
"""

from __future__ import annotations

from datetime import datetime

from policies.model import (
    ALL_GROUPS,
    AppMatch,
    AppRule,
    Category,
    ExemptionEffect,
    KeyMode,
    Policy,
    PublicKey,
    SignerSet,
)

_KEY_MODES = {
    KeyMode.NONE: "not captured",
    KeyMode.TIMING: "timing only (no keys)",
    KeyMode.SHORTCUTS: "shortcuts and editing keys (typed characters become a class token)",
    KeyMode.TEXT: "typed text, after redaction",
}


def _when(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def size_words(n: int) -> str:
    """A byte count in words: "50 MiB"."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"


def _hints(match: AppMatch) -> list[str]:
    parts = []
    for label, values in (
        ("process", match.process_names),
        ("WM_CLASS", match.wm_classes),
        ("exe", match.exe_names),
        ("bundle", match.bundle_ids),
    ):
        if values:
            parts.append(f"{label} {', '.join(values)}")
    return parts


def _exe_paths(match: AppMatch) -> str:
    paths = [e.path + (" (sha256 pinned)" if e.sha256 else "") for e in match.exe_paths]
    return "exe path " + ", ".join(paths)


def _match(match: AppMatch) -> str:
    """An allow rule's match: its exe paths, narrowed by the other values."""
    hints = _hints(match)
    if not match.exe_paths:
        return "; ".join(hints)
    narrowed = f"; only where it also matches {' or '.join(hints)}" if hints else ""
    return _exe_paths(match) + narrowed


def _denied_match(match: AppMatch) -> str:
    """A never-capture entry's match: any one value is enough."""
    return "; ".join(([_exe_paths(match)] if match.exe_paths else []) + _hints(match))


#: Values a window or its process declares about itself, as named in warnings.
_DECLARED = (
    ("WM_CLASS", "wm_classes"),
    ("process name", "process_names"),
    ("bundle id", "bundle_ids"),
)


def identity_warnings(policy: Policy) -> tuple[str, ...]:
    """One line per allow-listed app a program could be captured as without
    being it: rules without ``exe_paths``. Never-capture entries need none:
    a faked value there only keeps a window out of capture."""
    out = []
    for app in policy.apps:
        match = app.match
        if match.exe_paths:
            continue
        declared = [label for label, field in _DECLARED if getattr(match, field)]
        if declared:
            only = "" if match.exe_names else "only "
            out.append(
                f'app "{app.id}" matches {only}on values its windows declare themselves '
                f"({', '.join(declared)}); any program can claim them — add exe_paths"
            )
        else:
            out.append(
                f'app "{app.id}" matches executables by base name only '
                f"({', '.join(match.exe_names)}); a program of that name anywhere on disk "
                "matches — add exe_paths"
            )
    return tuple(out)


def _key(key: PublicKey) -> str:
    name = f" ({key.name})" if key.name else ""
    return f"{key.keyid[:16]}…{name}"


def _signers(signers: SignerSet) -> str:
    keys = ", ".join(_key(k) for k in signers.keys)
    return f"{signers.threshold} of {len(signers.keys)}: {keys}"


def _app(app: AppRule) -> list[str]:
    capture = app.capture
    lines = [f"  - {app.name} [{app.id}] — matched by {_match(app.match)}"]
    if capture.actions_only:
        lines.append(
            "      actions only: your own clicks and keys; no titles, no screenshots, "
            "nothing received from others"
        )
    lines.append(f"      keystrokes: {_KEY_MODES[capture.keystrokes]}")
    lines.append(f"      mouse: {'clicks, scrolls, coalesced paths' if capture.mouse else 'no'}")
    shots = capture.screenshots
    if shots.enabled and not capture.actions_only:
        lines.append(
            f"      screenshots: this window only, at most {shots.max_per_minute}/min and one "
            f"every {shots.min_interval_seconds:g} s, at most {shots.max_width} px wide"
        )
    else:
        lines.append("      screenshots: no")
    titles = "no" if capture.actions_only else capture.titles.value
    lines.append(f"      window titles: {titles}")
    for rule in app.title_rules:
        verb = {
            "skip": "window not captured",
            "drop": "title dropped",
            "mask": "match masked",
        }[rule.action]
        lines.append(f"      title rule: /{rule.pattern}/ → {verb}")
    return lines


def effect_words(effect: ExemptionEffect) -> str:
    """What an approved exemption changes, in words."""
    if effect.stop_capture:
        return "capture stops"
    parts = []
    if not effect.screenshots:
        parts.append("no screenshots")
    if effect.max_keystrokes is not KeyMode.TEXT:
        parts.append(f"keystrokes at most {effect.max_keystrokes.value}")
    if effect.upload_ac_only:
        parts.append("upload on AC power only")
    if effect.upload_unmetered_only:
        parts.append("upload on unmetered networks only")
    if effect.daily_upload_bytes is not None:
        parts.append(f"upload at most {size_words(effect.daily_upload_bytes)}/day")
    return ", ".join(parts) or "no change"


def describe(policy: Policy) -> str:
    """A human summary of everything the policy allows, limits and promises."""
    scope = policy.scope
    groups = (
        "all device groups"
        if ALL_GROUPS in scope.device_groups
        else "device groups " + ", ".join(scope.device_groups)
    )
    lines = [
        f"Policy version {policy.version} for tenant {scope.tenant} ({groups})",
        f"Valid from {_when(policy.issued_at)} until {_when(policy.expires)}",
        f"Organisation: {policy.notice.organisation} — contact {policy.notice.contact}",
        f"Purpose: {policy.notice.purpose}",
        "",
        "Captured apps (nothing is recorded outside these):",
    ]
    for app in policy.apps:
        lines.extend(_app(app))
    if policy.never_capture:
        lines.append("Never captured, even if a rule above matches:")
        lines.extend(
            f"  - {d.name} — matched by {_denied_match(d.match)}" for d in policy.never_capture
        )

    redaction = policy.redaction
    builtin = ", ".join(redaction.builtin) or "none"
    custom = ", ".join(p.name for p in redaction.patterns)
    lines += [
        "",
        f"Redaction of typed text: {builtin}" + (f"; custom: {custom}" if custom else ""),
        f"Pause: up to {policy.pause.max_minutes} minutes, resumes automatically",
        f"Review window: batches wait {policy.review_window_minutes} minutes before upload",
    ]
    upload = policy.upload
    conditions = []
    if upload.ac_only:
        conditions.append("AC power")
    if upload.unmetered_only:
        conditions.append("unmetered networks")
    lines.append(
        f"Upload: at most {size_words(upload.daily_bytes)}/day"
        + (f", only on {' and '.join(conditions)}" if conditions else ", on any network and power")
    )
    on_battery = "screenshots continue" if policy.battery.screenshots else "no screenshots"
    lines.append(f"On battery: {on_battery}")
    lines.append(f"Spool budget: {size_words(policy.spool_max_bytes)} (capture pauses when full)")
    lines.append(
        f"Retention: {policy.retention.days} days; readable by "
        + "; ".join(policy.retention.readers)
    )
    lines.append(f"Sealed to dataset key {policy.dataset_key.key_id} ({policy.dataset_key.suite})")

    lines += ["", "Exemptions (effect when granted):"]
    for category in Category:
        lines.append(f"  - {category.value}: {effect_words(policy.exemptions[category])}")

    lines.append("")
    if policy.next_signers is not None:
        lines.append(
            "Signer rotation: later policies must be signed by "
            + _signers(policy.next_signers)
            + " (takes effect only if this policy is signed by both the current and new sets)"
        )
    else:
        lines.append("Signer rotation: none")
    if policy.grant_signers:
        lines.append("Grant signers (admin keys that may approve exemptions):")
        for key in policy.grant_signers:
            categories = ", ".join(c.value for c in key.categories)
            lines.append(f"  - {_key(key)}: {categories}")
    else:
        lines.append("Grant signers: none (no exemption can be granted)")
    return "\n".join(lines) + "\n"
