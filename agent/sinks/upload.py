"""The uploader: sealed batches and erasure requests from the spool to the collector.

This module owns the agent's side of ``POST /v1/batches`` and ``POST
/v1/erasure`` (docs/PROTOCOL.md): request signing with the device key, the
retry rules, the upload conditions (power, network, daily budget) and the
upload status the tray shows. It does not seal, store or decide policy: the
spool holds the batches, ``agent.pipeline.decision.upload_allowed`` and
``daily_upload_budget`` decide whether the policy allows uploading, and
``agent.sources.power`` tells power and network.

One step, :meth:`Uploader.run_once`:

1. nothing without a request signer (state ``not_enrolled``) or before the
   backoff deadline (``waiting``);
2. pending erasure requests are sent first, whatever the upload conditions
   (a few hundred bytes that protect the employee);
3. then, if ``upload_allowed`` holds for the capture state with the probed
   power and network and today's uploaded bytes (from the ledger, per local
   day), ready batches go one by one in sequence order, each only if it fits
   in what is left of the daily budget. The budget counts the sealed bytes of
   acknowledged batches (the ledger's ``uploaded_at_ms``); failed attempts
   and dead letters are not counted.

Answers, per the protocol's retry rules: ``2xx`` (``201 stored``, ``200
duplicate``) acknowledges the batch (deleted from the spool, ``uploaded`` in
the ledger); ``401`` keeps it and reports ``not_enrolled``; ``408``, ``429``,
``5xx``, other non-``4xx`` answers, timeouts and connection errors keep it and
back off; any other ``4xx`` moves it to the dead letters and the queue moves
on. Backoff is exponential with full jitter — attempt *n* waits
``uniform(0, min(max_delay_s, base_delay_s * 2**n))`` drawn from the injected
RNG — and at least ``Retry-After`` (seconds or an HTTP date, capped at
``max_retry_after_s``) when the answer carries one. A success resets it.
A crash between the collector's answer and the ack leaves the batch in the
spool; it is sent again and acknowledged by the ``200 duplicate``.

Public API::

    RequestSigner(device_id, private_key).headers(method, target, body, now_ms)
    Uploader(client, spool, signer, clock, capture_state, conditions, *,
             rng=None, settings=UploadSettings())
        client         httpx.Client with base_url = the collector (timeouts set on it)
        spool          agent.sinks.spool.Spool
        signer         RequestSigner, or None while not enrolled (see set_signer)
        clock          () -> float, epoch seconds
        capture_state  () -> agent.pipeline.decision.CaptureState (policy, grants)
        conditions     agent.sources.power.ConditionsProbe
    .run_once(now) -> float       one step; returns seconds until the next is due
    .status() -> UploadStatus     the control API's ``upload`` object
    .set_signer(signer)           after (re-)enrollment; clears not_enrolled
    .start() / .wake() / .stop(timeout)   the background thread ``overt-upload``
    .last_attempt(now)            one more step at shutdown, ignoring the backoff

Thread-safety: ``run_once`` runs on one thread at a time (the uploader's own
thread once ``start``ed); ``status``, ``set_signer``, ``wake`` and ``stop``
may be called from any thread. The thread sleeps on an ``Event`` between
steps (woken early by ``wake`` or ``stop``), never polls in a busy loop.

Logs carry sequence numbers, sizes and status codes, never content.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from enum import Enum, StrEnum
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.pipeline.decision import (
    CaptureState,
    UploadReason,
    daily_upload_budget,
    upload_allowed,
)
from agent.sources.power import ConditionsProbe
from overt.wire.sealed import MEDIA_TYPE
from overt.wire.signature import sign_request

from .base import SpoolError
from .spool import Spool
from .spool_rows import ErasureRequest, SpooledBatch

log = logging.getLogger(__name__)

BATCHES_PATH = "/v1/batches"
ERASURE_PATH = "/v1/erasure"
ERASURE_REASON = "discarded by the employee"


@dataclass(frozen=True, slots=True)
class UploadSettings:
    """Timing of the uploader (built once by the agent's entry point)."""

    #: First backoff ceiling; doubles with every consecutive failure.
    base_delay_s: float = 2.0
    #: The ceiling's cap.
    max_delay_s: float = 15 * 60.0
    #: A Retry-After longer than this is shortened to it.
    max_retry_after_s: float = 6 * 3600.0
    #: How often to look again when idle or when a condition does not hold.
    recheck_s: float = 60.0
    #: How often old ledger entries, dead letters and quarantined rows are pruned.
    maintain_every_s: float = 3600.0


class UploadState(StrEnum):
    IDLE = "idle"
    UPLOADING = "uploading"
    WAITING = "waiting"
    NOT_ENROLLED = "not_enrolled"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """The ``upload`` object of the control API's status (docs/CONTROL.md)."""

    state: UploadState = UploadState.IDLE
    why: str = ""
    last_success_ms: int | None = None
    today_bytes: int = 0
    daily_budget: int = 0
    next_attempt_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "why": self.why,
            "last_success_ms": self.last_success_ms,
            "today_bytes": self.today_bytes,
            "daily_budget": self.daily_budget,
            "next_attempt_ms": self.next_attempt_ms,
        }


