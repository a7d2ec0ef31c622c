"""The admin pages in real headless Chromium against a real collector process.

The story: an admin signs in, creates an enrollment token on the tokens page;
a test device enrolls with it and asks for two exemptions through the device
API (signed with its key); the admin sees both in the queue, a cross-site
form aimed at one of them is refused, the admin approves one with an expiry
and denies the other with a reason; then the device fetches ``GET
/v1/grants`` and the grant verifies against the policy with
:func:`policies.verify.verify_grant`.

The collector runs as ``overt collector serve`` in its own process (through
``serve_with_pages.py``, which mounts the pages if serve does not yet), on a
port the OS chose, with a temporary data directory; Chromium is Debian's
(``/usr/bin/chromium``, installed by ``tools/ensure-debian-packages``),
driven by Playwright's sync API. Screenshots of every page go to
``artifacts/admin/``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from policies.keys import private_key_pem
from policies.model import Policy
from policies.verify import verify_grant

from ._world import ADMIN, GRANT_KEY, GROUP, PASSWORD, TENANT, Device, signed_policy

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "artifacts" / "admin"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OVERT_COLLECTOR = (sys.executable, "-m", "overt", "collector")
SERVE = (sys.executable, str(Path(__file__).with_name("serve_with_pages.py")))
#: Generous bounds for a loaded 2-core machine; these fail a hung start, they time nothing.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


@dataclass(frozen=True)
class RunningCollector:
    url: str
    policy: Policy
    log: Path


def _wait_for_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The URL from serve's "listening on" line; fails with the log if it never comes."""
    assert proc.stdout is not None
    line = b""
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    if ready:
        line = proc.stdout.readline()
    text = line.decode("utf-8", "replace")
    if "listening on " not in text:
        proc.kill()
        proc.wait()
        pytest.fail(f"the collector did not start: {text!r}\n{log.read_text()}", pytrace=False)
    return text.split("listening on ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    root = tmp_path_factory.mktemp("collector")
    data = root / "data"
    key_file = root / "grant.key"
    key_file.write_bytes(private_key_pem(GRANT_KEY))
    key_file.chmod(0o600)
    envelope, policy = signed_policy(datetime.now(UTC))
    policy_file = root / "policy.signed.json"
    policy_file.write_bytes(envelope)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    made = subprocess.run(
        [*OVERT_COLLECTOR, "admin-user", "--data", str(data), "--name", ADMIN],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert made.returncode == 0, made.stderr

    log = root / "collector.log"
    with log.open("wb") as log_stream:
        proc = subprocess.Popen(
            [
                *SERVE,
                *("--data", str(data), "--port", "0"),
                *("--grant-key", str(key_file), "--policy", str(policy_file)),
            ],
            stdout=subprocess.PIPE,
            stderr=log_stream,
            env=env,
        )
    try:
        url = _wait_for_listening(proc, log)
        yield RunningCollector(url, policy, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run tools/ensure-debian-packages (as root) to install it",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def signed(device: Device, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    headers = device.headers(method, target, body, now_ms())
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def ask_exemption(http: httpx.Client, device: Device, category: str, reason: str, days: int) -> str:
    body = json.dumps({"category": category, "reason": reason, "duration_days": days}).encode()
    response = http.post(
        "/v1/exemptions", content=body, headers=signed(device, "POST", "/v1/exemptions", body)
    )
    assert response.status_code == 201, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def test_sign_in_approve_and_the_device_is_served_a_verifying_grant(
    collector: RunningCollector, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    http = httpx.Client(base_url=collector.url, timeout=30)
    try:
        # Sign in.
        page.goto(f"{collector.url}/admin/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        shot(page, "1-sign-in")
        page.get_by_label("Name").fill(ADMIN)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text(
            "That name and password do not match an admin."
        )
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Exemption requests", level=1)).to_be_visible()
        expect(page.get_by_text("No request is waiting.")).to_be_visible()
        cookie = next(c for c in context.cookies() if c["name"] == "overt_admin")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/admin"

        # An enrollment token, made on the tokens page and shown once.
        page.get_by_role("link", name="Enrollment tokens").click()
        page.get_by_label("Tenant").fill(TENANT)
        page.get_by_label("Device group").fill(GROUP)
        page.get_by_label("Valid for (minutes)").fill("30")
        page.get_by_role("button", name="Create token").click()
        token = page.get_by_label("Token", exact=True).input_value()
        assert token.startswith("ovt_enroll_")
        shot(page, "4-enrollment-tokens")

        # The device enrolls with it and asks for two exemptions.
        device = Device("laptop-0042")
        enrolled = http.post("/v1/enroll", json=device.enroll_body(token))
        assert enrolled.status_code == 201, enrolled.text
        approve_id = ask_exemption(
            http, device, "battery", "I work from trains; the laptop is rarely charging.", 14
        )
        deny_id = ask_exemption(
            http, device, "bandwidth", "Home internet is 20 GB a month <b>shared</b>.", 30
        )

        page.get_by_role("link", name="Exemption requests").click()
        to_approve = page.locator(f"#request-{approve_id}")
        to_deny = page.locator(f"#request-{deny_id}")
        expect(to_approve).to_contain_text("Often on battery")
        expect(to_approve).to_contain_text("I work from trains")
        expect(to_approve).to_contain_text("14 days")
        expect(to_deny).to_contain_text("<b>shared</b>")  # shown as text, not markup
        shot(page, "2-exemption-queue")

        page.get_by_role("link", name="Devices").click()
        row = page.get_by_role("row").filter(has_text="laptop-0042")
        expect(row).to_contain_text(f"{TENANT} / {GROUP}")
        expect(row.locator("td").nth(8)).to_have_text("2")
        shot(page, "3-devices")

        # A form on another site aimed at the queue is refused (no cookie, wrong origin).
        attacker = context.new_page()
        evil = (
            f'<form method="post" action="{collector.url}/admin/exemptions/{deny_id}/approve">'
            '<input name="duration_days" value="365"><input name="csrf_token" value="x">'
            "<button>win a prize</button></form>"
        )
        attacker.route(
            "https://evil.example/",
            lambda route: route.fulfill(body=evil, content_type="text/html"),
        )
        attacker.goto("https://evil.example/")
        with attacker.expect_response(lambda r: r.url.endswith("/approve")) as answer:
            attacker.get_by_role("button", name="win a prize").click()
        assert answer.value.status == 403
        expect(attacker.get_by_role("heading")).to_have_text("This form cannot be accepted")
        attacker.close()

        # Approve one with an expiry, deny the other with a reason.
        page.get_by_role("link", name="Exemption requests").click()
        to_approve.get_by_label("Grant for (days)").fill("10")
        to_approve.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status").first).to_contain_text(f"Approved request {approve_id}")
        to_deny.get_by_label("Reason for denying").fill("The office has wired internet for you.")
        to_deny.get_by_role("button", name="Deny").click()
        expect(page.get_by_role("status").first).to_contain_text(f"Denied request {deny_id}")
        expect(page.get_by_text("No request is waiting.")).to_be_visible()
        decided = page.get_by_role("table", name="Decided requests, newest first")
        expect(decided).to_contain_text("The office has wired internet for you.")
        shot(page, "5-exemptions-decided")

        page.get_by_role("link", name="Audit log").click()
        log = page.get_by_role("table")
        expect(log).to_contain_text("exemption.approved")
        expect(log).to_contain_text("exemption.denied")
        expect(log).to_contain_text("admin:alice")
        shot(page, "6-audit-log")

        # The device is served the grant, and it verifies against the policy.
        grants = http.get("/v1/grants", headers=signed(device, "GET", "/v1/grants"))
        assert grants.status_code == 200, grants.text
        envelopes = [base64.b64decode(g) for g in grants.json()["grants"]]
        assert len(envelopes) == 1
        now = datetime.now(UTC)
        grant = verify_grant(envelopes[0], collector.policy, device.device_id, now)
        assert grant.request_id == approve_id
        assert grant.category.value == "battery"
        assert timedelta(days=10) - timedelta(minutes=5) < grant.expires - now <= timedelta(days=10)

        # The cross-site attempt changed nothing: the denied request was denied, not approved.
        mine = http.get("/v1/exemptions", headers=signed(device, "GET", "/v1/exemptions"))
        statuses = {r["request_id"]: r["status"] for r in mine.json()["requests"]}
        assert statuses == {approve_id: "approved", deny_id: "denied"}

        # Sign out; the pages are closed again.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_text("You are signed out.")).to_be_visible()
        page.goto(f"{collector.url}/admin/exemptions")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        http.close()
        context.close()
