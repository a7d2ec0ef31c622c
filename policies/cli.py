"""``overt policy ...``: IT tooling for keys, signing, verifying and showing policies.

Exit status: 0 on success; 1 when a file is rejected or invalid (one line on
stderr says why); 2 on a usage error. Warnings (``warning: ...`` on stderr,
from ``sign`` and ``show``) do not change the exit status. This module is an entry point: it reads
the clock and the disk, then hands bytes to :mod:`policies.verify` and
:mod:`policies.store`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from overt.files import atomic_write
from policies.cli_args import UsageError, trusted_signers
from policies.envelope import MAX_POLICY_BYTES, parse_envelope, strict_json
from policies.errors import PolicyError
from policies.keys import (
    keyid_of,
    load_private_key,
    load_public_key,
    public_key_model,
    write_keypair,
)
from policies.model import POLICY_PAYLOAD_TYPE, Policy, policy_json_schema
from policies.store import TrustStore, accept_policy_file, read_file_limited
from policies.summary import describe, identity_warnings
from policies.verify import (
    CLOCK_SKEW,
    DeviceScope,
    parse_policy_payload,
    sign_policy,
    verify_policy,
    verify_signatures,
)

_VERIFY_EPILOG = """\
scope checks: an agent always checks both its tenant and its device group.
Here, without --tenant the tenant is not checked, and without --device-group
the device group is not checked; the output says which checks were skipped.

