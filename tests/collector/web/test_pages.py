"""The admin pages in-process: sign-in, cookies, CSRF, expiry, decisions, escaping.

Each test runs the real collector app (``create_app`` with the pages
installed) over a temporary data directory and an injected clock, through
Starlette's ``TestClient``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from collector.store.records import BatchWrite, ExemptionRecord, ExemptionStatus
from collector.web import AdminPagesConfig, install_admin_pages
from collector.web.sessions import COOKIE_NAME
from policies.model import Category

from ._world import ADMIN, PASSWORD
from .conftest import ORIGIN, Pages, build, csrf_of

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    """The attributes of the ``overt_admin`` cookie a response sets."""
    headers = response.headers.get_list("set-cookie")
    for header in headers:
        if header.startswith(f"{COOKIE_NAME}="):
            parts = [p.strip() for p in header.split(";")]
            attributes = {"value": parts[0].partition("=")[2]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no {COOKIE_NAME} cookie set in {headers}")


def request_exemption(pages: Pages, reason: str = "home internet is capped", days: int = 14) -> str:
    record = pages.service.exemptions.request_exemption(
        pages.device, Category.BANDWIDTH, reason, days
    )
    return record.request_id


def exemption(pages: Pages, request_id: str) -> ExemptionRecord:
    return pages.service.exemptions.get_exemption(request_id)


# ---------------------------------------------------------------- sign-in


def test_pages_redirect_to_sign_in_until_signed_in(pages: Pages) -> None:
    for path in ("/admin/exemptions", "/admin/devices", "/admin/enrollment-tokens", "/admin/audit"):
        response = pages.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/admin/sign-in?next={path.replace('/', '%2F')}"
    assert pages.client.get("/admin/").headers["location"] == "/admin/sign-in"


def test_sign_in_with_the_right_password_starts_a_new_session(pages: Pages) -> None:
    form = pages.client.get("/admin/sign-in")
    anonymous = cookie_attributes(form)["value"]
    response = pages.post(
        "/admin/sign-in",
        {"csrf_token": csrf_of(form.text), "name": ADMIN, "password": PASSWORD},
    )
    assert response.status_code == 303
    signed_in = cookie_attributes(response)["value"]
    assert signed_in != anonymous  # no session fixation
    assert pages.pages.sessions.get(anonymous) is None
    page = pages.client.get("/admin/exemptions")
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page.text
    events = pages.service.audit(5)
    assert (events[0].actor, events[0].action) == ("admin:alice", "admin.signed_in")


def test_sign_in_follows_a_safe_next_and_ignores_others(pages: Pages) -> None:
    for next_url, expected in (
        ("/admin/devices", "/admin/devices"),
        ("https://evil.example/", "/admin/exemptions"),
        ("//evil.example/admin/", "/admin/exemptions"),
        ("/admin/../elsewhere", "/admin/exemptions"),
        ("/admin/devices\r\nSet-Cookie: x=1", "/admin/exemptions"),
    ):
        pages.client.cookies.clear()
        token = pages.csrf("/admin/sign-in")
        response = pages.post(
            "/admin/sign-in",
            {"csrf_token": token, "name": ADMIN, "password": PASSWORD, "next": next_url},
        )
        assert response.headers["location"] == expected


@pytest.mark.parametrize(
    ("name", "password"),
    [(ADMIN, "wrong"), ("mallory", PASSWORD), (ADMIN, ""), ("", PASSWORD), (ADMIN, "x" * 2000)],
)
def test_a_wrong_name_or_password_is_refused_with_one_message(
    pages: Pages, name: str, password: str
) -> None:
    token = pages.csrf("/admin/sign-in")
    response = pages.post(
        "/admin/sign-in", {"csrf_token": token, "name": name, "password": password}
    )
    assert response.status_code == 401
    assert "That name and password do not match an admin." in response.text
    assert pages.client.get("/admin/exemptions").status_code == 303
    assert pages.service.audit(1)[0].action == "admin.sign_in_failed"


def test_repeated_failures_are_throttled_even_for_the_right_password(pages: Pages) -> None:
    token = pages.csrf("/admin/sign-in")
    for _ in range(3):  # three free guesses; the third failure starts a wait
        response = pages.post(
            "/admin/sign-in", {"csrf_token": token, "name": ADMIN, "password": "guess"}
        )
        assert response.status_code == 401
    right = {"csrf_token": token, "name": ADMIN, "password": PASSWORD}
    response = pages.post("/admin/sign-in", right)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert "Too many failed sign-ins" in response.text
    pages.clock.advance(seconds=2)
    assert pages.post("/admin/sign-in", right).status_code == 303


def test_sign_out_ends_the_session_server_side(pages: Pages) -> None:
    pages.sign_in()
    cookie = pages.client.cookies.get(COOKIE_NAME)
    token = pages.csrf("/admin/exemptions")
    response = pages.post("/admin/sign-out", {"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/sign-in?notice=signed_out"
    assert cookie_attributes(response)["max-age"] == "0"
    assert pages.pages.sessions.get(cookie) is None
    # The old cookie value, replayed, opens nothing.
    pages.client.cookies.set(COOKIE_NAME, cookie, path="/admin")
    assert pages.client.get("/admin/exemptions").status_code == 303
    assert pages.service.audit(1)[0].action == "admin.signed_out"


# ---------------------------------------------------------------- cookies


def test_the_session_cookie_is_httponly_strict_and_scoped_to_admin(pages: Pages) -> None:
    attributes = cookie_attributes(pages.client.get("/admin/sign-in"))
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/admin"
    assert "secure" not in attributes  # plain HTTP on loopback
    assert "max-age" not in attributes  # the server's expiry decides
    assert len(attributes["value"]) >= 43


def test_the_cookie_is_secure_over_https(tmp_path: Path) -> None:
    for world in build(tmp_path, AdminPagesConfig(), base_url="https://testserver"):
        form = world.client.get("/admin/sign-in")
        assert "secure" in cookie_attributes(form)
        response = world.client.post(
            "/admin/sign-in",
            data={"csrf_token": csrf_of(form.text), "name": ADMIN, "password": PASSWORD},
            headers={"Origin": "https://testserver"},
        )
        assert response.status_code == 303
        assert "secure" in cookie_attributes(response)


def test_the_cookie_is_secure_when_the_config_forces_it(tmp_path: Path) -> None:
    for world in build(tmp_path, AdminPagesConfig(force_secure_cookies=True)):
        assert "secure" in cookie_attributes(world.client.get("/admin/sign-in"))


def test_every_page_forbids_caching_framing_and_scripts(pages: Pages) -> None:
    pages.sign_in()
    for path in ("/admin/sign-in", "/admin/exemptions", "/admin/devices", "/admin/audit"):
        headers = pages.client.get(path).headers
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]


# ----------------------------------------------------------------- expiry


def test_a_session_idle_for_thirty_minutes_is_over(pages: Pages) -> None:
    pages.sign_in()
    pages.clock.advance(minutes=29)
    assert pages.client.get("/admin/devices").status_code == 200
    pages.clock.advance(minutes=29)  # 29 minutes since the last request
    assert pages.client.get("/admin/devices").status_code == 200
    pages.clock.advance(minutes=30)
    response = pages.client.get("/admin/devices")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/sign-in")


def test_a_busy_session_is_over_after_twelve_hours(pages: Pages) -> None:
    pages.sign_in()
    for _ in range(11 * 3):
        pages.clock.advance(minutes=20)
        assert pages.client.get("/admin/exemptions").status_code == 200
    pages.clock.advance(hours=1)
    assert pages.client.get("/admin/exemptions").status_code == 303


def test_a_form_posted_after_expiry_changes_nothing_and_asks_to_sign_in(pages: Pages) -> None:
    request_id = request_exemption(pages)
    pages.sign_in()
    token = pages.csrf("/admin/exemptions")
    pages.clock.advance(hours=1)
    response = pages.post(
        f"/admin/exemptions/{request_id}/approve", {"csrf_token": token, "duration_days": "7"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/sign-in?notice=expired"
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING
    assert "Your session ended" in pages.client.get(response.headers["location"]).text


# ------------------------------------------------------------------- CSRF


@pytest.fixture
def pending(pages: Pages) -> tuple[Pages, str, str]:
    """Signed in, one pending request, the page's CSRF token."""
    request_id = request_exemption(pages)
    pages.sign_in()
    return pages, request_id, pages.csrf("/admin/exemptions")


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        pytest.param({}, ORIGIN, id="missing token"),
        pytest.param({"csrf_token": ""}, ORIGIN, id="empty token"),
        pytest.param({"csrf_token": "forged"}, ORIGIN, id="wrong token"),
        pytest.param(None, {"Origin": "https://evil.example"}, id="foreign origin"),
        pytest.param(None, {"Origin": "null"}, id="null origin"),
        pytest.param(None, {"Referer": "https://evil.example/page"}, id="foreign referer"),
        pytest.param(None, {}, id="no origin or referer"),
    ],
)
def test_a_forged_decision_is_refused_and_changes_nothing(
    pending: tuple[Pages, str, str], fields: dict[str, str] | None, headers: dict[str, str]
) -> None:
    pages, request_id, token = pending
    body = {"duration_days": "7", **({"csrf_token": token} if fields is None else fields)}
    before = len(pages.service.audit(1000))
    response = pages.client.post(
        f"/admin/exemptions/{request_id}/approve", data=body, headers=headers
    )
    assert response.status_code == 403
    assert "This form cannot be accepted" in response.text
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING
    assert len(pages.service.audit(1000)) == before


