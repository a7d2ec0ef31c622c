"""The policy and exemption-grant models: what IT allows, expressed as data.

This module owns the shape of a policy (payload type
``application/vnd.overt.policy+json; version=1``) and of an exemption grant
(``application/vnd.overt.grant+json; version=1``), their validation rules and
their JSON Schema. It does not own signatures or trust (see ``envelope`` and
``verify``): a model here is only ever built from bytes that were verified
first.

Every model forbids unknown fields, so a typo in a policy file is an error and
not a silently ignored setting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

POLICY_PAYLOAD_TYPE = "application/vnd.overt.policy+json; version=1"
GRANT_PAYLOAD_TYPE = "application/vnd.overt.grant+json; version=1"

#: Every device group of the tenant, in ``Scope.device_groups``.
ALL_GROUPS = "*"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a time zone, e.g. 2026-01-31T09:00:00Z")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$")]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


#: Regular expressions are used exactly as signed: no whitespace stripping.
Regex = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=512),
    AfterValidator(_regex),
]


def key_id(raw_public_key: bytes) -> str:
    """The id of a public key: hex SHA-256 of its raw bytes."""
    return hashlib.sha256(raw_public_key).hexdigest()


def _b64_32(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("public key must be base64") from exc
    if len(raw) != 32:
        raise ValueError("public key must be 32 raw bytes, base64-encoded")
    return value


Base64Key = Annotated[str, AfterValidator(_b64_32)]


class KeyMode(StrEnum):
    """How keystrokes are captured, from least to most revealing."""

    NONE = "none"
    TIMING = "timing"
    SHORTCUTS = "shortcuts"
    TEXT = "text"

    @property
    def rank(self) -> int:
        return _KEY_MODE_ORDER.index(self)


_KEY_MODE_ORDER = [KeyMode.NONE, KeyMode.TIMING, KeyMode.SHORTCUTS, KeyMode.TEXT]


def weaker_key_mode(a: KeyMode, b: KeyMode) -> KeyMode:
    return a if a.rank <= b.rank else b


class Category(StrEnum):
    """Why an employee may be exempted."""

    BANDWIDTH = "bandwidth"
    SENSITIVE = "sensitive"
    BATTERY = "battery"
    OTHER = "other"


class TitleAction(StrEnum):
    KEEP = "keep"
    MASK = "mask"  # the matching part is replaced by a placeholder
    DROP = "drop"  # events are captured, the title is not


class PublicKey(_Model):
    """An Ed25519 public key and its id (hex SHA-256 of the raw key)."""

    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key: Base64Key
    name: str = Field(default="", max_length=128)

    @model_validator(mode="after")
    def _keyid_matches(self) -> PublicKey:
        if key_id(base64.b64decode(self.public_key)) != self.keyid:
            raise ValueError("keyid is not the SHA-256 of public_key")
        return self


class SignerSet(_Model):
    """Keys trusted to sign policies, and how many distinct ones must sign."""

    keys: tuple[PublicKey, ...] = Field(min_length=1)
    threshold: int = Field(ge=1)

    @model_validator(mode="after")
    def _sane(self) -> SignerSet:
        ids = [k.keyid for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("a key is listed twice in the signer set")
        if self.threshold > len(ids):
            raise ValueError("threshold is larger than the number of keys")
        return self

    @property
    def keyids(self) -> frozenset[str]:
        return frozenset(k.keyid for k in self.keys)


class AdminKey(PublicKey):
    """An admin's key and the exemption categories it may grant."""

    categories: tuple[Category, ...] = Field(min_length=1)


class Scope(_Model):
    """Which devices a policy is for."""

    tenant: Name
    device_groups: tuple[Name | Literal["*"], ...] = Field(min_length=1)

    def covers(self, tenant: str, group: str) -> bool:
        if tenant != self.tenant:
            return False
        return ALL_GROUPS in self.device_groups or group in self.device_groups


class DatasetKey(_Model):
    """The data team's X25519 public key that batches are sealed to."""

    key_id: Name
    public_key: Base64Key
    suite: Literal["hpke-x25519-hkdfsha256-chacha20poly1305"] = (
        "hpke-x25519-hkdfsha256-chacha20poly1305"
    )


#: Longest executable path accepted (Linux PATH_MAX) and longest component (NAME_MAX).
MAX_EXE_PATH = 4096
_MAX_COMPONENT_BYTES = 255


def _exe_path(value: str) -> str:
    if "\0" in value:
        raise ValueError("an executable path must not contain NUL")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("an executable path must not contain control characters")
    if value != value.strip():
        raise ValueError("an executable path must not start or end with whitespace")
    if not value.startswith("/"):
        raise ValueError(f"an executable path must be absolute (start with /): {value!r}")
    if value.endswith("/"):
        raise ValueError(f"an executable path names a file, not a directory: {value!r}")
    components = value[1:].split("/")
    if "" in components:
        raise ValueError(f"an executable path must not contain an empty component (//): {value!r}")
    if "." in components or ".." in components:
        raise ValueError(
            f"an executable path must not contain . or .. components; give the real path: {value!r}"
        )
    if any(len(c.encode("utf-8")) > _MAX_COMPONENT_BYTES for c in components):
        raise ValueError(f"a component of {value!r} is longer than {_MAX_COMPONENT_BYTES} bytes")
    return value