rollback protection: with --state DIR the accepted version, payload hash and
signer set are kept in DIR (created if needed), so a later run refuses an
older version, or the same version with different content, and follows signer
rotations. Without --state each run starts from the --trust keys alone.
"""


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs a zone, e.g. {value}Z")
    return parsed


def _when(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Keys, signing, verifying and showing Overt capture policies."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = commands.add_parser(
        "keygen",
        help="generate an Ed25519 keypair: NAME.key (mode 0600) and NAME.pub",
        description="Generate an Ed25519 keypair. NAME.key is the private key (PKCS#8 PEM, "
        "mode 0600; keep it offline); NAME.pub is the public key to pin on devices. "
        "Existing files are never overwritten.",
    )
    keygen.add_argument("--out", required=True, metavar="NAME", help="path prefix for the files")

    pubkey = commands.add_parser(
        "pubkey",
        help="print a public key as JSON for a policy's next_signers or grant_signers",
    )
    pubkey.add_argument("public_key", metavar="KEY.pub")
    pubkey.add_argument("--name", default="", help="a label stored with the key")

    sign = commands.add_parser(
        "sign",
        help="validate a policy and sign its exact bytes",
        description="Validate POLICY.json against the policy model, then sign its exact bytes "
        "with every --key. An invalid policy is refused, not signed.",
    )
    sign.add_argument("policy", metavar="POLICY.json")
    sign.add_argument("--key", action="append", required=True, metavar="KEY.key")
    sign.add_argument("--out", required=True, metavar="SIGNED.json")

    verify = commands.add_parser(
        "verify",
        help="verify a signed policy as a device would",
        description="Verify a signed policy: signatures by a threshold of the --trust keys, "
        "payload type, schema, scope, version and validity window.",
        epilog=_VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("signed", metavar="SIGNED.json")
    _add_trust_arguments(verify, required=True)
    verify.add_argument("--state", metavar="DIR", help="trust state directory (see below)")
    verify.add_argument("--tenant", help="the device's tenant (default: not checked)")
    verify.add_argument("--device-group", help="the device's group (default: not checked)")

    show = commands.add_parser(
        "show",
        help="summarise a policy in plain language",
        description="Summarise a signed policy (or an unsigned draft). The signature is checked "
        "only when --trust is given; the output says so.",
    )
    show.add_argument("signed", metavar="SIGNED.json")
    _add_trust_arguments(show, required=False)

    stamp = commands.add_parser(
        "stamp",
        help="set a draft's version, issued_at and expires, ready to sign",
        description="Copy an unsigned policy draft to OUT with issued_at set to now, expires "
        "--valid-days later and, with --version, a new version. The rest of the document is "
        "kept as written. The result is validated before it is written.",
    )
    stamp.add_argument("policy", metavar="POLICY.json")
    stamp.add_argument("--version", type=int, metavar="N", help="the new policy version")
    stamp.add_argument(
        "--valid-days",
        type=float,
        required=True,
        metavar="DAYS",
        help="how long the policy stays valid; keep it short (days to weeks)",
    )
    stamp.add_argument("--out", required=True, metavar="OUT.json")

    commands.add_parser("schema", help="print the policy JSON Schema")
    return parser


def _add_trust_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--trust",
        action="append",
        required=required,
        default=None,
        metavar="KEY.pub",
        help="a trusted policy signing public key (repeatable)",
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=1,
        metavar="N",
        help="distinct trusted keys that must have signed (default 1)",
    )
    parser.add_argument(
        "--now",
        type=_timestamp,
        default=None,
        metavar="TIME",
        help="check validity as of this ISO 8601 time instead of the current time",
    )


def _now(args: argparse.Namespace) -> datetime:
    now: datetime | None = args.now
    return now if now is not None else datetime.now(UTC)


def _keygen(args: argparse.Namespace) -> int:
    _, keyid = write_keypair(args.out)
    print(f"key id {keyid}")
    print(f"private key: {args.out}.key (mode 0600; keep it offline, never commit it)")
    print(f"public key:  {args.out}.pub")
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    model = public_key_model(load_public_key(args.public_key), name=args.name)
    print(json.dumps(model.model_dump(exclude_defaults=True), indent=2))
    return 0


def _sign(args: argparse.Namespace) -> int:
    source, out = Path(args.policy), Path(args.out)
    if out.exists() and source.exists() and out.samefile(source):
        raise UsageError("--out must not be the policy file itself")
    data = read_file_limited(source, MAX_POLICY_BYTES)
    try:
        policy = parse_policy_payload(data)
    except PolicyError as exc:
        raise PolicyError(f"refusing to sign {source}: {exc}") from exc
    keys = [load_private_key(path) for path in args.key]
    keyids = [keyid_of(k) for k in keys]
    if len(set(keyids)) != len(keyids):
        raise UsageError("the same --key was given twice")
    atomic_write(out, sign_policy(data, keys))
    print(
        f"signed policy version {policy.version} (expires {_when(policy.expires)}) with "
        f"{len(keys)} key(s) → {out}"
    )
    for keyid in keyids:
        print(f"  key id {keyid}")
    if policy.expires <= datetime.now(UTC):
        warning = f"warning: this policy has already expired ({_when(policy.expires)})"
        print(warning, file=sys.stderr)
    _warn_identity(policy)
    return 0


def _warn_identity(policy: Policy) -> None:
    for warning in identity_warnings(policy):
        print(f"warning: {warning}", file=sys.stderr)


def _stamp(args: argparse.Namespace) -> int:
    source, out = Path(args.policy), Path(args.out)
    if out.exists() and source.exists() and out.samefile(source):
        raise UsageError("--out must not be the policy file itself")
    if not 0 < args.valid_days <= 3650:
        raise UsageError("--valid-days must be more than 0 and at most 3650")
    if args.version is not None and args.version < 1:
        raise UsageError("--version must be at least 1")
    data = read_file_limited(source, MAX_POLICY_BYTES)
    document = strict_json(data, str(source))
    if not isinstance(document, dict) or "payloadType" in document:
        raise PolicyError(f"{source} is not an unsigned policy draft")
    now = datetime.now(UTC).replace(microsecond=0)
    document["issued_at"] = _when(now)
    document["expires"] = _when(now + timedelta(days=args.valid_days))
    if args.version is not None:
        document["version"] = args.version
    stamped = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
    try:
        policy = parse_policy_payload(stamped)
    except PolicyError as exc:
        raise PolicyError(f"{source} is not a valid policy once stamped: {exc}") from exc
    atomic_write(out, stamped)
    print(f"policy version {policy.version}, valid until {_when(policy.expires)} → {out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    trusted = trusted_signers(args.trust, args.threshold)
    device = DeviceScope(tenant=args.tenant, group=args.device_group)
    now = _now(args)
    if args.state is not None:
        store = TrustStore(args.state)
        policy, state = accept_policy_file(args.signed, store, trusted, device, now)
    else:
        data = read_file_limited(args.signed, MAX_POLICY_BYTES)
        policy, state = verify_policy(data, trusted, None, device, now)
    print(
        f"OK: policy version {policy.version} for tenant {policy.scope.tenant}, "
        f"expires {_when(policy.expires)}"
    )
    if args.tenant is None:
        print("note: tenant not checked (no --tenant given)")
    if args.device_group is None:
        print(
            "note: device group not checked (no --device-group given); the policy covers "
            + ", ".join(policy.scope.device_groups)
        )
    if policy.next_signers is not None and state.signers == policy.next_signers:
        print(
            f"signers: later policies need {state.signers.threshold} of "
            f"{len(state.signers.keys)} keys named in this policy's next_signers"
        )
    if args.state is not None:
        print(f"trust state kept in {args.state}")
    return 0


def _show(args: argparse.Namespace) -> int:
    data = read_file_limited(args.signed, MAX_POLICY_BYTES)
    document = strict_json(data, str(args.signed))
    header: list[str]
    if isinstance(document, dict) and "payloadType" not in document and "payload" not in document:
        if args.trust:
            raise PolicyError(f"{args.signed} is an unsigned policy draft; there is no signature")
        policy = parse_policy_payload(data)
        header = ["UNSIGNED policy draft (not a signed file; sign it with `sign`)"]
    else:
        envelope = parse_envelope(data, MAX_POLICY_BYTES)
        if args.trust:
            trusted = trusted_signers(args.trust, args.threshold)
            valid = verify_signatures(envelope, trusted, "policy")
            header = [
                f"Signature: OK ({len(valid)} distinct trusted key(s); {trusted.threshold} "
                "required)"
            ]
        else:
            header = ["Signature: NOT checked (pass --trust KEY.pub to check it)"]
        if envelope.payload_type != POLICY_PAYLOAD_TYPE:
            raise PolicyError(f"payload type {envelope.payload_type!r} is not a policy")
        policy = parse_policy_payload(envelope.payload)
    header.append(_status(policy, _now(args)))
    print("\n".join(header))
    print()
    print(describe(policy), end="")
    _warn_identity(policy)
    return 0


def _status(policy: Policy, now: datetime) -> str:
    if policy.issued_at > now + CLOCK_SKEW:
        return f"Status at {_when(now)}: NOT YET VALID (from {_when(policy.issued_at)})"
    if now >= policy.expires:
        return f"Status at {_when(now)}: EXPIRED (at {_when(policy.expires)})"
    return f"Status at {_when(now)}: within its validity window"


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_json_schema(), indent=2))
    return 0


_HANDLERS = {
    "keygen": _keygen,
    "pubkey": _pubkey,
    "stamp": _stamp,
    "sign": _sign,
    "verify": _verify,
    "show": _show,
    "schema": _schema,
}


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: Sequence[str], prog: str = "overt policy") -> int:
    parser = _parser(prog)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help exits 0, usage errors exit 2
        return exc.code if isinstance(exc.code, int) else 2
    command = f"{prog} {args.command}"
    try:
        return _HANDLERS[args.command](args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        outcome = "rejected" if args.command in {"verify", "show"} else "error"
        print(f"{command}: {outcome} ({exc.label}): {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog=os.path.basename(sys.argv[0])))
