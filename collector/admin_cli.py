"""``overt admin ...``: the collector's admin API from a terminal (httpx).

Commands (``docs/PROTOCOL.md``, admin endpoints)::

    requests [--status pending|approved|denied]    exemption requests
    approve ID [--days N | --until ISO]            sign a grant for a request
    deny ID --reason R                             deny, with a reason
    devices                                        enrolled devices
    revoke DEVICE_ID                               refuse a device from now on
    audit [--limit N]                              the audit log, newest first
    enroll-token --tenant T --group G [--expires-minutes N]
    tokens                                         enrollment tokens issued
    policy-put FILE                                store a signed policy

Global options: ``--url URL`` (or ``OVERT_COLLECTOR_URL``), ``--token-file F``
(or the token itself in ``OVERT_ADMIN_TOKEN``), ``--json`` to print the
collector's JSON answer as is. Exit status: 0 on success; 1 when the
collector refuses (its error code and detail are printed) or cannot be
reached; 2 on a usage error. The token is never printed or logged.

:func:`main` takes an optional ``httpx.Client`` so tests can hand it one
bound to an in-process app.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from collector.errors import AdminClientError
from policies.cli_args import UsageError
from policies.envelope import MAX_POLICY_BYTES
from policies.errors import PolicyError
from policies.store import read_file_limited

TOKEN_ENV = "OVERT_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a secret)
URL_ENV = "OVERT_COLLECTOR_URL"
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Exemption requests, devices, enrollment and audit (admin API)."
    )
    parser.add_argument("--url", help=f"the collector's URL (default: ${URL_ENV})")
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help=f"a file holding the admin token (default: ${TOKEN_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON answer as is")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    requests = commands.add_parser("requests", help="list exemption requests")
    requests.add_argument("--status", choices=["pending", "approved", "denied"])

    approve = commands.add_parser("approve", help="approve a request: the collector signs a grant")
    approve.add_argument("request_id", metavar="ID")
    until = approve.add_mutually_exclusive_group()
    until.add_argument("--days", type=int, metavar="N", help="grant lifetime in days")
    until.add_argument("--until", metavar="ISO", help="grant expiry, e.g. 2027-01-31T00:00:00Z")

    deny = commands.add_parser("deny", help="deny a request, with a reason the employee sees")
    deny.add_argument("request_id", metavar="ID")
    deny.add_argument("--reason", required=True)

    commands.add_parser("devices", help="list enrolled devices")
    revoke = commands.add_parser("revoke", help="revoke a device")
    revoke.add_argument("device_id", metavar="DEVICE_ID")

    audit = commands.add_parser("audit", help="show the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)

    token = commands.add_parser("enroll-token", help="create a single-use enrollment token")
    token.add_argument("--tenant", required=True)
    token.add_argument("--group", required=True)
    token.add_argument("--expires-minutes", type=int, default=60, metavar="N")

    commands.add_parser("tokens", help="list enrollment tokens and whether they were used")

    policy = commands.add_parser("policy-put", help="store a signed policy on the collector")
    policy.add_argument("file", type=Path, metavar="FILE")
    return parser


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    if args.token_file is not None:
        try:
            text = args.token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {args.token_file}: {exc}") from exc
        token = text.strip().splitlines()[0] if text.strip() else ""
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no admin token: give --token-file F or set {TOKEN_ENV}")
    return token


def _call(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    content: bytes | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    try:
        response = client.request(method, path, json=json_body, content=content, params=params)
    except httpx.HTTPError as exc:
        raise AdminClientError(f"cannot reach the collector: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    if isinstance(body, dict) and "error" in body:
        detail = f": {body.get('detail')}" if body.get("detail") else ""
        raise AdminClientError(f"{response.status_code} {body['error']}{detail}")
    raise AdminClientError(f"the collector answered {response.status_code}")


def _table(rows: list[list[str]], out: TextIO) -> None:
    """A header row and its data rows, in columns; nothing when there are no data rows."""
    if len(rows) < 2:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)


def _when(value: str | None) -> str:
    return value or "-"


def _show(command: str, answer: Any, out: TextIO) -> None:
    if command == "requests":
        rows = [["ID", "STATUS", "CATEGORY", "DEVICE", "DAYS", "REQUESTED", "REASON"]]
        for r in answer["requests"]:
            rows.append(
                [
                    r["request_id"],
                    r["status"],
                    r["category"],
                    r["device_id"],
                    str(r["duration_days"]),
                    r["created_at"],
                    r["reason"].replace("\n", " ")[:80],
                ]
            )
        _table(rows, out)
        if len(rows) == 1:
            print("no exemption requests", file=out)
    elif command == "approve":
        print(
            f"approved {answer['request_id']}: grant {answer['grant_id']} until "
            f"{answer['expires']}",
            file=out,
        )
    elif command == "deny":
        print(f"denied {answer['request_id']}", file=out)
    elif command == "devices":
        rows = [["DEVICE", "TENANT", "GROUP", "LAST SEEN", "POLICY", "BATCHES", "BYTES", "OPEN"]]
        for d in answer["devices"]:
            state = " (revoked)" if d["revoked_at"] else ""
            rows.append(
                [
                    d["device_id"] + state,
                    d["tenant"],
                    d["group"],
                    _when(d["last_seen"]),
                    str(d["policy_version"] or "-"),
                    str(d["batches"]),
                    str(d["bytes"]),
                    str(d["open_requests"]),
                ]
            )
        _table(rows, out)
        if len(rows) == 1:
            print("no devices enrolled", file=out)
    elif command == "revoke":
        print(f"revoked {answer['device_id']}", file=out)
    elif command == "audit":
        for e in answer["events"]:
            detail = json.dumps(e["detail"], sort_keys=True, ensure_ascii=False)
            print(f"{e['at']}  {e['actor']}  {e['action']}  {e['subject']}  {detail}", file=out)
    elif command == "enroll-token":
        print(answer["token"], file=out)
        print(
            f"single-use token {answer['token_id']} for {answer['tenant']}/{answer['group']}, "
            f"expires {answer['expires_at']}",
            file=sys.stderr,
        )
    elif command == "tokens":
        rows = [["TOKEN ID", "TENANT", "GROUP", "EXPIRES", "USED", "DEVICE"]]
        for t in answer["tokens"]:
            rows.append(
                [
                    t["token_id"],
                    t["tenant"],
                    t["group"],
                    t["expires_at"],
                    _when(t["used_at"]),
                    t["device_id"] or "-",
                ]
            )
        _table(rows, out)
    elif command == "policy-put":
        print(
            f"policy {answer['tenant']} version {answer['version']} for "
            f"{', '.join(answer['groups'])}: {answer['status']}",
            file=out,
        )


def _request(args: argparse.Namespace, client: httpx.Client) -> Any:
    command = args.command
    if command == "requests":
        params = {"status": args.status} if args.status else None
        return _call(client, "GET", "/v1/admin/exemptions", params=params)
    if command == "approve":
        body: dict[str, Any] = {}
        if args.days is not None:
            body["duration_days"] = args.days
        if args.until is not None:
            body["expires_at"] = args.until
        return _call(
            client, "POST", f"/v1/admin/exemptions/{args.request_id}/approve", json_body=body
        )
    if command == "deny":
        return _call(
            client,
            "POST",
            f"/v1/admin/exemptions/{args.request_id}/deny",
            json_body={"reason": args.reason},
        )
    if command == "devices":
        return _call(client, "GET", "/v1/admin/devices")
    if command == "revoke":
        return _call(client, "POST", f"/v1/admin/devices/{args.device_id}/revoke")
    if command == "audit":
        return _call(client, "GET", "/v1/admin/audit", params={"limit": args.limit})
    if command == "enroll-token":
        body = {
            "tenant": args.tenant,
            "group": args.group,
            "expires_minutes": args.expires_minutes,
        }
        return _call(client, "POST", "/v1/admin/enrollment-tokens", json_body=body)
    if command == "tokens":
        return _call(client, "GET", "/v1/admin/enrollment-tokens")
    if command == "policy-put":
        try:
            data = read_file_limited(args.file, MAX_POLICY_BYTES)
        except PolicyError as exc:
            raise UsageError(str(exc)) from exc
        return _call(client, "PUT", "/v1/admin/policy", content=data)
    raise UsageError(f"unknown command {command}")


def main(
    argv: Sequence[str] | None = None,
    prog: str = "overt admin",
    *,
    client: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    parser = _parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        token = _token(args, environ)
        url = args.url or environ.get(URL_ENV, "")
        if client is None and not url:
            raise UsageError(f"no collector URL: give --url or set {URL_ENV}")
        headers = {"Authorization": f"Bearer {token}"}
        if client is None:
            with httpx.Client(base_url=url, headers=headers, timeout=_TIMEOUT) as own:
                answer = _request(args, own)
        else:
            client.headers.update(headers)
            answer = _request(args, client)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except AdminClientError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False), file=out)
    else:
        _show(args.command, answer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
