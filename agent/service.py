"""The running agent: capture wired to sealing, the spool, upload, policy sync
and the local control API.

This module owns the composition of one agent process and the two small
threads it adds: ``overt-sync`` (policy and grants from the collector) and
the uploader's ``overt-upload``; the control server runs its own. It opens
the state directory once (one :class:`~agent.local_state.LocalState`) and
builds the one :class:`~agent.trust.TrustHolder`, shared by policy sync and
capture: what sync fetches reaches capture through the holder, in memory.
It holds no capture rule (``agent.capture`` and ``agent.pipeline``), no
trust decision (``agent.trust``), no storage format (``agent.sinks``) and no
wire format (``agent.control``, ``agent.remote``).

What runs depends on what the state directory holds:

- always: capture (:class:`~agent.app.Agent`) into the sealing sink and the
  spool (``spool/v1/``), the ledger, and the control socket;
- once enrolled (``overt agent enroll``): the uploader, policy and grant
  sync, exemption requests and consent records to the collector.

Order of shutdown: the control socket closes first (no new commands), then
capture stops and writes what it holds to the spool, then the uploader gets
one last chance to send what is ready, then the spool closes. Whatever was
not sent stays in the spool for the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.app import Agent, AgentError
from agent.config import AgentConfig
from agent.control import ControlError, ControlServer
from agent.control_target import AgentControlTarget, ControlParts
from agent.local_state import LocalState, LocalStateError
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import daily_upload_budget
from agent.policy_sync import PolicySync
from agent.remote import CollectorClient, RemoteError
from agent.sinks.base import Sink
from agent.sinks.sealing import SealingSink
from agent.sinks.spool import Spool
from agent.sinks.upload import RequestSigner, Uploader, UploadSettings, UploadState
from agent.sources.canary import Canary, open_canary
from agent.sources.input import InputHooks
from agent.sources.power import ConditionsProbe
from agent.sources.screen import ScreenGrabber
from agent.sources.window import WindowProbe
from agent.trust import TrustHolder
from overt.wire.batch import Batch
from policies.model import Policy

log = logging.getLogger(__name__)

#: The most ledger entries one control answer carries (a line is capped).
_LEDGER_LIMIT = 2000


@dataclass(frozen=True)
class ServiceSettings:
    """How often the agent talks to its collector (built at the entry point)."""

    #: Policy and grant sync, normally.
    sync_interval_s: float = 60.0
    #: ...and while an exemption request of this device may be decided soon.
    sync_interval_pending_s: float = 5.0
    #: How long after a request the faster sync lasts.
    pending_window_s: float = 30 * 60.0
    upload: UploadSettings = field(default_factory=UploadSettings)
    http_timeout_s: float = 30.0


class _WakingSink:
    """The sealing sink, waking the uploader after each batch it takes."""

    def __init__(self, sink: Sink, wake: Callable[[], None]) -> None:
        self._sink = sink
        self._wake = wake

    def write(self, batch: Batch) -> None:
        self._sink.write(batch)
        self._wake()


class AgentService:
    """One desktop user's agent process, all parts wired (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        probe: WindowProbe,
        hooks: InputHooks,
        grabber: ScreenGrabber,
        conditions: ConditionsProbe,
        socket_path: Path | None,
        canary: Callable[[], Canary] = open_canary,
        http: httpx.Client | None = None,
        sink: Sink | None = None,
        settings: ServiceSettings | None = None,
        local: LocalState | None = None,
    ) -> None:
        """``http`` is the client for the collector (built from the enrollment when
        None); ``sink`` replaces sealing and the spool (``--sink DIR`` for
        inspection); ``socket_path`` None runs without a control socket;
        ``local`` is the state directory if the caller opened it already."""
        self._config = config
        self._clock = config.clock
        self._settings = settings or ServiceSettings()
        self._local = local if local is not None else LocalState(config.state_dir)
        self.trust = TrustHolder(
            self._local.trust, self._local, config.trusted, config.device, self._clock
        )
        self.spool = Spool(config.state_dir)
        key = self._local.device_key()
        self._sealing = SealingSink(self.spool, key, self._clock)
        enrollment = self._local.enrollment()
        self.uploader: Uploader | None = None
        self.remote: CollectorClient | None = None
        self._sync: PolicySync | None = None
        self._owns_http = False
        if enrollment is not None:
            if http is None:
                http = httpx.Client(
                    base_url=enrollment.collector, timeout=self._settings.http_timeout_s
                )
                self._owns_http = True
            self._http: httpx.Client | None = http
            self.remote = CollectorClient(http, enrollment.device_id, key, self._clock)
            self._sync = PolicySync(self.remote, self.trust)
        else:
            self._http = None
        wake = self._wake_uploader
        self._sink_is_spool = sink is None
        self.agent = Agent(
            config,
            probe=probe,
            hooks=hooks,
            grabber=grabber,
            sink=sink if sink is not None else _WakingSink(self._sealing, wake),
            canary=canary,
            on_policy=self._on_policy,
            local=self._local,
            trust=self.trust,
        )
        if self._http is not None and enrollment is not None:
            self.uploader = Uploader(
                self._http,
                self.spool,
                RequestSigner(enrollment.device_id, key),
                self._clock,
                self.agent.capture_state,
                conditions,
                settings=self._settings.upload,
            )
        self.control: ControlServer | None = None
        if socket_path is not None:
            target = AgentControlTarget(
                self.agent,
                policy=lambda: self.agent.policy,
                consent=self._local.consent,
                clock=self._clock,
                parts=self._parts(),
            )
            self.control = ControlServer(target, socket_path)
        self._stop = threading.Event()
        self._sync_now = threading.Event()
        self._pending_until = 0.0
        self._sync_thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Claim the control socket, sync once, then start capture, upload and sync."""
        self._reconcile_sequence()
        if self.control is not None:
            # Claim the socket first: a second agent for this user stops here.
            self.control.start()
        try:
            if self._sync is not None:
                # Before capture starts, which then takes up what the holder accepted.
                self._sync_once()
            self.agent.start()
            if self.uploader is not None:
                self.uploader.start()
            if self._sync is not None:
                self._sync_thread = threading.Thread(
                    target=self._sync_loop, name="overt-sync", daemon=True
                )
                self._sync_thread.start()
        except BaseException:
            if self.control is not None:
                self.control.stop()
            raise

    def _reconcile_sequence(self) -> None:
        """Hold the recorded sequence number against the spool before capture starts.

        A number the spool has seen is never used again, even if the small
        state file was lost. A number recorded as used that no batch in the
        spool carries belongs to a batch that was lost on its way there (a
        crash between the two writes, or an exit while the spool refused it):
        the agent is told, and its next batch carries a gap marker. With
        another sink (``--sink DIR``) the spool is not where batches go, so
        only the first rule applies.
        """
        last = self.spool.last_seq()
        used = self._local.next_sequence() - 1
        if last > used:
            self._local.advance_sequence(last)
        elif used > last and self._sink_is_spool:
            log.warning("sequence numbers %d to %d were used, but no spooled batch has them",
                        last + 1, used)  # fmt: skip
            self.agent.report_lost_batches(used - last)

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
        self._stop.set()
        self._sync_now.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
        self.agent.stop()
        if self.uploader is not None:
            self.uploader.stop()
            self.uploader.last_attempt(self._clock())
        if self._owns_http and self._http is not None:
            self._http.close()
        self.spool.close()

    def __enter__(self) -> AgentService:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ wiring

    def _wake_uploader(self) -> None:
        if self.uploader is not None:
            self.uploader.wake()

    def _on_policy(self, policy: Policy | None) -> None:
        if policy is not None:
            self._sealing.configure_from_policy(policy)
        self._wake_uploader()

    def _sync_once(self) -> None:
        """One sync round; the trust holder hands what changed to capture."""
        assert self._sync is not None
        result = self._sync.sync(self._clock())
        if result.problem:
            log.warning("policy sync: %s", result.problem)

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            settings = self._settings
            fast = self._clock() < self._pending_until
            interval = settings.sync_interval_pending_s if fast else settings.sync_interval_s
            self._sync_now.wait(interval)
            self._sync_now.clear()
            if self._stop.is_set():
                return
            try:
                self._sync_once()
            except Exception:
                # Sync must never take the agent down; the next round retries.
                log.exception("policy sync failed")

    # ------------------------------------------------------------ control parts

    def _parts(self) -> ControlParts:
        return ControlParts(
            apply_consent=self._apply_consent,
            spool_state=lambda: self.spool.stats(self._now_ms()).to_dict(),
            upload_state=self._upload_state,
            discard=self._discard,
            request_exemption=self._request_exemption if self.remote is not None else None,
            list_exemptions=self._list_exemptions if self.remote is not None else None,
            ledger=self._ledger,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _upload_state(self) -> Mapping[str, Any]:
        if self.uploader is not None:
            return self.uploader.status().to_dict()
        budget = daily_upload_budget(self.agent.capture_state(), self._clock())
        return {
            "state": UploadState.NOT_ENROLLED.value,
            "why": "this device is not enrolled with a collector (overt agent enroll)",
            "last_success_ms": None,
            "today_bytes": self.spool.ledger.uploaded_today(self._now_ms()),
            "daily_budget": budget,
            "next_attempt_ms": None,
        }

    def _apply_consent(self, record: ConsentRecord) -> None:
        try:
            applied = self.agent.set_consent(record.accepted)
        except AgentError as exc:
            raise ControlError("unavailable", str(exc)) from exc
        except LocalStateError as exc:
            # A full disk, say: the answer is not in force either.
            raise ControlError(
                "unavailable", f"Your answer could not be recorded ({exc}). Nothing changed."
            ) from exc
        remote = self.remote
        if remote is None:
            return

        def send() -> None:
            try:
                remote.record_consent(applied.policy_version, applied.accepted, applied.at)
            except RemoteError as exc:
                # The answer is in force locally; the collector's audit copy is
                # best effort and the next answer is sent again.
                log.warning("consent record not sent to the collector: %s", exc)

        threading.Thread(target=send, name="overt-consent", daemon=True).start()

    def _discard(self, minutes: int) -> Mapping[str, Any]:
        try:
            dropped = self.agent.discard(minutes)
        except AgentError as exc:
            raise ControlError("bad_request", str(exc)) from exc
        result = self.spool.discard(dropped.since_ms, dropped.until_ms)
        self._wake_uploader()
        return {
            "batches_deleted": result.batches_deleted + dropped.batches_dropped,
            "events_dropped": dropped.records_dropped,
            "erasure_requested": result.erasure_requested,
            "erasure_range": None if result.erasure_range is None else list(result.erasure_range),
        }

    def _request_exemption(self, category: str, reason: str, days: int) -> Mapping[str, Any]:
        assert self.remote is not None
        try:
            answer = self.remote.request_exemption(category, reason, days)
        except RemoteError as exc:
            raise ControlError("unavailable", str(exc)) from exc
        # Look for the decision often for a while: an approval applies at once.
        self._pending_until = self._clock() + self._settings.pending_window_s
        self._sync_now.set()
        return answer

    def _list_exemptions(self) -> Mapping[str, Any]:
        assert self.remote is not None
        try:
            requests = self.remote.exemptions()
        except RemoteError as exc:
            raise ControlError("unavailable", str(exc)) from exc
        if any(r.get("status") == "pending" for r in requests):
            self._pending_until = max(
                self._pending_until, self._clock() + self._settings.pending_window_s
            )
        return {"requests": requests}

    def _ledger(self, days: int) -> Mapping[str, Any]:
        budget = daily_upload_budget(self.agent.capture_state(), self._clock())
        return self.spool.ledger.report(days, self._now_ms(), budget, limit=_LEDGER_LIMIT)