#: An absolute, canonical POSIX path, compared exactly as signed (no stripping,
#: no case folding): ``realpath`` of the executable never has ``.``, ``..``,
#: ``//`` or a trailing slash, so a path with any of them could never match.
ExecutablePath = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=MAX_EXE_PATH),
    AfterValidator(_exe_path),
]

#: A SHA-256 digest as 64 hex digits, kept in lowercase.
Sha256 = Annotated[
    str,
    StringConstraints(strip_whitespace=False, pattern=r"^[0-9a-fA-F]{64}$"),
    AfterValidator(str.lower),
]


class ExePath(_Model):
    """An executable by the real path of its file and, optionally, its digest.

    ``sha256`` pins the file's content too: a window matches only if the file
    at ``path`` hashes to it. Pin files that someone other than root can write
    (``/opt`` trees owned by a user, AppImages, ``~/.local``); a digest changes
    with every update of the program, so a pinned policy is re-signed with
    each update, and until then the updated program is not captured.
    """

    path: ExecutablePath = Field(description="absolute real path of the executable file")
    sha256: Sha256 | None = Field(
        default=None, description="SHA-256 of the file's content, 64 hex digits"
    )


def _exe_path_entry(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


#: A policy file writes an entry as a path string or as ``{"path", "sha256"}``.
ExePathEntry = Annotated[
    ExePath,
    BeforeValidator(_exe_path_entry, json_schema_input_type=ExecutablePath | ExePath),
]


class AppMatch(_Model):
    """How an app is recognised.

    Most values are what a window or process says about itself, and only
    ``exe_paths`` is not:

    - ``wm_classes`` (either part of WM_CLASS: instance or class) and
      ``process_names`` (``/proc/PID/comm``) are declared by the client: any
      program can set them (``xterm -class firefox``), so they are hints;
    - ``bundle_ids`` come from the app bundle's own Info.plist, also declared;
    - ``exe_names`` compare the base name of the real executable, which a
      window cannot change, but any binary of that name anywhere on disk
      (a copy in ``~/bin``) matches;
    - ``exe_paths`` compare the absolute real path of the process's
      executable as the system reports it (the owning process comes from the
      display server, its file from ``/proc/PID/exe``), exactly and
      case-sensitively, and with ``sha256`` its content: the value a client
      cannot fake. An interpreter's path matches every script it runs.

    The other values are compared case-insensitively. In an allow rule
    (``AppRule``) without ``exe_paths`` any listed value matching is a match.
    Once an allow rule lists ``exe_paths``, the executable must be one of them,
    and any other values it lists only narrow the match (one of them must
    match too): a value a program can fake may keep a window out of capture,
    never bring it in. In ``never_capture`` every value counts on its own,
    since matching more is the safe side there.
    """

    process_names: tuple[str, ...] = ()
    wm_classes: tuple[str, ...] = ()
    exe_names: tuple[str, ...] = ()
    bundle_ids: tuple[str, ...] = ()
    exe_paths: tuple[ExePathEntry, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AppMatch:
        if not (self.exe_paths or self.hints):
            raise ValueError("an app match needs at least one identity value")
        pinned = {e.path for e in self.exe_paths if e.sha256 is not None}
        for entry in self.exe_paths:
            if entry.sha256 is None and entry.path in pinned:
                raise ValueError(
                    f"{entry.path} is listed with and without a sha256; the entry without "
                    "one matches any file there and makes the digest meaningless"
                )
        return self

    @property
    def hints(self) -> tuple[str, ...]:
        """Every value other than ``exe_paths``, in field order."""
        return self.process_names + self.wm_classes + self.exe_names + self.bundle_ids


class TitleRule(_Model):
    """A window-title rule: titles matching ``pattern`` are masked or dropped,
    or (``skip``) the window is not captured at all."""

    pattern: Regex
    action: Literal["mask", "drop", "skip"]


class Screenshots(_Model):
    enabled: bool = True
    min_interval_seconds: float = Field(default=2.0, ge=0.2, le=3600)
    max_per_minute: int = Field(default=12, ge=1, le=120)
    max_width: int = Field(default=1280, ge=160, le=7680)
    quality: int = Field(default=50, ge=10, le=95)


class CaptureSettings(_Model):
    """What is captured inside one allow-listed app."""

    keystrokes: KeyMode = KeyMode.SHORTCUTS
    mouse: bool = True
    screenshots: Screenshots = Screenshots()
    titles: TitleAction = TitleAction.KEEP
    #: Communication apps: the user's own clicks and keys only; no titles, no
    #: screenshots, nothing received from other people.
    actions_only: bool = False


class AppRule(_Model):
    id: Name
    name: str = Field(min_length=1, max_length=128)
    match: AppMatch
    capture: CaptureSettings = CaptureSettings()
    title_rules: tuple[TitleRule, ...] = ()


class DeniedApp(_Model):
    """An app never captured, even if an allow rule would match it."""

    name: str = Field(min_length=1, max_length=128)
    match: AppMatch

    @model_validator(mode="after")
    def _no_digests(self) -> DeniedApp:
        # A digest would narrow the entry to one build: the next update of the
        # same program would escape the never-capture list.
        if any(entry.sha256 is not None for entry in self.match.exe_paths):
            raise ValueError(
                "exe_paths in never_capture take no sha256: a digest would let another "
                "build of the same program be captured"
            )
        return self


class RedactionPattern(_Model):
    name: Name
    pattern: Regex


BuiltinRedaction = Literal["card", "iban", "national_id", "email", "phone", "secret"]


class Redaction(_Model):
    builtin: tuple[BuiltinRedaction, ...] = (
        "card",
        "iban",
        "national_id",
        "email",
        "phone",
        "secret",
    )
    patterns: tuple[RedactionPattern, ...] = ()


class PauseRules(_Model):
    max_minutes: int = Field(default=30, ge=1, le=24 * 60)


class ExemptionEffect(_Model):
    """What an approved exemption of one category changes."""

    stop_capture: bool = False
    screenshots: bool = True
    max_keystrokes: KeyMode = KeyMode.TEXT
    upload_ac_only: bool = False
    upload_unmetered_only: bool = False
    daily_upload_bytes: int | None = Field(default=None, ge=0)


def _default_exemptions() -> dict[Category, ExemptionEffect]:
    return {
        Category.BANDWIDTH: ExemptionEffect(
            screenshots=False, upload_unmetered_only=True, daily_upload_bytes=5 * 2**20
        ),
        Category.SENSITIVE: ExemptionEffect(stop_capture=True),
        Category.BATTERY: ExemptionEffect(screenshots=False, upload_ac_only=True),
        Category.OTHER: ExemptionEffect(stop_capture=True),
    }


class UploadRules(_Model):
    ac_only: bool = False
    unmetered_only: bool = True
    daily_bytes: int = Field(default=50 * 2**20, ge=0)


class BatteryRules(_Model):
    """Lighter capture while the device runs on battery."""

    screenshots: bool = False


class Retention(_Model):
    days: int = Field(ge=1, le=3650)
    #: Who can decrypt and read the data, in words shown in the consent notice.
    readers: tuple[str, ...] = Field(min_length=1)


class Notice(_Model):
    organisation: str = Field(min_length=1, max_length=200)
    contact: str = Field(min_length=1, max_length=200)
    purpose: str = Field(
        default="training computer-use AI agents on how work applications are used",
        max_length=1000,
    )


class Policy(_Model):
    """A capture policy as IT writes it, before signing."""

    version: int = Field(ge=1)
    issued_at: AwareDatetime
    expires: AwareDatetime
    scope: Scope
    notice: Notice
    #: When set, the signer set that takes over from the current one. The
    #: switch needs a threshold of the current set and of this one.
    next_signers: SignerSet | None = None
    grant_signers: tuple[AdminKey, ...] = ()
    dataset_key: DatasetKey
    apps: tuple[AppRule, ...] = Field(min_length=1)
    never_capture: tuple[DeniedApp, ...] = ()
    redaction: Redaction = Redaction()
    pause: PauseRules = PauseRules()
    review_window_minutes: int = Field(default=15, ge=0, le=7 * 24 * 60)
    exemptions: dict[Category, ExemptionEffect] = Field(default_factory=_default_exemptions)
    upload: UploadRules = UploadRules()
    battery: BatteryRules = BatteryRules()
    spool_max_bytes: int = Field(default=256 * 2**20, ge=2**20)
    retention: Retention

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.expires <= self.issued_at:
            raise ValueError("expires must be after issued_at")
        ids = [a.id for a in self.apps]
        if len(set(ids)) != len(ids):
            raise ValueError("two apps share an id")
        admin_ids = [k.keyid for k in self.grant_signers]
        if len(set(admin_ids)) != len(admin_ids):
            raise ValueError("an admin key is listed twice")
        return self

    @field_validator("exemptions")
    @classmethod
    def _all_categories(
        cls, value: dict[Category, ExemptionEffect]
    ) -> dict[Category, ExemptionEffect]:
        missing = set(Category) - set(value)
        if missing:
            raise ValueError(f"exemptions must define every category; missing {sorted(missing)}")
        return value

    @property
    def lifetime(self) -> timedelta:
        return self.expires - self.issued_at

    def admin_key(self, keyid: str) -> AdminKey | None:
        for key in self.grant_signers:
            if key.keyid == keyid:
                return key
        return None


class Grant(_Model):
    """An exemption granted by an admin to one device (and optionally user)."""

    grant_id: Name
    request_id: Name
    tenant: Name
    device_id: Name
    user: str | None = Field(default=None, max_length=128)
    category: Category
    issued_at: AwareDatetime
    expires: AwareDatetime
    reason: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _window(self) -> Grant:
        if self.expires <= self.issued_at:
            raise ValueError("expires must be after issued_at")
        return self


def policy_json_schema() -> dict[str, object]:
    """The JSON Schema of the policy payload, for editors and validators."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = POLICY_PAYLOAD_TYPE
    return schema
