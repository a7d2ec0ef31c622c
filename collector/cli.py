"""``overt collector ...``: run the collector and manage credentials on its data directory.

Commands::

    serve         --data DIR [--host H] [--port P] [--grant-key ADMIN.key]
                  [--policy SIGNED.json ...] [bounds: --max-connections N
                  --header-timeout S --keep-alive S --max-requests N
                  --max-device-requests N --device-rate R --device-burst N --address-rate R
                  --address-burst N --body-timeout S]
    enroll-token  --data DIR --tenant T --group G [--expires-minutes N]
    admin-token   --data DIR [--name NAME]
    admin-user    --data DIR --name NAME      (password on stdin, or asked twice)

``enroll-token``, ``admin-token`` and ``admin-user`` work on the data
directory directly (beside a running collector, too) and print the new
secret on stdout, once; it is stored only hashed. Exit status: 0 on success,
1 when the command fails (one line on stderr says why), 2 on a usage error.
This module is an entry point: it reads arguments, files and the terminal,
configures logging and builds the typed configuration.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collector.config import (
    DEFAULT_PORT,
    Admission,
    CollectorConfig,
    ConnectionLimits,
    RateLimit,
    ServeConfig,
    StorageConfig,
)
from collector.errors import CollectorError, ConfigError
from collector.service import CollectorService
from collector.store.sqlite import SQLiteStorage
from collector.web.config import AdminPagesConfig
from policies.errors import PolicyError
from policies.keys import load_private_key


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="The Overt collector: ingest, enrollment, policies, exemptions."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the collector (HTTP) on a data directory",
        description="Serve the collector API. Prints one line once it listens and writes "
        "DIR/collector.json (url, pid); SIGTERM or Ctrl+C stops it cleanly.",
    )
    serve.add_argument("--data", required=True, type=Path, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"0 lets the OS choose (default {DEFAULT_PORT})",
    )
    serve.add_argument(
        "--grant-key",
        type=Path,
        metavar="ADMIN.key",
        help="admin Ed25519 key (overt policy keygen) that signs exemption grants",
    )
    serve.add_argument(
        "--policy",
        type=Path,
        action="append",
        default=[],
        metavar="SIGNED.json",
        help="a signed policy to store at start (repeatable)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument(
        "--no-admin-pages",
        action="store_true",
        help="serve the API only, without the admin web pages under /admin/",
    )
    _bounds_arguments(serve)

    token = commands.add_parser(
        "enroll-token",
        help="create a single-use enrollment token for one device",
    )
    token.add_argument("--data", required=True, type=Path, metavar="DIR")
    token.add_argument("--tenant", required=True)
    token.add_argument("--group", required=True)
    token.add_argument("--expires-minutes", type=int, default=60, metavar="N")

    admin_token = commands.add_parser("admin-token", help="create an admin API bearer token")
    admin_token.add_argument("--data", required=True, type=Path, metavar="DIR")
    admin_token.add_argument("--name", default="admin", help="who the token is for")

    user = commands.add_parser(
        "admin-user",
        help="create an admin user for the web pages, or change its password",
        description="The password is read from stdin when it is not a terminal, "
        "otherwise asked for twice. It is stored as an scrypt hash with a per-user salt.",
    )
    user.add_argument("--data", required=True, type=Path, metavar="DIR")
    user.add_argument("--name", required=True)
    return parser


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value

    parse.__name__ = kind.__name__
    return parse


def _bounds_arguments(serve: argparse.ArgumentParser) -> None:
    connections, admission = ConnectionLimits(), Admission()
    device, address = admission.device_rate, admission.address_rate
    assert device is not None
    assert address is not None
    bounds = serve.add_argument_group(
        "bounds", "what the collector holds and starts for its clients (docs/PROTOCOL.md)"
    )
    add = bounds.add_argument
    add(
        "--max-connections",
        type=_positive(int),
        default=connections.max_connections,
        metavar="N",
        help="open connections at most; at the cap the longest-idle one is closed "
        "(lowered to what the file limit allows; default %(default)s)",
    )
    add(
        "--header-timeout",
        type=_positive(float),
        default=connections.header_timeout_seconds,
        metavar="S",
        help="seconds for a connection to send a complete request head (default %(default)s)",
    )
    add(
        "--keep-alive",
        type=_positive(int),
        default=connections.keep_alive_seconds,
        metavar="S",
        help="seconds an idle kept-alive connection stays open (default %(default)s)",
    )
    add(
        "--max-requests",
        type=_positive(int),
        default=admission.max_requests,
        metavar="N",
        help="requests in flight at most; more get 503 with Retry-After (default %(default)s)",
    )
    add(
        "--max-device-requests",
        type=_positive(int),
        default=admission.max_device_requests,
        metavar="N",
        help="requests in flight at most from one device; more get 429 with Retry-After "
        "(default %(default)s)",
    )
    add(
        "--device-rate",
        type=_positive(float),
        default=device.per_second,
        metavar="R",
        help="requests per second per device, then 429 with Retry-After; 0: no limit "
        "(default %(default)s)",
    )
    add("--device-burst", type=_positive(int), default=device.burst, metavar="N")
    add(
        "--address-rate",
        type=_positive(float),
        default=address.per_second,
        metavar="R",
        help="requests per second per client address that are not an authenticated "
        "device's or admin's (strangers, enrollment, admin pages, failed authentication); "
        "0: no limit "
        "(default %(default)s)",
    )
    add("--address-burst", type=_positive(int), default=address.burst, metavar="N")
    add(
        "--body-timeout",
        type=_positive(float),
        default=admission.body_idle_seconds,
        metavar="S",
        help="a body that sends nothing for this long gets 408 (default %(default)s)",
    )


def _rate(per_second: float, burst: int) -> RateLimit | None:
    return RateLimit(per_second, max(1, burst)) if per_second > 0 else None


def _local_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _read_password(name: str) -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigError("no password on stdin")
        return password
    first = getpass.getpass(f"password for {name}: ")
    second = getpass.getpass("again: ")
    if first != second:
        raise ConfigError("the two passwords differ")
    return first


def _open_service(data: Path) -> CollectorService:
    storage = SQLiteStorage(StorageConfig(data_dir=data, exclusive=False))
    return CollectorService(storage, CollectorConfig(storage=storage.config))


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from collector.server import serve

        grant_key = None
        if args.grant_key is not None:
            try:
                grant_key = load_private_key(args.grant_key)
            except PolicyError as exc:
                raise ConfigError(str(exc)) from exc
        config = ServeConfig(
            collector=CollectorConfig(
                storage=StorageConfig(data_dir=args.data),
                grant_key=grant_key,
                admin_pages=None if args.no_admin_pages else AdminPagesConfig(),
                admission=Admission(
                    max_requests=max(1, args.max_requests),
                    max_device_requests=max(1, args.max_device_requests),
                    device_rate=_rate(args.device_rate, args.device_burst),
                    address_rate=_rate(args.address_rate, args.address_burst),
                    body_idle_seconds=args.body_timeout,
                ),
            ),
            host=args.host,
            port=args.port,
            policy_files=tuple(args.policy),
            log_level=args.log_level,
            connections=ConnectionLimits(
                max_connections=max(1, args.max_connections),
                header_timeout_seconds=args.header_timeout,
                keep_alive_seconds=args.keep_alive,
            ),
        )
        return serve(config)

    if args.command == "admin-user":
        password = _read_password(args.name)
        service = _open_service(args.data)
        try:
            service.accounts.set_admin_password(args.name, password, _local_actor())
        finally:
            service.close()
        print(f"admin user {args.name} saved", file=sys.stderr)
        return 0

    service = _open_service(args.data)
    try:
        if args.command == "enroll-token":
            new = service.accounts.create_enrollment_token(
                args.tenant, args.group, args.expires_minutes, _local_actor()
            )
            print(new.token)
            print(
                f"single-use token {new.record.token_id} for tenant {args.tenant}, group "
                f"{args.group}; expires in {args.expires_minutes} minute(s)",
                file=sys.stderr,
            )
        elif args.command == "admin-token":
            print(service.accounts.create_admin_token(args.name, _local_actor()))
            print(f"admin token for {args.name}; it is shown only this once", file=sys.stderr)
    finally:
        service.close()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "overt collector") -> int:
    parser = _parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=getattr(logging, str(getattr(args, "log_level", "warning")).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run(args)
    except CollectorError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
