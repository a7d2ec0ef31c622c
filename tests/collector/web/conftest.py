"""Fixtures for the admin-page tests.

In-process (``pages``): the collector app from :func:`collector.api.create_app`
on a temporary data directory with an injected clock, the admin pages
installed on it, admin ``alice`` with a password, a signed policy that lists
the collector's grant key, and one enrolled device. ``browser_world`` (the
real process and headless Chromium) lives in ``test_browser.py``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from collector.api import create_app
from collector.config import CollectorConfig, StorageConfig
from collector.credentials import ScryptParams, hash_password
from collector.service import CollectorService
from collector.store.records import AdminUserRecord, AuditEvent, DeviceRecord
from collector.web import AdminPages, AdminPagesConfig, install_admin_pages

from ._world import (
    ADMIN,
    GRANT_KEY,
    GROUP,
    PASSWORD,
    TENANT,
    Device,
    signed_policy,
)

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BASE_URL = "http://testserver"
ORIGIN = {"Origin": BASE_URL}


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Pages:
    """The app under test and handles on its insides."""

    client: TestClient
    service: CollectorService
    pages: AdminPages
    clock: FakeClock
    device: DeviceRecord

    def csrf(self, page: str) -> str:
        """The CSRF token of the page at ``page`` (taken from its first form)."""
        response = self.client.get(page)
        assert response.status_code == 200, response.text
        return csrf_of(response.text)

    def sign_in(self, name: str = ADMIN, password: str = PASSWORD) -> None:
        token = self.csrf("/admin/sign-in")
        response = self.client.post(
            "/admin/sign-in",
            data={"csrf_token": token, "name": name, "password": password},
            headers=ORIGIN,
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/admin/exemptions"

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        response: httpx.Response = self.client.post(path, data=data, headers={**ORIGIN, **headers})
        return response


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert match, "the page has no form with a CSRF token"
    return html.unescape(match.group(1))


#: scrypt with a small cost, so that each sign-in takes milliseconds, not 0.2 s.
#: The record carries its parameters, so the collector verifies it as written.
CHEAP_SCRYPT = ScryptParams(n=2**10)


def add_admin(service: CollectorService, name: str, password: str) -> None:
    now_ms = service.now_ms()
    record = AdminUserRecord(name, hash_password(password, CHEAP_SCRYPT), now_ms, now_ms)
    service.storage.set_admin_user(
        record, AuditEvent(now_ms, "test", "admin_user.created", name, {})
    )


def build(
    tmp_path: Path,
    config: AdminPagesConfig,
    base_url: str = BASE_URL,
    grant_key: Ed25519PrivateKey | None = GRANT_KEY,
) -> Iterator[Pages]:
    clock = FakeClock()
    app = create_app(
        CollectorConfig(storage=StorageConfig(tmp_path / "data"), grant_key=grant_key, clock=clock)
    )
    service: CollectorService = app.state.service
    pages = install_admin_pages(app, service, config)
    add_admin(service, ADMIN, PASSWORD)
    envelope, _ = signed_policy(START)
    service.policies.put_policy(envelope, actor="test")
    token = service.accounts.create_enrollment_token(TENANT, GROUP, 60, actor="test").token
    device = Device("dev-0001")
    record = service.accounts.enroll(token, device.device_id, device.public_key_b64, "laptop-1")
    with TestClient(app, base_url=base_url, follow_redirects=False) as client:
        yield Pages(client, service, pages, clock, record)


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[Pages]:
    yield from build(tmp_path, AdminPagesConfig(audit_page_size=5))
