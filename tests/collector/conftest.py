"""Fixtures for the collector tests.

- ``clock``: a :class:`MutableClock` at ``NOW``, shared by the app and the
  test (request signatures are made with it, so no test ever sleeps).
- ``config`` / ``app`` / ``client``: the collector built in-process with
  :func:`collector.api.create_app` on a temporary data directory, grant key
  ``KEYS["ADMIN_ALL"]``; ``client`` is a ``TestClient`` (an ``httpx.Client``).
- ``service``: the app's :class:`CollectorService`; ``admin_headers``: a
  fresh admin bearer token; ``enroll``: enrolls a new :class:`Device` over
  HTTP; ``upload``: signs and posts a sealed batch.
- ``running_collector`` lives in ``test_process.py``: a real
  ``python -m overt collector serve`` process.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from collector.api import create_app
from collector.config import CollectorConfig, StorageConfig
from collector.service import CollectorService
from tests.policies._build import KEYS

from ._build import GROUP, TENANT, Device, MutableClock


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's TestClient warns that it would rather use httpx2; it works with httpx.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:starlette.testclient")


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def config(tmp_path: Path, clock: MutableClock) -> CollectorConfig:
    return CollectorConfig(
        storage=StorageConfig(data_dir=tmp_path / "collector"),
        grant_key=KEYS["ADMIN_ALL"],
        clock=clock,
    )


@pytest.fixture
def app(config: CollectorConfig) -> Iterator[FastAPI]:
    application = create_app(config)
    yield application
    application.state.service.close()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://collector.test") as test_client:
        yield test_client


@pytest.fixture
def service(app: FastAPI) -> CollectorService:
    svc: CollectorService = app.state.service
    return svc


@pytest.fixture
def admin_headers(service: CollectorService) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.accounts.create_admin_token('alice', 'cli:test')}"}


Enroll = Callable[..., Device]
_numbers = itertools.count(1)


@pytest.fixture
def enroll(client: TestClient, admin_headers: dict[str, str]) -> Enroll:
    def run(device_id: str | None = None, tenant: str = TENANT, group: str = GROUP) -> Device:
        device = Device(device_id or f"dev-{next(_numbers):04d}", tenant=tenant, group=group)
        token = client.post(
            "/v1/admin/enrollment-tokens",
            json={"tenant": tenant, "group": group},
            headers=admin_headers,
        ).json()["token"]
        answer = client.post(
            "/v1/enroll",
            json={
                "token": token,
                "device_id": device.device_id,
                "public_key": device.public_b64,
                "hostname": "laptop",
            },
        )
        assert answer.status_code == 201, answer.text
        return device

    return run


Upload = Callable[..., httpx.Response]


@pytest.fixture
def upload(client: TestClient, clock: MutableClock) -> Upload:
    def run(device: Device, sealed: bytes, **headers: str) -> httpx.Response:
        signed = device.sign("POST", "/v1/batches", sealed, clock.ms())
        signed.update(headers)
        return client.post("/v1/batches", content=sealed, headers=signed)

    return run


@pytest.fixture
def device_call(client: TestClient, clock: MutableClock) -> Callable[..., httpx.Response]:
    """A signed device request: ``device_call(device, "GET", "/v1/policy")``."""

    def run(
        device: Device, method: str, path: str, body: bytes = b"", **headers: str
    ) -> httpx.Response:
        signed = device.sign(method, path, body, clock.ms())
        signed.update(headers)
        return client.request(method, path, content=body, headers=signed)

    return run
