"""The agent's local control API: the one way into a running agent.

The tray and ``overt status|pause|…`` reach the agent through a Unix domain
socket in the user's runtime directory carrying one JSON line each way. The
messages are ``overt.wire.control``'s models (``docs/CONTROL.md`` is
generated from them); this package carries them:

- ``errors``: the exceptions of both ends, in one tree;
- ``client``: :class:`ControlClient`, one typed call per command — the only
  module of the agent the tray imports (with ``errors``);
- ``dispatch``: :class:`ControlTarget` (what the API drives) and one
  request line in, one response line out, on a fixed set of command threads;
- ``socket_file``: the socket's directory, lock and file;
- ``server``: :class:`ControlServer`, one loop thread serving every
  connection without blocking.

What a command *does* is not here: the target decides (the adapter to the
running agent is ``agent.control_target``). Nothing in this package imports
Qt or anything of the agent that could load a capture backend.

The names below are re-exported for the agent's own wiring
(``agent.service``, ``agent.cli``) and its tests.
"""

from agent.control.client import DEFAULT_CLIENT_TIMEOUT, ControlClient, default_socket_path
from agent.control.dispatch import ControlTarget, encode_response, handle_request
from agent.control.errors import (
    AgentAlreadyRunning,
    AgentNotRunning,
    ControlError,
    ControlProtocolError,
    ControlSetupError,
    UnexpectedAnswer,
)
from agent.control.server import COMMAND_THREADS, MAX_CONNECTIONS, ControlServer

__all__ = [
    "COMMAND_THREADS",
    "DEFAULT_CLIENT_TIMEOUT",
    "MAX_CONNECTIONS",
    "AgentAlreadyRunning",
    "AgentNotRunning",
    "ControlClient",
    "ControlError",
    "ControlProtocolError",
    "ControlServer",
    "ControlSetupError",
    "ControlTarget",
    "UnexpectedAnswer",
    "default_socket_path",
    "encode_response",
    "handle_request",
]
