"""Which app rule of a policy admits a window: the allow-list, compiled once.

This module owns matching an :class:`agent.events.AppIdentity` against a
verified policy's ``apps`` and ``never_capture`` lists: :class:`CompiledPolicy`
prepares lookup tables and title regexes once per policy, :func:`first_rule`
answers per event, and :func:`digest_paths` names the executables the window
probe must hash. It is the gate's (:mod:`agent.pipeline.decision`) half that
depends only on the policy and the identity, kept apart so the rules of
matching read on their own; it does not decide capture (pause, consent,
expiry and the rest live in the gate).

Only ``exe_path`` and ``exe_sha256`` of an ``AppIdentity`` are facts the
window's client cannot choose; the other values are what it declares (see
``policies.model.AppMatch``). An ``exe_paths`` entry matches an identity whose
``exe_path`` equals it exactly (paths are not case-folded) and, when the entry
pins a digest, whose ``exe_sha256`` equals that digest: an identity without a
digest never matches a pinned entry. The other values match if any equals a
listed value, case-insensitively (WM_CLASS entries match the instance or the
class; executables compare by base name).

A rule without ``exe_paths`` matches if any of its values does. A rule with
``exe_paths`` matches only an executable it lists, and its other values, if
any, narrow that (one of them must match too), so a program can fake its way
out of a rule but not into one. A ``never_capture`` entry matches if any of
its values does, and wins over the allow-list; among ``apps`` the first rule
that matches wins.

All title rules of that app are tried with ``re.search``: any ``skip`` match
drops the window; a ``drop`` match drops the title; ``mask`` matches collect
their patterns in ``title_masks``. ``actions_only`` apps get no title and no
screenshots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from agent.events import AppIdentity
from policies.model import AppMatch, AppRule, CaptureSettings, ExemptionEffect, Grant, Policy

from .consent import SurfaceItem, capture_surface, normalise_identity

# Identity fields as matched: WM_CLASS instance and class share one namespace.
# An executable path is one key; the same path with its digest is another, of
# the form "path\0sha256" (a path never contains NUL).
_PROCESS, _WM, _EXE, _BUNDLE, _PATH, _PINNED = range(6)
IdentityKey = tuple[int, str]


def _pinned_key(path: str, sha256: str) -> IdentityKey:
    return (_PINNED, f"{path}\0{sha256}")


def _hint_keys(match: AppMatch) -> set[IdentityKey]:
    """The keys of every value of ``match`` other than its executable paths."""
    keys: set[IdentityKey] = set()
    for code, values in (
        (_PROCESS, match.process_names),
        (_WM, match.wm_classes),
        (_EXE, match.exe_names),
        (_BUNDLE, match.bundle_ids),
    ):
        for value in values:
            norm = normalise_identity(value, exe=code == _EXE)
            if norm:
                keys.add((code, norm))
    return keys


def _path_keys(match: AppMatch, *, pins: bool = True) -> set[IdentityKey]:
    """The keys of ``match``'s executable paths; with ``pins=False`` a pinned
    entry counts as its bare path (matching more, for never-capture)."""
    return {
        _pinned_key(e.path, e.sha256) if pins and e.sha256 is not None else (_PATH, e.path)
        for e in match.exe_paths
    }


def identity_keys(app: AppIdentity) -> list[IdentityKey]:
    """The non-empty identity values of ``app`` as matched: declared values
    normalised, the executable path as it is and, with a digest, path and
    digest together."""
    keys: list[IdentityKey] = []
    for code, value in (
        (_PROCESS, app.process_name),
        (_WM, app.wm_instance),
        (_WM, app.wm_class),
        (_EXE, app.exe_name),
        (_BUNDLE, app.bundle_id),
    ):
        norm = normalise_identity(value, exe=code == _EXE)
        if norm:
            keys.append((code, norm))
    if app.exe_path:
        keys.append((_PATH, app.exe_path))
        if app.exe_sha256:
            keys.append(_pinned_key(app.exe_path, app.exe_sha256.lower()))
    return keys


def digest_paths(policy: Policy) -> frozenset[str]:
    """The executable paths ``policy``'s app rules pin with a digest: the files
    the window probe must hash (and the only ones it needs to)."""
    return frozenset(
        entry.path
        for rule in policy.apps
        for entry in rule.match.exe_paths
        if entry.sha256 is not None
    )


class CompiledTitleRule(NamedTuple):
    regex: re.Pattern[str]
    action: str
    pattern: str


@dataclass(frozen=True, slots=True)
class CompiledApp:
    id: str
    capture: CaptureSettings
    title_rules: tuple[CompiledTitleRule, ...]
    #: For a rule that lists exe_paths and other values: those values, one of
    #: which must match too. None when nothing narrows the rule.
    narrow: frozenset[IdentityKey] | None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPolicy:
    """A verified policy with what the hot path needs computed once: lookup
    tables for app matching, compiled title rules, expiry as a timestamp and
    the capture surface. Compared by identity."""

    policy: Policy
    expires_at: float
    surface: frozenset[SurfaceItem]
    apps: tuple[CompiledApp, ...]
    #: identity value -> positions, ascending, of the app rules it admits
    #: (a rule with exe_paths is admitted by its paths alone)
    app_index: dict[IdentityKey, tuple[int, ...]]
    never: frozenset[IdentityKey]

    @classmethod
    def of(cls, policy: Policy) -> CompiledPolicy:
        index: dict[IdentityKey, tuple[int, ...]] = {}
        apps: list[CompiledApp] = []
        for position, rule in enumerate(policy.apps):
            hints = _hint_keys(rule.match)
            admitting = _path_keys(rule.match) if rule.match.exe_paths else hints
            for key in admitting:
                index[key] = (*index.get(key, ()), position)
            narrow = frozenset(hints) if rule.match.exe_paths and hints else None
            apps.append(_compile_app(rule, narrow))
        never: set[IdentityKey] = set()
        for denied in policy.never_capture:
            never |= _hint_keys(denied.match) | _path_keys(denied.match, pins=False)
        return cls(
            policy=policy,
            expires_at=policy.expires.timestamp(),
            surface=capture_surface(policy),
            apps=tuple(apps),
            app_index=index,
            never=frozenset(never),
        )

    def effect(self, grant: Grant) -> ExemptionEffect:
        """What ``grant`` changes: the policy's effect for its category."""
        return self.policy.exemptions[grant.category]


def _compile_app(rule: AppRule, narrow: frozenset[IdentityKey] | None) -> CompiledApp:
    rules = tuple(
        CompiledTitleRule(re.compile(r.pattern), r.action, r.pattern) for r in rule.title_rules
    )
    return CompiledApp(rule.id, rule.capture, rules, narrow)


def first_rule(compiled: CompiledPolicy, keys: list[IdentityKey]) -> int | None:
    """The position of the first app rule that ``keys`` match, or None."""
    index, apps = compiled.app_index, compiled.apps
    best: int | None = None
    for key in keys:
        for position in index.get(key, ()):
            if best is not None and position >= best:
                break
            narrow = apps[position].narrow
            if narrow is None or not narrow.isdisjoint(keys):
                best = position
                break
    return best
