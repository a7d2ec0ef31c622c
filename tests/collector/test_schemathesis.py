"""Schema-driven fuzzing of the real collector process against its own ``/openapi.json``.

Schemathesis reads the document the running collector serves and, for every
operation, sends the examples, the coverage cases (each boundary, each
missing or wrong part, methods the path does not allow) and generated
requests, then runs every check it has: no 5xx, every status and header
and answer body as documented, what the schema allows is accepted, what it
refuses is refused, authentication enforced, 405 with ``Allow``.

Requests are authenticated the way real clients do it: :class:`CollectorAuth`
signs each device request exactly as sent (method, target, body) with an
enrolled test device's key and a fresh nonce, and gives admin requests the
bearer token. Schemathesis strips it for its own probes of authentication.

Two request bodies hold what JSON Schema cannot state: a sealed batch (a
device signature over its header and ciphertext) and a signed policy (its
base64 payload must be a valid, unexpired policy). Generated ones are
refused with 422 as the document says, so "positive data is accepted" is
not asked of those two operations; every other check is.

The collector runs with its rate limits off (the fuzzer is one address and
one device sending as fast as it can); 429 is documented on every operation
all the same. ``MAX_EXAMPLES`` per operation keeps the run to about a minute.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from schemathesis.specs.openapi.checks import positive_data_acceptance

from overt.wire.sealed import MEDIA_TYPE
from policies.keys import public_key_model, write_keypair
from tests.policies._build import policy_doc, sign

from ._build import Device
from .test_process import RunningCollector, _enroll, _service, start_collector

MAX_EXAMPLES = 150
#: Operations whose bodies JSON Schema cannot fully state (see the module docstring).
UNSTATABLE_BODIES = {("POST", "/v1/batches"), ("PUT", "/v1/admin/policy")}
DEVICE_PATHS = frozenset(
    {"/v1/batches", "/v1/policy", "/v1/grants", "/v1/exemptions", "/v1/erasure", "/v1/consent"}
)

# A sealed batch is bytes on the wire, like application/octet-stream.
schemathesis.serializer.alias(MEDIA_TYPE, "application/octet-stream")

#: What the run did, for the summary at the end: requests per operation and status.
SENT: Counter[tuple[str, int]] = Counter()


class CollectorAuth(requests.auth.AuthBase):
    """Signs device requests as sent, with a fresh nonce; a bearer token on admin requests."""

    def __init__(self, device: Device, admin_token: str, omit: str | None = None) -> None:
        self.device = device
        self.admin_token = admin_token
        #: A header the case is about to go without (Schemathesis's "missing header" cases).
        self.omit = omit

    def without(self, header: str | None) -> CollectorAuth:
        return CollectorAuth(self.device, self.admin_token, header)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = urlsplit(request.url or "").path
        if path.startswith("/v1/admin/"):
            request.headers["Authorization"] = f"Bearer {self.admin_token}"
        elif path in DEVICE_PATHS:
            body = request.body or b""
            if isinstance(body, str):
                body = body.encode("utf-8")
            assert isinstance(body, bytes), "a streamed body cannot be signed"
            now_ms = int(time.time() * 1000)
            request.headers.update(
                self.device.sign(request.method or "GET", request.path_url, body, now_ms)
            )
        if self.omit is not None:
            request.headers.pop(self.omit, None)
        return request


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningCollector, Any]]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    key, _ = write_keypair(tmp / "admin")
    admin_key = {
        **public_key_model(key.public_key(), "collector").model_dump(),
        "categories": ["bandwidth", "sensitive", "battery", "other"],
    }
    policy = tmp / "policy.signed.json"
    policy.write_bytes(sign(policy_doc(1, grant_signers=[admin_key]), ["A"]))
    data = tmp / "collector"
    running = start_collector(
        data,
        "--device-rate",
        "0",
        "--address-rate",
        "0",
        "--policy",
        str(policy),
        "--grant-key",
        str(tmp / "admin.key"),
    )
    try:
        [device] = _enroll(running.url, data, 1)
        service = _service(data)
        try:
            token = service.accounts.create_admin_token("schemathesis", "cli:test")
        finally:
            service.close()
        yield running, CollectorAuth(device, token)
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def collector_schema(fuzzed: tuple[RunningCollector, Any]) -> Any:
    running, _ = fuzzed
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    return schema


@pytest.fixture(scope="module")
def auth(fuzzed: tuple[RunningCollector, Any]) -> Any:
    return fuzzed[1]


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not SENT:
        return
    by_status: Counter[int] = Counter()
    for (_, status), count in SENT.items():
        by_status[status] += count
    reporter.write_line(
        f"schemathesis: {sum(SENT.values())} requests; statuses {dict(sorted(by_status.items()))}"
    )
    for operation in sorted({op for op, _ in SENT}):
        counts = {status: n for (op, status), n in sorted(SENT.items()) if op == operation}
        if any(status != 405 for status in counts):
            reporter.write_line(f"  {operation}: {counts}")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis names each operation's subtest through Node._nodeid, which
    # pytest 9 no longer has; give it the attribute it reads and writes.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("collector_schema")


@schema.parametrize()
def test_the_collector_does_what_its_openapi_document_says(case: Any, auth: Any) -> None:
    load_all_checks()
    meta = case.meta
    data = meta.phase.data if meta is not None else None
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        # The headers are the ones under test (credentials left out or wrong): send as made.
        auth = None
    elif (
        isinstance(data, CoveragePhaseData)
        and data.scenario == CoverageScenario.MISSING_PARAMETER
        and data.parameter_location == ParameterLocation.HEADER
    ):
        auth = auth.without(data.parameter)
    excluded = []
    if (case.method.upper(), case.path) in UNSTATABLE_BODIES:
        excluded.append(positive_data_acceptance)
    kwargs = {} if auth is None else {"auth": auth}
    response = case.call_and_validate(
        checks=list(CHECKS.get_all()), excluded_checks=excluded, **kwargs
    )
    SENT[(f"{case.method.upper()} {case.path}", response.status_code)] += 1
    assert response.status_code < 500


def test_the_fuzzer_reached_every_operation(collector_schema: Any) -> None:
    # Runs after the fuzzing above (pytest keeps the file's order).
    operations = {
        f"{method.upper()} {path}"
        for path, items in collector_schema.raw_schema["paths"].items()
        for method in items
    }
    reached = {op for op, _ in SENT}
    assert operations <= reached or not SENT, operations - reached
