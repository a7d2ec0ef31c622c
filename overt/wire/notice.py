"""The capture notice object (format 1), as ``consent.show`` carries it.

This module owns :class:`CaptureNotice`, the one definition of the notice an
employee reads before agreeing to capture: the agent builds it from the
signed policy (``agent.notice``), the control API sends it, and the tray and
``overt consent`` show it. It has a format number of its own inside control
API version 1 (``NOTICE_FORMAT``), because it is the part of the API most
likely to grow.

Everything here is a declaration: what the notice says, field by field, in
the words ``docs/CONTROL.md`` shows (generated from these models). Unknown
fields are ignored, so a newer agent's notice still reads; a field of the
wrong type makes the whole notice unreadable, so nothing shown is invented.
It imports nothing of ours.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

#: The notice object's own format number, inside control API version 1.
NOTICE_FORMAT = 1

_Count = Annotated[StrictInt, Field(ge=0)]
_Texts = tuple[StrictStr, ...]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class NoticePolicy(_Part):
    """Which signed policy the notice is of."""

    version: StrictInt = Field(ge=1, description="the policy's version")
    issued_at: StrictStr = Field(description="when IT signed it, ISO 8601 in UTC")
    expires: StrictStr = Field(description="when it stops being in force, ISO 8601 in UTC")
    tenant: StrictStr = Field(description="the organisation's tenant id")


class NoticeScreenshots(_Part):
    """The screenshots an app's rule allows."""

    max_per_minute: _Count = Field(description="at most this many a minute")
    min_interval_seconds: StrictFloat | StrictInt = Field(ge=0, description="at least this apart")
    max_width: _Count = Field(description="scaled down to at most this many pixels wide")
    words: StrictStr = Field(description="the same, in a sentence")


class NoticeTitleRule(_Part):
    """A rule on window titles within an app."""

    pattern: StrictStr = Field(description="the regular expression")
    action: Literal["skip", "drop", "mask"] = Field(
        description="skip the window, drop its title, or mask the matches"
    )
    words: StrictStr = Field(description="the action in words")


class NoticeApp(_Part):
    """One allow-listed app and what is captured in it."""

    id: StrictStr = Field(description="the rule's id in the policy")
    name: StrictStr = Field(description="the app's name for people")
    keystrokes: Literal["none", "timing", "shortcuts", "text"] = Field(
        description="what of the keyboard is kept"
    )
    keystrokes_words: StrictStr = Field(description="the same, in words")
    mouse: StrictBool = Field(description="clicks, scrolls and movement paths are kept")
    screenshots: NoticeScreenshots | None = Field(description="null: no screenshots")
    titles: Literal["keep", "mask", "drop", "none"] = Field(
        description="window titles kept, masked, dropped; none for an actions-only app"
    )
    title_rules: tuple[NoticeTitleRule, ...] = Field(description="in the policy's order")
    actions_only: StrictBool = Field(
        description="only the person's own clicks and keys: no titles, no screenshots"
    )


class NoticeRedaction(_Part):
    """What typed text is searched for and replaced before it is stored."""

    builtin: _Texts = Field(description="the agent's own detectors, e.g. card")
    custom: _Texts = Field(description="the names of the policy's own patterns")


class NoticeUpload(_Part):
    """When and how much is uploaded."""

    daily_bytes: _Count = Field(description="at most this many bytes a day")
    ac_only: StrictBool = Field(description="only on AC power")
    unmetered_only: StrictBool = Field(description="only on unmetered networks")


class NoticeBattery(_Part):
    """What changes on battery."""

    screenshots: StrictBool = Field(description="screenshots continue on battery")


class NoticeCategory(_Part):
    """One category of exemption a person may ask for."""

    category: Literal["bandwidth", "sensitive", "battery", "other"] = Field(
        description="the category's name on the wire"
    )
    words: StrictStr = Field(description="when it applies, in words")
    effect: StrictStr = Field(description="what a grant changes, in words")
    grantable: StrictBool = Field(description="some admin key of the policy may grant it")


class NoticeExemptions(_Part):
    """How to ask for an exemption, and which ones exist."""

    how: StrictStr = Field(description="how to ask, in words")
    categories: tuple[NoticeCategory, ...] = Field(description="every category, in order")


class CaptureNotice(_Part):
    """The notice of one signed policy: everything it promises, in plain data."""

    format: Literal[1] = Field(description="the notice's format number")
    policy: NoticePolicy = Field(description="the policy the notice is of")
    organisation: StrictStr = Field(description="who captures")
    contact: StrictStr = Field(description="where questions go")
    purpose: StrictStr = Field(description="why, in the organisation's words")
    apps: tuple[NoticeApp, ...] = Field(description="the allow-listed apps, in policy order")
    never_captured: _Texts = Field(description="apps never captured, whatever the rules say")
    redaction: NoticeRedaction = Field(description="what typed text loses before it is stored")
    review_window_minutes: _Count = Field(description="how long batches wait before upload")
    retention_days: _Count = Field(description="how long the collector keeps them")
    readers: _Texts = Field(description="who can decrypt the data")
    dataset_key_id: StrictStr = Field(description="the key the data is encrypted to")
    pause_max_minutes: StrictInt = Field(ge=1, description="the longest pause")
    upload: NoticeUpload = Field(description="the upload's limits and conditions")
    on_battery: NoticeBattery = Field(description="what changes on battery")
    exemptions: NoticeExemptions = Field(description="the exemptions one may ask for")
