"""What the tray asks of the agent: one method per control command, typed.

:class:`AgentApi` is the only door from ``ui`` to the agent. Every method is a
blocking call that returns a parsed value from :mod:`ui.model` or raises one
of :mod:`ui.errors`: ``AgentUnreachable`` (no agent, or one that does not
answer), ``AgentRefused`` (the agent said no, with its code and words) or
``BadReply`` (an answer of the wrong shape). Widgets and the presentation
core depend on this Protocol only, so they are tested with a fake.
:class:`ControlAgentApi` implements it over ``agent.control.ControlClient``
(the Unix-socket client of docs/CONTROL.md) and is where that module's
exceptions are wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.control import (
    AgentNotRunning,
    ControlClient,
    ControlError,
    ControlProtocolError,
    default_socket_path,
)
from ui.errors import AgentRefused, AgentUnreachable
from ui.model import (
    AgentStatus,
    ConsentOffer,
    DiscardResult,
    ExemptionRequest,
    Ledger,
    parse_consent_offer,
    parse_discard,
    parse_exemption_list,
    parse_exemption_submitted,
    parse_ledger,
    parse_status,
)

T = TypeVar("T")


class AgentApi(Protocol):
    """The control commands the tray uses (docs/CONTROL.md)."""

    def status(self) -> AgentStatus: ...

    def pause(self, minutes: int | None) -> AgentStatus: ...

    def resume(self) -> AgentStatus: ...

    def discard(self, minutes: int) -> DiscardResult: ...

    def consent_show(self) -> ConsentOffer: ...

    def consent_accept(self, policy_version: int) -> AgentStatus: ...

    def consent_decline(self, policy_version: int) -> AgentStatus: ...

    def exemption_request(self, category: str, reason: str, duration_days: int) -> str: ...

    def exemption_list(self) -> tuple[ExemptionRequest, ...]: ...

    def ledger(self, days: int) -> Ledger: ...


class ControlAgentApi:
    """:class:`AgentApi` over the agent's Unix-socket control client.

    ``socket_path`` None means the control API's default path for this user
    (``agent.control.default_socket_path``). Each call opens its own
    connection, so one instance may be used from several threads. ``client``
    replaces the socket client (tests hand in one that answers in-process).
    """

    def __init__(
        self,
        socket_path: Path | None = None,
        timeout: float = 3.0,
        *,
        client: ControlClient | None = None,
    ) -> None:
        if client is not None:
            self.socket_path = client.path
            self._client = client
            return
        self.socket_path = socket_path if socket_path is not None else default_socket_path()
        self._client = ControlClient(self.socket_path, timeout=timeout)

    def _call(self, command: str, parse: Callable[[Any], T], *args: Any) -> T:
        try:
            result = getattr(self._client, command)(*args)
        except AgentNotRunning as exc:
            raise AgentUnreachable(exc.message) from exc
        except ControlProtocolError as exc:
            # A wedged agent captures no less than a healthy one, but the
            # tray cannot tell the person anything true about it.
            raise AgentUnreachable(f"the agent is not answering: {exc.message}") from exc
        except ControlError as exc:
            raise AgentRefused(exc.code, exc.message) from exc
        return parse(result)

    def status(self) -> AgentStatus:
        return self._call("status", parse_status)

    def pause(self, minutes: int | None) -> AgentStatus:
        return self._call("pause", parse_status, minutes)

    def resume(self) -> AgentStatus:
        return self._call("resume", parse_status)

    def discard(self, minutes: int) -> DiscardResult:
        return self._call("discard", parse_discard, minutes)

    def consent_show(self) -> ConsentOffer:
        return self._call("consent_show", parse_consent_offer)

    def consent_accept(self, policy_version: int) -> AgentStatus:
        return self._call("consent_accept", parse_status, policy_version)

    def consent_decline(self, policy_version: int) -> AgentStatus:
        return self._call("consent_decline", parse_status, policy_version)

    def exemption_request(self, category: str, reason: str, duration_days: int) -> str:
        return self._call(
            "exemption_request", parse_exemption_submitted, category, reason, duration_days
        )

    def exemption_list(self) -> tuple[ExemptionRequest, ...]:
        return self._call("exemption_list", parse_exemption_list)

    def ledger(self, days: int) -> Ledger:
        return self._call("ledger", parse_ledger, days)
