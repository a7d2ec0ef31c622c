"""The control socket's place on disk: its directory, its claim and its file.

This module owns what must be true of the filesystem before and after the
control server listens, so that no other user can reach the socket at any
moment and two agents never serve one path:

- the socket's directory is this user's with mode 0700 (created so, or
  tightened; another user's directory is refused);
- an exclusive ``flock`` on ``<socket>.lock`` next to the socket is held
  while serving: the descriptor is the claim, and closing it (or the
  process dying) releases it;
- a socket that answers a connection belongs to a live agent and is left
  alone (:class:`~agent.control.errors.AgentAlreadyRunning`); a socket file
  nobody listens on is a leftover of a crash and is removed; anything that
  is not a socket is refused, never removed;
- on stop, the socket file is removed only if it is still the one this
  server bound (same device and inode).

It holds no thread and serves nothing (``agent.control.server`` does).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from pathlib import Path

from agent.control.errors import AgentAlreadyRunning, ControlSetupError

log = logging.getLogger(__name__)

#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, 104 on macOS, NUL included.
_MAX_SOCKET_PATH_BYTES = 103


def check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH_BYTES:
        raise ControlSetupError(
            f"the socket path {path} is too long for a Unix socket "
            f"(at most {_MAX_SOCKET_PATH_BYTES} bytes)"
        )


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` 0700, or check that it is this user's and make it 0700."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise ControlSetupError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSetupError(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise ControlSetupError(f"{directory} belongs to another user; refusing to use it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        try:
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise ControlSetupError(f"cannot restrict {directory}: {exc.strerror}") from exc


def claim(path: Path) -> int:
    """Hold an exclusive lock for ``path`` while serving; the descriptor is the claim."""
    import fcntl  # Unix only, like the socket itself

    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ControlSetupError(f"cannot open {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise AgentAlreadyRunning(path) from exc
        raise ControlSetupError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
    return fd


def remove_stale_socket(path: Path) -> None:
    """Leave a live socket alone (raise), remove a dead one, refuse anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSetupError(f"cannot inspect {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSetupError(f"{path} exists and is not a socket; remove it first")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing a stale control socket")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise ControlSetupError(f"cannot check {path}: {exc.strerror or exc}") from exc
    finally:
        probe.close()
    raise AgentAlreadyRunning(path)


# --------------------------------------------------------------------- client


def release_claim(fd: int) -> None:
    """Give up a claim taken with :func:`claim`."""
    os.close(fd)  # closing the descriptor releases the flock


def bound_identity(path: Path) -> tuple[int, int]:
    """The device and inode of the socket file just bound at ``path``."""
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def remove_own_socket(path: Path, bound: tuple[int, int] | None) -> None:
    """Remove ``path`` if it is still the socket file this server bound."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if bound is not None and (info.st_dev, info.st_ino) == bound:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