def test_a_same_origin_referer_is_enough_without_origin(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    response = pages.client.post(
        f"/admin/exemptions/{request_id}/deny",
        data={"csrf_token": token, "reason": "no"},
        headers={"Referer": "http://testserver/admin/exemptions"},
    )
    assert response.status_code == 303
    assert exemption(pages, request_id).status is ExemptionStatus.DENIED


def test_another_sessions_token_is_refused(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, _ = pending
    other = pages.pages.sessions.start(ADMIN)
    response = pages.post(
        f"/admin/exemptions/{request_id}/approve",
        {"csrf_token": other.csrf_token, "duration_days": "7"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        pytest.param({"csrf_token": "forged"}, ORIGIN, id="wrong token"),
        pytest.param({}, ORIGIN, id="missing token"),
        pytest.param(None, {"Origin": "https://evil.example"}, id="foreign origin"),
    ],
)
def test_a_forged_sign_in_is_refused(
    pages: Pages, fields: dict[str, str] | None, headers: dict[str, str]
) -> None:
    token = pages.csrf("/admin/sign-in")
    body = {
        "name": ADMIN,
        "password": PASSWORD,
        **({"csrf_token": token} if fields is None else fields),
    }
    response = pages.client.post("/admin/sign-in", data=body, headers=headers)
    assert response.status_code == 403
    assert pages.client.get("/admin/exemptions").status_code == 303


def test_a_forged_sign_out_keeps_the_session(pages: Pages) -> None:
    pages.sign_in()
    response = pages.post("/admin/sign-out", {"csrf_token": "forged"})
    assert response.status_code == 403
    assert pages.client.get("/admin/exemptions").status_code == 200


def test_a_forged_token_creation_creates_nothing(pages: Pages) -> None:
    pages.sign_in()
    before = len(pages.service.accounts.list_enrollment_tokens())
    response = pages.client.post(
        "/admin/enrollment-tokens",
        data={"tenant": "t", "group": "g", "expires_minutes": "60"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert len(pages.service.accounts.list_enrollment_tokens()) == before


# ------------------------------------------------------------- decisions


def test_approving_signs_a_grant_and_audits_the_admin(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    response = pages.post(
        f"/admin/exemptions/{request_id}/approve", {"csrf_token": token, "duration_days": "10"}
    )
    assert response.status_code == 303
    record = exemption(pages, request_id)
    assert record.status is ExemptionStatus.APPROVED
    assert record.decided_by == "admin:alice"
    assert record.grant_expires_ms == int(pages.clock.now.timestamp() * 1000) + 10 * 86_400_000
    grants = pages.service.storage.grants_for_device(pages.device.device_id, 0)
    assert [g.request_id for g in grants] == [request_id]
    event = pages.service.audit(1)[0]
    assert (event.actor, event.action, event.subject) == (
        "admin:alice",
        "exemption.approved",
        request_id,
    )
    page = pages.client.get("/admin/exemptions").text
    assert f"Approved request {request_id}" in page
    assert "No request is waiting." in page
    assert "2026-12-02 12:00 UTC" in page  # the grant's expiry, in the decided table
    audit = pages.client.get("/admin/audit").text
    assert '<span class="k">expires</span> 2026-12-02 12:00 UTC' in audit


def test_denying_needs_a_reason_and_records_it(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    url = f"/admin/exemptions/{request_id}/deny"
    response = pages.post(url, {"csrf_token": token, "reason": "   "})
    assert response.status_code == 303
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING
    assert "A denial needs a reason" in pages.client.get("/admin/exemptions").text
    pages.post(url, {"csrf_token": token, "reason": "Office has wired internet."})
    record = exemption(pages, request_id)
    assert record.status is ExemptionStatus.DENIED
    assert record.decision_reason == "Office has wired internet."
    event = pages.service.audit(1)[0]
    assert (event.actor, event.action) == ("admin:alice", "exemption.denied")


def test_deciding_twice_is_refused_with_a_message(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    pages.post(f"/admin/exemptions/{request_id}/deny", {"csrf_token": token, "reason": "no"})
    pages.post(
        f"/admin/exemptions/{request_id}/approve", {"csrf_token": token, "duration_days": "3"}
    )
    assert exemption(pages, request_id).status is ExemptionStatus.DENIED
    page = pages.client.get("/admin/exemptions").text
    assert f"Request {request_id} was not approved" in page
    assert "already" in page


@pytest.mark.parametrize("days", ["0", "-1", "abc", "", "1.5", "99999"])
def test_a_bad_duration_is_refused_and_the_request_stays_pending(
    pending: tuple[Pages, str, str], days: str
) -> None:
    pages, request_id, token = pending
    pages.post(
        f"/admin/exemptions/{request_id}/approve", {"csrf_token": token, "duration_days": days}
    )
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING
    assert "duration must be a whole number" in pages.client.get("/admin/exemptions").text


def test_an_unknown_request_gets_a_message(pending: tuple[Pages, str, str]) -> None:
    pages, _, token = pending
    response = pages.post(
        "/admin/exemptions/r-0000000000000000/approve", {"csrf_token": token, "duration_days": "3"}
    )
    assert response.status_code == 303
    assert "no exemption request" in pages.client.get("/admin/exemptions").text


def test_without_a_grant_key_approval_explains_why(tmp_path: Path) -> None:
    for world in build(tmp_path, AdminPagesConfig(), grant_key=None):
        request_id = request_exemption(world)
        world.sign_in()
        token = world.csrf("/admin/exemptions")
        world.post(
            f"/admin/exemptions/{request_id}/approve", {"csrf_token": token, "duration_days": "3"}
        )
        assert exemption(world, request_id).status is ExemptionStatus.PENDING
        assert "--grant-key" in world.client.get("/admin/exemptions").text


def test_the_queue_lists_pending_oldest_first_then_decided(pending: tuple[Pages, str, str]) -> None:
    pages, first, token = pending
    pages.clock.advance(minutes=1)
    second = request_exemption(pages, reason="second request")
    pages.clock.advance(minutes=1)
    third = request_exemption(pages, reason="third request")
    pages.post(f"/admin/exemptions/{third}/deny", {"csrf_token": token, "reason": "no"})
    page = pages.client.get("/admin/exemptions").text
    decided_at = page.index('id="decided-heading"')
    assert page.index(f'id="request-{first}"') < page.index(f'id="request-{second}"') < decided_at
    assert page.index(f'id="request-{third}"') > decided_at
    assert "Limited bandwidth" in page
    assert "14 days" in page


# -------------------------------------------------------------- escaping


def test_a_malicious_reason_is_shown_escaped_everywhere(pages: Pages) -> None:
    request_id = request_exemption(pages, reason=XSS)
    pages.sign_in()
    page = pages.client.get("/admin/exemptions").text
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    token = csrf_of(page)
    pages.post(f"/admin/exemptions/{request_id}/deny", {"csrf_token": token, "reason": XSS})
    for path in ("/admin/exemptions", "/admin/audit"):
        text = pages.client.get(path).text
        assert "<script>" not in text
        assert "<img" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_a_malicious_sign_in_name_is_escaped(pages: Pages) -> None:
    token = pages.csrf("/admin/sign-in")
    response = pages.post(
        "/admin/sign-in", {"csrf_token": token, "name": '"><script>x</script>', "password": "p"}
    )
    assert "<script>x" not in response.text
    assert 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in response.text


# ---------------------------------------------------------- other pages


def test_devices_show_enrollment_usage_and_open_requests(pages: Pages) -> None:
    request_exemption(pages)
    request_exemption(pages)
    pages.sign_in()
    page = pages.client.get("/admin/devices").text
    row = re.search(r"<tr>\s*<td><code>dev-0001</code>.*?</tr>", page, re.S)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert cells[1] == "example-corp / office"
    assert cells[2] == "laptop-1"
    assert cells[3] == "2026-11-22 12:00 UTC"
    assert cells[4] == "never"
    assert cells[6:8] == ["0 B", "0"]
    assert ">2</a>" in cells[8]
    assert "<caption>1 enrolled device, by device id</caption>" in page


def test_devices_show_what_a_device_sent(pages: Pages) -> None:
    sealed = bytes(3 * 1024 * 1024 // 2)
    received = pages.service.now_ms()
    pages.service.storage.put_batch(
        BatchWrite(
            device_id=pages.device.device_id,
            seq=1,
            batch_id="b-1",
            header=b"{}",
            start_ms=received - 60_000,
            end_ms=received,
            policy_version=7,
            sealed=sealed,
            sha256=hashlib.sha256(sealed).digest(),
            received_at_ms=received,
        )
    )
    pages.clock.advance(hours=2, minutes=5)
    pages.sign_in()
    page = pages.client.get("/admin/devices").text
    row = re.search(r"<tr>\s*<td><code>dev-0001</code>.*?</tr>", page, re.S)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert cells[4] == "2026-11-22 12:00 UTC (2 h ago)"
    assert cells[5:8] == ["7", "1.5 MiB", "1"]
    assert 'title="1572864 bytes"' in row.group(0)


def test_a_new_token_is_shown_once_and_listed_as_unused(pages: Pages) -> None:
    pages.sign_in()
    token = pages.csrf("/admin/enrollment-tokens")
    response = pages.post(
        "/admin/enrollment-tokens",
        {"csrf_token": token, "tenant": "example-corp", "group": "sales", "expires_minutes": "90"},
    )
    assert response.status_code == 303
    page = pages.client.get("/admin/enrollment-tokens").text
    shown = re.search(r'id="new-token"[^>]*value="(ovt_enroll_[^"]+)"', page)
    assert shown, page
    assert "example-corp / sales" in page
    assert "2026-11-22 13:30 UTC" in page  # 90 minutes from now
    again = pages.client.get("/admin/enrollment-tokens").text
    assert shown.group(1) not in again
    assert "ovt_enroll_" not in again
    assert again.count('class="badge unused"') == 1
    assert again.count('class="badge used"') == 1  # the fixture's device used the first one
    event = pages.service.audit(1)[0]
    assert (event.actor, event.action) == ("admin:alice", "enrollment_token.created")


def test_tokens_expire_in_the_list(pages: Pages) -> None:
    pages.service.accounts.create_enrollment_token("example-corp", "office", 5, actor="test")
    pages.sign_in()
    pages.clock.advance(minutes=6)
    page = pages.client.get("/admin/enrollment-tokens").text
    assert 'class="badge expired"' in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tenant": "bad tenant!", "group": "g", "expires_minutes": "60"}, "tenant must be"),
        ({"tenant": "t", "group": "", "expires_minutes": "60"}, "group must be"),
        ({"tenant": "t", "group": "g", "expires_minutes": "0"}, "Valid for must be"),
        ({"tenant": "t", "group": "g", "expires_minutes": "soon"}, "Valid for must be"),
    ],
)
def test_a_bad_token_form_keeps_what_was_typed(
    pages: Pages, fields: dict[str, str], message: str
) -> None:
    pages.sign_in()
    before = len(pages.service.accounts.list_enrollment_tokens())
    token = pages.csrf("/admin/enrollment-tokens")
    response = pages.post("/admin/enrollment-tokens", {"csrf_token": token, **fields})
    assert response.status_code == 422
    assert message in response.text
    assert f'name="tenant" type="text" required maxlength="128" value="{fields["tenant"]}"' in (
        response.text
    )
    assert len(pages.service.accounts.list_enrollment_tokens()) == before


def test_the_audit_log_pages_newest_first(pages: Pages) -> None:
    for _ in range(4):
        pages.service.accounts.create_enrollment_token("example-corp", "office", 5, actor="test")
    pages.sign_in()
    events = pages.service.audit(1000)
    assert len(events) == 9
    first = pages.client.get("/admin/audit").text
    ids = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>', first)]
    assert ids == [e.event_id for e in events[:5]]
    older = re.search(r'href="(/admin/audit\?before=\d+)"', first)
    assert older
    second = pages.client.get(older.group(1)).text
    ids2 = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>', second)]
    assert ids2 == [e.event_id for e in events[5:10]]
    assert 'href="/admin/audit">Newest' in second
    assert "admin.signed_in" in first


@pytest.mark.parametrize("before", ["abc", "-1", "1" * 30])
def test_a_bad_audit_page_number_is_a_clear_400(pages: Pages, before: str) -> None:
    pages.sign_in()
    response = pages.client.get(f"/admin/audit?before={before}")
    assert response.status_code == 400
    assert "Not a page of the audit log" in response.text


# ------------------------------------------------------------- bad forms


def test_a_form_over_the_size_limit_is_refused_before_reading(
    pending: tuple[Pages, str, str],
) -> None:
    pages, request_id, token = pending
    response = pages.post(
        f"/admin/exemptions/{request_id}/deny", {"csrf_token": token, "reason": "x" * 20_000}
    )
    assert response.status_code == 413
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING


def test_a_non_form_body_is_refused(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    response = pages.client.post(
        f"/admin/exemptions/{request_id}/deny",
        json={"csrf_token": token, "reason": "no"},
        headers=ORIGIN,
    )
    assert response.status_code == 415
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING


def test_invalid_utf8_in_a_form_is_a_clear_400(pending: tuple[Pages, str, str]) -> None:
    pages, request_id, token = pending
    response = pages.client.post(
        f"/admin/exemptions/{request_id}/deny",
        content=f"csrf_token={token}&reason=%FF%FE".encode(),
        headers={**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert exemption(pages, request_id).status is ExemptionStatus.PENDING


def test_the_stylesheet_is_served_with_an_etag(pages: Pages) -> None:
    response = pages.client.get("/admin/static/admin.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    etag = response.headers["etag"]
    again = pages.client.get("/admin/static/admin.css", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_the_pages_are_not_in_the_openapi_document(pages: Pages) -> None:
    paths = pages.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/admin")]


def test_installing_again_reconfigures_the_pages_and_ends_their_sessions(pages: Pages) -> None:
    pages.sign_in()
    app: FastAPI = pages.client.app  # type: ignore[assignment]
    again = install_admin_pages(app, pages.service, AdminPagesConfig(audit_page_size=2))
    assert again is pages.pages is app.state.admin_pages
    assert pages.client.get("/admin/exemptions").status_code == 303  # old sessions are gone
    pages.sign_in()
    audit = pages.client.get("/admin/audit").text
    assert len(re.findall(r'<td class="num">\d+</td>', audit)) == 2