class RequestSigner:
    """Signs requests as one enrolled device (``overt.wire.signature``)."""

    def __init__(self, device_id: str, private_key: Ed25519PrivateKey) -> None:
        if not device_id:
            raise ValueError("device_id must not be empty")
        self.device_id = device_id
        self._key = private_key

    def headers(self, method: str, target: str, body: bytes, now_ms: int) -> dict[str, str]:
        return sign_request(self._key, self.device_id, method, target, body, now_ms)


class Backoff:
    """Exponential backoff with full jitter, capped, honouring Retry-After."""

    def __init__(self, settings: UploadSettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        self.failures = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next attempt, counting one more failure."""
        s = self._settings
        ceiling = min(s.max_delay_s, s.base_delay_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        delay = self._rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, s.max_retry_after_s))
        return delay

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP
    date, relative to ``now`` in epoch seconds); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class _Kind(Enum):
    DONE = "done"
    UNAUTHORIZED = "unauthorized"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: _Kind
    status: int | None
    why: str
    retry_after_s: float | None = None


def _classify(response: httpx.Response, now: float) -> _Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return _Outcome(_Kind.DONE, code, "")
    if code == 401:
        return _Outcome(_Kind.UNAUTHORIZED, code, "the collector does not accept this device (401)")
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if code in (408, 429) or code >= 500 or not 400 <= code < 500:
        return _Outcome(_Kind.RETRY, code, f"the collector answered {code}", retry_after)
    why = f"the collector refused it ({code}{_error_code(response)})"
    return _Outcome(_Kind.REJECTED, code, why)


def _error_code(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return f" {error}" if isinstance(error, str) and len(error) <= 64 else ""


_WAITING_WHY = {
    UploadReason.ON_BATTERY: "on battery power; the policy uploads only on AC power",
    UploadReason.METERED: "on a metered network; the policy uploads only on unmetered networks",
    UploadReason.DAILY_BUDGET_SPENT: "today's upload budget is spent",
}
_BLOCKED_WHY = {
    UploadReason.NO_POLICY: "no policy in force",
    UploadReason.POLICY_EXPIRED: "the policy has expired",
}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class Uploader:
    """Sends the spool's batches and erasure requests (see the module docstring)."""

    def __init__(
        self,
        client: httpx.Client,
        spool: Spool,
        signer: RequestSigner | None,
        clock: Callable[[], float],
        capture_state: Callable[[], CaptureState],
        conditions: ConditionsProbe,
        *,
        rng: random.Random | None = None,
        settings: UploadSettings | None = None,
    ) -> None:
        self._client = client
        self._spool = spool
        self._signer = signer
        self._clock = clock
        self._capture_state = capture_state
        self._conditions = conditions
        self._settings = settings or UploadSettings()
        self._backoff = Backoff(self._settings, rng or random.Random())  # noqa: S311 - jitter
        self._next_attempt: float | None = None
        self._last_maintain: float | None = None
        self._lock = threading.Lock()
        self._status = UploadStatus()
        self._stop = threading.Event()
        #: True during ``last_attempt``, which runs after ``stop``.
        self._last_round = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def destination(self) -> str:
        """The collector, as recorded in the ledger."""
        return str(self._client.base_url).rstrip("/")

    def status(self) -> UploadStatus:
        with self._lock:
            return self._status

    def set_signer(self, signer: RequestSigner | None) -> None:
        """Use another device identity (after enrollment); retries at once."""
        with self._lock:
            self._signer = signer
            self._next_attempt = None
            self._backoff.reset()
        self.wake()

    # ------------------------------------------------------------- one step

    def run_once(self, now: float) -> float:
        """Send what may be sent now; returns the seconds until the next step is due."""
        recheck = self._settings.recheck_s
        with self._lock:
            signer, next_attempt = self._signer, self._next_attempt
        if signer is None:
            self._set(UploadState.NOT_ENROLLED, "this device is not enrolled with a collector")
            return recheck
        if next_attempt is not None and now < next_attempt:
            self._set(next_attempt_ms=_ms(next_attempt))
            return next_attempt - now
        try:
            return self._step(signer, now)
        except SpoolError as exc:
            log.error("the spool cannot be used for uploads: %s", exc)
            return self._retry_later(
                now, _Outcome(_Kind.RETRY, None, f"the spool cannot be read: {exc}")
            )

    def _step(self, signer: RequestSigner, now: float) -> float:
        settings = self._settings
        now_ms = _ms(now)
        if self._last_maintain is None or now - self._last_maintain >= settings.maintain_every_s:
            self._last_maintain = now
            try:
                self._spool.maintain(now_ms)
            except SpoolError as exc:
                # Not a reason to skip this round's uploads (on a full disk,
                # say): they are what frees space, and the next round prunes.
                log.warning("spool maintenance failed: %s", exc)

        for request in self._spool.pending_erasures():
            outcome = self._send_erasure(signer, request)
            if outcome.kind is _Kind.DONE:
                self._spool.erasure_done(request.id)
                with self._lock:
                    self._backoff.reset()
                log.info("erasure request %d acknowledged", request.id)
            elif outcome.kind is _Kind.REJECTED:
                self._spool.erasure_failed(request.id, outcome.why, rejected=True)
                log.error("erasure request %d refused (status %s)", request.id, outcome.status)
            else:
                self._spool.erasure_failed(request.id, outcome.why)
                return self._retry_later(self._clock(), outcome)

        host = self._conditions.read()
        state = (
            self._capture_state()
            .with_power(on_battery=bool(host.on_battery))
            .with_network(metered=bool(host.metered))
        )
        today = self._spool.ledger.uploaded_today(now_ms)
        budget = daily_upload_budget(state, now)
        self._set(today_bytes=today, daily_budget=budget)
        allowed, reason = upload_allowed(state, today, now)
        if not allowed:
            if reason in _BLOCKED_WHY:
                self._set(UploadState.BLOCKED, _BLOCKED_WHY[reason], next_attempt_ms=None)
            else:
                self._set(
                    UploadState.WAITING,
                    _WAITING_WHY.get(reason, reason.value),
                    next_attempt_ms=_ms(now + settings.recheck_s),
                )
            return settings.recheck_s

        sent = 0
        # ``stop`` ends the sending at the next batch; the last round (after it) sends.
        while self._last_round or not self._stop.is_set():
            batch = self._spool.next_ready(now_ms)
            if batch is None:
                break
            if today + batch.size > budget:
                if batch.size > budget:
                    why = (
                        f"batch {batch.seq} ({batch.size} bytes) is larger than the whole daily "
                        f"upload budget ({budget} bytes)"
                    )
                    self._set(UploadState.BLOCKED, why, next_attempt_ms=None)
                else:
                    self._set(
                        UploadState.WAITING,
                        _WAITING_WHY[UploadReason.DAILY_BUDGET_SPENT],
                        next_attempt_ms=_ms(now + settings.recheck_s),
                    )
                return settings.recheck_s
            self._set(UploadState.UPLOADING, f"sending batch {batch.seq}")
            outcome = self._send_batch(signer, batch)
            at = self._clock()
            if outcome.kind is _Kind.DONE:
                self._spool.ack(batch, now_ms=_ms(at), destination=self.destination)
                today += batch.size
                sent += 1
                with self._lock:
                    self._backoff.reset()
                self._set(last_success_ms=_ms(at), today_bytes=today)
                log.info("seq %d uploaded (%s): %d bytes", batch.seq, outcome.status, batch.size)
            elif outcome.kind is _Kind.REJECTED:
                self._spool.dead_letter(
                    batch, now_ms=_ms(at), status=outcome.status, error=outcome.why
                )
            else:
                return self._retry_later(at, outcome)

        held_until = self._spool.next_hold_until(now_ms)
        self._set(UploadState.IDLE, "", next_attempt_ms=None)
        if sent:
            log.info("upload step done: %d batches sent", sent)
        if held_until is None:
            return settings.recheck_s
        return max(0.0, min(settings.recheck_s, held_until / 1000 - now))

    def _retry_later(self, at: float, outcome: _Outcome) -> float:
        with self._lock:
            delay = self._backoff.next_delay(outcome.retry_after_s)
            self._next_attempt = at + delay
        unauthorized = outcome.kind is _Kind.UNAUTHORIZED
        state = UploadState.NOT_ENROLLED if unauthorized else UploadState.WAITING
        why = f"{outcome.why}; retrying in {delay:.0f} s"
        self._set(state, why, next_attempt_ms=_ms(at + delay))
        log.warning("upload failed (status %s); next attempt in %.1f s", outcome.status, delay)
        return delay

    # ------------------------------------------------------------- requests

    def _send_batch(self, signer: RequestSigner, batch: SpooledBatch) -> _Outcome:
        return self._post(signer, BATCHES_PATH, batch.sealed, MEDIA_TYPE)

    def _send_erasure(self, signer: RequestSigner, request: ErasureRequest) -> _Outcome:
        body = json.dumps(
            {"start_ms": request.start_ms, "end_ms": request.end_ms, "reason": request.reason},
            separators=(",", ":"),
        ).encode()
        return self._post(signer, ERASURE_PATH, body, "application/json")

    def _post(self, signer: RequestSigner, path: str, body: bytes, content_type: str) -> _Outcome:
        request = self._client.build_request(
            "POST", path, content=body, headers={"Content-Type": content_type}
        )
        # Sign the target exactly as it goes on the wire (base_url prefix, query).
        target = request.url.raw_path.decode("ascii")
        request.headers.update(signer.headers("POST", target, body, _ms(self._clock())))
        try:
            response = self._client.send(request)
            response.read()
        except httpx.TimeoutException as exc:
            return _Outcome(_Kind.RETRY, None, f"the collector did not answer in time ({exc!r})")
        except httpx.TransportError as exc:
            return _Outcome(_Kind.RETRY, None, f"cannot reach the collector ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _Outcome(_Kind.RETRY, None, f"request failed ({type(exc).__name__})")
        return _classify(response, self._clock())

    def _set(
        self,
        state: UploadState | None = None,
        why: str | None = None,
        **fields: Any,
    ) -> None:
        with self._lock:
            changes = dict(fields)
            if state is not None:
                changes["state"] = state
            if why is not None:
                changes["why"] = why
            self._status = replace(self._status, **changes)

    # --------------------------------------------------------------- thread

    def start(self) -> None:
        """Run steps on the thread ``overt-upload`` until ``stop``."""
        if self._thread is not None:
            raise RuntimeError("the uploader is already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="overt-upload", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next step now (e.g. a batch became ready, conditions changed)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current request; waits up to ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the upload thread did not stop within %.1f s", timeout)

    def last_attempt(self, now: float) -> None:
        """One step at shutdown, whatever the backoff says (after ``stop``).

        What the agent wrote while stopping is sent now if the collector
        answers; what it does not take stays in the spool for the next start.
        """
        with self._lock:
            self._next_attempt = None
        self._last_round = True
        try:
            self.run_once(now)
        except Exception:
            log.exception("last upload attempt failed")
        finally:
            self._last_round = False

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a wake() from here on runs one more step
            try:
                delay = self.run_once(self._clock())
            except Exception:
                log.exception("upload step failed")
                delay = self._settings.recheck_s
            self._wake.wait(max(0.0, delay))
