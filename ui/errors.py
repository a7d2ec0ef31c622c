"""Every way the tray and its helpers can fail, in one tree.

::

    TrayError                 base of everything ``ui`` raises on purpose
    ├── AgentUnreachable      no agent answers on the control socket (not
    │                         running, socket missing, connection refused,
    │                         timed out); the tray shows "agent not running"
    ├── AgentRefused          the agent answered with an error (``code`` is the
    │                         control API's: bad_request, not_allowed,
    │                         unavailable, internal, ...; ``message`` is for a
    │                         person)
    ├── BadReply              the agent answered something its result model
    │                         (overt.wire.control_results) does not accept
    ├── LaunchError           the agent could not be started
    └── AutostartError        an autostart file cannot be generated or written

Foreign exceptions (``agent.control.errors``' ``AgentNotRunning``,
``UnexpectedAnswer`` and ``ControlError``, ``OSError``) are wrapped where
they enter ``ui``, with the original as ``__cause__``.
"""

from __future__ import annotations


class TrayError(Exception):
    """Base of every error raised by ``ui``."""


class AgentUnreachable(TrayError):
    """No agent answers on the control socket."""


class AgentRefused(TrayError):
    """The agent refused a command; ``code`` is the control API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadReply(TrayError):
    """The agent's answer does not have the documented shape."""


class LaunchError(TrayError):
    """The agent process could not be started."""


class AutostartError(TrayError):
    """An autostart file cannot be generated, written or removed."""
