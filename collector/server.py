"""``overt collector serve``: the collector app on uvicorn, announced and stoppable.

:func:`serve` binds the listening socket itself (so ``--port 0`` works and
the chosen port is known), builds the app, stores the ``--policy`` files,
and runs uvicorn on that socket. Once uvicorn is accepting connections it
prints one line to stdout::

    overt collector listening on http://127.0.0.1:PORT (data DIR)

and writes ``DIR/collector.json`` atomically: ``{"url", "host", "port",
"pid", "data_dir"}``. SIGTERM and SIGINT stop it cleanly: no new
connections, requests in flight finish (for up to ``GRACEFUL_SECONDS``),
the store's writer drains and closes, ``collector.json`` is removed, and
the process exits 0.

What the process holds for its clients is bounded by
:class:`~collector.config.ConnectionLimits` (:mod:`collector.connections`:
a connection cap that closes idle connections to make room, a deadline for
request heads, uvicorn's keep-alive timeout); what it starts, by the app's
:class:`~collector.config.Admission` (:mod:`collector.admission`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from collector.api import create_app
from collector.config import ServeConfig
from collector.connections import guard_for, guarded_protocol
from collector.errors import ConfigError, ConflictError
from collector.service import CollectorService
from overt.files import atomic_write
from policies.envelope import MAX_POLICY_BYTES
from policies.errors import PolicyError
from policies.store import read_file_limited

logger = logging.getLogger(__name__)

STATE_FILE = "collector.json"
GRACEFUL_SECONDS = 10


class _Server(uvicorn.Server):
    """uvicorn, announcing itself once it accepts connections and exiting 0 on a signal."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after shutting down; a collector that
        # stopped cleanly on SIGTERM exits 0 instead.
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 lets the OS choose."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(False)
    return sock


def load_policies(service: CollectorService, config: ServeConfig) -> None:
    """Store each ``--policy`` file; a malformed or expired one stops the start."""
    for path in config.policy_files:
        try:
            data = read_file_limited(path, MAX_POLICY_BYTES)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            record, outcome = service.policies.put_policy(data, "cli:serve")
        except ConflictError as exc:
            logger.warning("policy %s not stored: %s", path, exc.detail)
            continue
        except Exception as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        logger.info("policy %s: %s v%d %s", path, record.tenant, record.version, outcome.value)


def serve(config: ServeConfig, out: TextIO = sys.stdout) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    data_dir = config.collector.storage.data_dir
    state_path = data_dir / STATE_FILE
    try:
        app = create_app(config.collector)
    except BaseException:
        sock.close()
        raise
    service: CollectorService = app.state.service
    try:
        load_policies(service, config)
    except BaseException:
        service.close()
        sock.close()
        raise

    wildcard = config.host in {"0.0.0.0", "::"}  # noqa: S104 (a comparison, not a bind)
    url = _url(host if wildcard else config.host, port)

    def announce() -> None:
        state = {
            "url": url,
            "host": host,
            "port": port,
            "pid": os.getpid(),
            "data_dir": str(data_dir),
        }
        atomic_write(state_path, json.dumps(state).encode("utf-8") + b"\n", 0o600)
        print(f"overt collector listening on {url} (data {data_dir})", file=out, flush=True)

    limits = config.connections
    guard = guard_for(limits)
    uv_config = uvicorn.Config(
        app,
        log_config=None,
        log_level=config.log_level,
        access_log=False,
        lifespan="on",
        # httptools and uvloop (C) when installed, else h11 and asyncio; with
        # the connection cap and the header deadline either way.
        http=guarded_protocol(AutoHTTPProtocol, guard),
        loop="auto",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        timeout_keep_alive=limits.keep_alive_seconds,
        # Not uvicorn's limit_concurrency: it counts idle connections too, so
        # idle strangers would turn every upload into a 503. The app caps the
        # requests in flight (Admission.max_requests), the guard connections.
        limit_concurrency=None,
        backlog=2048,
    )
    server = _Server(uv_config, announce)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            state_path.unlink()
    logger.info("collector stopped")
    return 0
