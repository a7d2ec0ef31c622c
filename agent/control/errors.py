"""Every way a control call can fail, in one tree shared by server and client.

This module owns the exceptions of the control API's two ends, so that the
tray, which imports only the client, and the agent, which raises refusals
from its commands, name failures the same way. It imports nothing but the
standard library.

::

    ControlError(code, message)     refusals from the agent carry a wire code
    │                               (overt.wire.control.ErrorCode): bad_request,
    │                               unknown_command, not_allowed, unavailable,
    │                               internal, busy
    ├── AgentNotRunning             no socket, or nothing listening on it
    ├── AgentAlreadyRunning         ControlServer.start: a live agent serves there
    ├── ControlSetupError           ControlServer.start: the directory or the
    │                               path cannot be used safely
    └── ControlProtocolError        the peer broke the protocol, timed out or
        │                           hung up without an answer
        └── UnexpectedAnswer        an answer whose result is not the command's
                                    result object (another version of overt)
"""

from __future__ import annotations

import os
from pathlib import Path


class ControlError(Exception):
    """A command was refused, or the control channel failed; ``code`` says how."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class AgentNotRunning(ControlError):
    """Nobody serves the control socket: it is missing or refuses connections."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__("not_running", f"the agent is not running ({why} at {os.fspath(path)})")
        self.path = Path(path)
        #: "no socket" or "nothing listening", for messages.
        self.why = why


class AgentAlreadyRunning(ControlError):
    """Another live agent already serves this socket path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            "already_running", f"another agent is already listening at {os.fspath(path)}"
        )
        self.path = Path(path)


class ControlSetupError(ControlError):
    """The socket's directory or path cannot be used safely."""

    def __init__(self, message: str) -> None:
        super().__init__("setup", message)


class ControlProtocolError(ControlError):
    """The other side broke the wire format, timed out or hung up."""

    def __init__(self, message: str, code: str = "protocol") -> None:
        super().__init__(code, message)


class UnexpectedAnswer(ControlProtocolError):
    """The agent answered, but its result is not the command's result object;
    ``message`` names the first field that is wrong."""
