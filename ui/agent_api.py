"""What the tray asks of the agent: one method per control command, typed.

:class:`AgentApi` is the only door from ``ui`` to the agent. Every method is a
blocking call that returns a result model of ``overt.wire.control_results``
(the control API's one definition of its answers) or raises one of
:mod:`ui.errors`: ``AgentUnreachable`` (no agent, or one that does not
answer), ``AgentRefused`` (the agent said no, with its code and words) or
``BadReply`` (an answer its model does not accept). Widgets and the
presentation core depend on this Protocol only, so they are tested with a
fake. :class:`ControlAgentApi` implements it over
``agent.control.client.ControlClient`` (the Unix-socket client of
docs/CONTROL.md) and is where that module's exceptions are wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from agent.control.client import ControlClient, default_socket_path
from agent.control.errors import (
    AgentNotRunning,
    ControlError,
    ControlProtocolError,
    UnexpectedAnswer,
)
from overt.wire.control_results import (
    ConsentOffer,
    DiscardReport,
    LedgerReport,
    RequestedExemption,
    Status,
)
from ui.errors import AgentRefused, AgentUnreachable, BadReply

T = TypeVar("T")


class AgentApi(Protocol):
    """The control commands the tray uses (docs/CONTROL.md)."""

    def status(self) -> Status: ...

    def pause(self, minutes: int | None) -> Status: ...

    def resume(self) -> Status: ...

    def discard(self, minutes: int) -> DiscardReport: ...

    def consent_show(self) -> ConsentOffer: ...

    def consent_accept(self, policy_version: int) -> Status: ...

    def consent_decline(self, policy_version: int) -> Status: ...

    def exemption_request(self, category: str, reason: str, duration_days: int) -> str: ...

    def exemption_list(self) -> tuple[RequestedExemption, ...]: ...

    def ledger(self, days: int) -> LedgerReport: ...


class ControlAgentApi:
    """:class:`AgentApi` over the agent's Unix-socket control client.

    ``socket_path`` None means the control API's default path for this user
    (``agent.control.client.default_socket_path``). Each call opens its own
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

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        try:
            return call()
        except AgentNotRunning as exc:
            raise AgentUnreachable(exc.message) from exc
        except UnexpectedAnswer as exc:
            raise BadReply(exc.message) from exc
        except ControlProtocolError as exc:
            # A wedged agent captures no less than a healthy one, but the
            # tray cannot tell the person anything true about it.
            raise AgentUnreachable(f"the agent is not answering: {exc.message}") from exc
        except ControlError as exc:
            raise AgentRefused(exc.code, exc.message) from exc

    def status(self) -> Status:
        return self._call(self._client.status)

    def pause(self, minutes: int | None) -> Status:
        return self._call(lambda: self._client.pause(minutes))

    def resume(self) -> Status:
        return self._call(self._client.resume)

    def discard(self, minutes: int) -> DiscardReport:
        return self._call(lambda: self._client.discard(minutes))

    def consent_show(self) -> ConsentOffer:
        return self._call(self._client.consent_show)

    def consent_accept(self, policy_version: int) -> Status:
        return self._call(lambda: self._client.consent_accept(policy_version))

    def consent_decline(self, policy_version: int) -> Status:
        return self._call(lambda: self._client.consent_decline(policy_version))

    def exemption_request(self, category: str, reason: str, duration_days: int) -> str:
        sent = self._call(lambda: self._client.exemption_request(category, reason, duration_days))
        return sent.request_id

    def exemption_list(self) -> tuple[RequestedExemption, ...]:
        return self._call(self._client.exemption_list).requests

    def ledger(self, days: int) -> LedgerReport:
        return self._call(lambda: self._client.ledger(days))
