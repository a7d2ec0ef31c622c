"""The admin pages' routes: sign-in, exemption queue, devices, tokens, audit log.

Owns HTTP for the pages under ``/admin/`` and nothing else: every rule
(password checks, grant signing, enrollment tokens, what goes in the audit
log for a decision) is :class:`collector.service.CollectorService`'s, the
same service the JSON admin API calls. What this module adds is web-only:

- **Sessions** (:mod:`collector.web.sessions`): the ``overt_admin`` cookie is
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/admin``, ``Secure`` when the
  request came over HTTPS or the config forces it, and has no ``Max-Age``
  (the server's idle and absolute limits decide). Signing in starts a new
  session id; signing out ends it server-side.
- **CSRF** (:mod:`collector.web.csrf`): every POST form carries the
  session's token in a hidden field, and every POST must come from this
  collector's origin. Either check failing is a 403 that changes nothing.
- **Sign-in throttling** (:mod:`collector.web.throttle`) per (name, address).
- **Audit**: decisions are recorded by the service with ``admin:<name>`` as
  the actor; sign-ins, failed sign-ins and sign-outs are recorded here.
- **Output**: Jinja2 with autoescaping on for every template, and headers
  that forbid caching, framing, scripts and foreign form targets.

Forms are read and checked by :mod:`collector.web.forms`, records turned
into template values by :mod:`collector.web.views`, paths are
:mod:`collector.web.urls`'s.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from collector.errors import CollectorError
from collector.exemptions import MAX_GRANT_DAYS
from collector.service import CollectorService
from collector.store.records import (
    ExemptionStatus,
)
from collector.web import csrf, forms, views
from collector.web.config import AdminPagesConfig
from collector.web.errors import ForgedRequestError, FormError, SignInThrottledError
from collector.web.sessions import COOKIE_NAME, AdminSession, SessionStore, set_session_cookie
from collector.web.throttle import SignInThrottle
from collector.web.urls import (
    AUDIT,
    EXEMPTIONS,
    NAV,
    PREFIX,
    SIGN_IN,
    SIGN_OUT,
    STYLESHEET,
    TOKENS,
)

logger = logging.getLogger(__name__)


_HERE = Path(__file__).parent
#: Sent with every page: no caching (pages show secrets and decisions), no
#: framing, no scripts, forms only to this origin.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_T = TypeVar("_T")


class AdminPages:
    """The admin pages of one collector: its router, sessions and sign-in throttle."""

    def __init__(self, service: CollectorService, config: AdminPagesConfig) -> None:
        self.configure(service, config)
        self.templates = views.template_environment()
        self.stylesheet = (_HERE / "static" / "admin.css").read_bytes()
        self.stylesheet_etag = '"' + hashlib.sha256(self.stylesheet).hexdigest()[:32] + '"'
        self.router = self._router()

    def configure(self, service: CollectorService, config: AdminPagesConfig) -> None:
        """Serve ``service`` with ``config`` from now on; every session and count starts over."""
        self.service = service
        self.config = config
        self.sessions = SessionStore(
            service.now,
            idle=config.session_idle,
            absolute=config.session_absolute,
            anonymous_idle=config.anonymous_session_idle,
            max_anonymous=config.max_anonymous_sessions,
        )
        self.throttle = SignInThrottle(
            service.now,
            free_failures=config.sign_in_free_failures,
            base_delay=config.sign_in_base_delay,
            max_delay=config.sign_in_max_delay,
        )

    # ------------------------------------------------------------ plumbing

    def _secure(self, request: Request) -> bool:
        return self.config.force_secure_cookies or request.url.scheme == "https"

    def _set_cookie(self, response: Response, request: Request, session: AdminSession) -> None:
        set_session_cookie(response, session.session_id, PREFIX, secure=self._secure(request))

    def _clear_cookie(self, response: Response, request: Request) -> None:
        set_session_cookie(response, "", PREFIX, secure=self._secure(request))

    def _session(self, request: Request) -> AdminSession | None:
        return self.sessions.get(request.cookies.get(COOKIE_NAME))

    def _render(
        self,
        request: Request,
        template: str,
        session: AdminSession | None,
        *,
        status: int = 200,
        title: str,
        active: str = "",
        **context: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            title=title,
            active=active,
            admin=session.admin if session else None,
            csrf_token=session.csrf_token if session else "",
            flash=session.pop_flash() if session else [],
            nav=NAV,
            root=f"{PREFIX}/",
            static_url=STYLESHEET,
            sign_out_url=SIGN_OUT,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def _error_page(
        self, request: Request, session: AdminSession | None, status: int, heading: str, text: str
    ) -> HTMLResponse:
        signed_in = session is not None and session.signed_in
        return self._render(
            request,
            "error.html",
            session if signed_in else None,
            status=status,
            title=heading,
            heading=heading,
            message=text,
            back_url=EXEMPTIONS if signed_in else SIGN_IN,
            back_label="Back to the exemption requests" if signed_in else "Go to sign-in",
        )

    @staticmethod
    def _redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _check_origin(self, request: Request) -> None:
        csrf.check_origin(
            request.headers.get("origin"),
            request.headers.get("referer"),
            f"{request.url.scheme}://{request.url.netloc}",
            self.config.trusted_origins,
        )

    async def _post(self, request: Request) -> tuple[AdminSession | None, forms.Form]:
        """Origin check, form, session: what every POST starts with.

        Returns the session only if it is signed in; the CSRF token is checked
        against it (a forged or stale form raises :class:`ForgedRequestError`).
        """
        self._check_origin(request)
        form = await forms.read_form(request, self.config.max_form_bytes)
        session = self._session(request)
        if session is None or not session.signed_in:
            return None, form
        csrf.check_token(session.csrf_token, form.get(csrf.FIELD))
        return session, form

    async def _call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await run_in_threadpool(function, *args, **kwargs)

    # -------------------------------------------------------------- routes

    def _router(self) -> APIRouter:
        router = APIRouter(prefix=PREFIX, include_in_schema=False)
        router.add_api_route("", self.root, methods=["GET"])
        router.add_api_route("/", self.root, methods=["GET"])
        router.add_api_route("/static/admin.css", self.css, methods=["GET"])
        router.add_api_route("/sign-in", self.sign_in_page, methods=["GET"])
        router.add_api_route("/sign-in", self.sign_in, methods=["POST"])
        router.add_api_route("/sign-out", self.sign_out, methods=["POST"])
        router.add_api_route("/exemptions", self.exemptions_page, methods=["GET"])
        router.add_api_route("/exemptions/{request_id}/{verdict}", self.decide, methods=["POST"])
        router.add_api_route("/devices", self.devices_page, methods=["GET"])
        router.add_api_route("/enrollment-tokens", self.tokens_page, methods=["GET"])
        router.add_api_route("/enrollment-tokens", self.create_token, methods=["POST"])
        router.add_api_route("/audit", self.audit_page, methods=["GET"])
        return router

    async def guarded(self, request: Request, handler: Callable[[], Any]) -> Response:
        """Run a POST handler, turning the pages' refusals into HTML answers."""
        try:
            result: Response = await handler()
        except ForgedRequestError as exc:
            logger.warning("admin form refused: %s", exc.detail)
            return self._error_page(
                request,
                self._session(request),
                403,
                "This form cannot be accepted",
                "It did not come from a page of this collector, or the page was too old. "
                "Nothing was changed. Reload the page and try again.",
            )
        except forms.FormStatus as exc:
            return self._error_page(
                request, self._session(request), exc.status, "This form cannot be read", exc.detail
            )
        return result

    async def root(self, request: Request) -> Response:
        session = self._session(request)
        return self._redirect(EXEMPTIONS if session and session.signed_in else SIGN_IN)

    async def css(self, request: Request) -> Response:
        headers = {"ETag": self.stylesheet_etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == self.stylesheet_etag:
            return Response(status_code=304, headers=headers)
        return Response(self.stylesheet, media_type="text/css", headers=headers)

    def _signed_in(self, request: Request) -> AdminSession | RedirectResponse:
        session = self._session(request)
        if session is None or session.admin is None:
            path = request.url.path
            query = "?" + urlencode({"next": path}) if forms.NEXT_URL.fullmatch(path) else ""
            return self._redirect(SIGN_IN + query)
        return session

    # ----------------------------------------------------- sign-in, sign-out

    def _sign_in_form(
        self,
        request: Request,
        *,
        status: int = 200,
        error: str = "",
        name: str = "",
        next_url: str = "",
        session: AdminSession | None = None,
    ) -> HTMLResponse:
        fresh = session is None
        if session is None:
            session = self.sessions.start(None)
        notice = {
            "expired": "Your session ended. Sign in again.",
            "signed_out": "You are signed out.",
        }.get(request.query_params.get("notice", ""))
        if notice:
            session.flash.append(("info", notice))
        response = self._render(
            request,
            "sign_in.html",
            session,
            status=status,
            title="Sign in",
            error=error,
            name=name,
            next_url=next_url if forms.NEXT_URL.fullmatch(next_url) else "",
            sign_in_url=SIGN_IN,
        )
        response.headers["X-Robots-Tag"] = "noindex"
        if fresh:
            self._set_cookie(response, request, session)
        return response

    async def sign_in_page(self, request: Request) -> Response:
        session = self._session(request)
        if session is not None and session.signed_in:
            return self._redirect(EXEMPTIONS)
        return self._sign_in_form(
            request, next_url=request.query_params.get("next", ""), session=session
        )

    async def sign_in(self, request: Request) -> Response:
        async def handle() -> Response:
            self._check_origin(request)
            form = await forms.read_form(request, self.config.max_form_bytes)
            session = self._session(request)
            name = form.get("name").strip()
            next_url = form.get("next")
            if session is None:
                # The form's anonymous session ended: show a new form, keep the name.
                return self._sign_in_form(
                    request,
                    status=403,
                    error="The sign-in form expired. Please sign in again.",
                    name=name,
                    next_url=next_url,
                )
            if session.signed_in:
                csrf.check_token(session.csrf_token, form.get(csrf.FIELD))
                return self._redirect(EXEMPTIONS)
            csrf.check_token(session.csrf_token, form.get(csrf.FIELD))
            address = self._client(request)
            try:
                self.throttle.check(name, address)
            except SignInThrottledError as exc:
                response = self._sign_in_form(
                    request,
                    status=429,
                    error=f"Too many failed sign-ins. Try again in {exc.retry_after} seconds.",
                    name=name,
                    next_url=next_url,
                    session=session,
                )
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
            password = form.get("password")
            ok = bool(name) and await self._call(
                self.service.accounts.check_admin_password, name, password
            )
            if not ok:
                self.throttle.failed(name, address)
                await self._call(
                    self.service.record_event,
                    "web",
                    "admin.sign_in_failed",
                    name[:128],
                    {"address": address},
                )
                logger.info("failed admin sign-in")
                return self._sign_in_form(
                    request,
                    status=401,
                    error="That name and password do not match an admin.",
                    name=name,
                    next_url=next_url,
                    session=session,
                )
            self.throttle.succeeded(name, address)
            self.sessions.end(session.session_id)
            signed_in = self.sessions.start(name)
            await self._call(
                self.service.record_event,
                f"admin:{name}",
                "admin.signed_in",
                name,
                {"address": address},
            )
            redirect = self._redirect(
                next_url if forms.NEXT_URL.fullmatch(next_url) else EXEMPTIONS
            )
            self._set_cookie(redirect, request, signed_in)
            return redirect

        return await self.guarded(request, handle)

    async def sign_out(self, request: Request) -> Response:
        async def handle() -> Response:
            session, _ = await self._post(request)
            if session is not None and session.admin is not None:
                self.sessions.end(session.session_id)
                await self._call(
                    self.service.record_event,
                    f"admin:{session.admin}",
                    "admin.signed_out",
                    session.admin,
                    {},
                )
            response = self._redirect(SIGN_IN + "?notice=signed_out")
            self._clear_cookie(response, request)
            return response

        return await self.guarded(request, handle)

    # ------------------------------------------------------------ exemptions

    async def exemptions_page(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        records = await self._call(self.service.exemptions.list_exemptions)
        pending = [views.exemption_view(r) for r in records if r.status is ExemptionStatus.PENDING]
        pending.reverse()  # oldest first: the longest-waiting request is on top
        decided = [
            views.exemption_view(r) for r in records if r.status is not ExemptionStatus.PENDING
        ]
        decided.sort(key=lambda r: r["decided_at"], reverse=True)
        return self._render(
            request,
            "exemptions.html",
            session,
            title="Exemption requests",
            active="exemptions",
            pending=pending,
            decided=decided,
            max_days=MAX_GRANT_DAYS,
            max_reason=forms.MAX_REASON_CHARS,
        )

    async def decide(self, request: Request, request_id: str, verdict: str) -> Response:
        async def handle() -> Response:
            session, form = await self._post(request)
            if session is None or session.admin is None:
                return self._redirect(SIGN_IN + "?notice=expired")
            if verdict not in {"approve", "deny"} or not forms.REQUEST_ID.fullmatch(request_id):
                return self._error_page(
                    request, session, 404, "Not found", "There is no such action."
                )
            actor = f"admin:{session.admin}"
            try:
                if verdict == "approve":
                    days = form.integer("duration_days", "The grant's duration", 1, MAX_GRANT_DAYS)
                    grant = await self._call(
                        self.service.exemptions.approve, request_id, actor, duration_days=days
                    )
                    session.flash.append(
                        (
                            "info",
                            f"Approved request {request_id}: grant {grant.grant_id} "
                            f"until {views.when(grant.expires_ms)}.",
                        )
                    )
                else:
                    reason = form.get("reason").strip()
                    if not reason:
                        raise FormError("A denial needs a reason: the employee will see it.")
                    await self._call(self.service.exemptions.deny, request_id, actor, reason)
                    session.flash.append(("info", f"Denied request {request_id}."))
            except ForgedRequestError:
                raise
            except CollectorError as exc:
                session.flash.append(
                    ("error", f"Request {request_id} was not {verdict}d: {exc.detail or exc}")
                )
            return self._redirect(EXEMPTIONS)

        return await self.guarded(request, handle)

    # -------------------------------------------------------------- devices

    async def devices_page(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        devices = await self._call(self.service.accounts.list_devices)
        now = self.service.now()
        return self._render(
            request,
            "devices.html",
            session,
            title="Devices",
            active="devices",
            devices=[views.device_view(v.record, v.open_requests, now) for v in devices],
            exemptions_url=EXEMPTIONS,
            tokens_url=TOKENS,
        )

    # ------------------------------------------------------ enrollment tokens

    async def _tokens(
        self,
        request: Request,
        session: AdminSession,
        *,
        status: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        records = await self._call(self.service.accounts.list_enrollment_tokens)
        now_ms = self.service.now_ms()
        defaults = {
            "tenant": "",
            "group": "",
            "expires_minutes": str(self.service.config.enrollment_token_minutes),
        }
        return self._render(
            request,
            "tokens.html",
            session,
            status=status,
            title="Enrollment tokens",
            active="tokens",
            revealed=session.pop_reveal(),
            tokens=[views.token_view(r, now_ms) for r in records],
            form={**defaults, **(form or {})},
            create_url=TOKENS,
            max_minutes=forms.MAX_TOKEN_MINUTES,
        )

    async def tokens_page(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        return await self._tokens(request, session)

    async def create_token(self, request: Request) -> Response:
        async def handle() -> Response:
            session, form = await self._post(request)
            if session is None or session.admin is None:
                return self._redirect(SIGN_IN + "?notice=expired")
            submitted = {k: form.get(k).strip() for k in ("tenant", "group", "expires_minutes")}
            try:
                minutes = form.integer("expires_minutes", "Valid for", 1, forms.MAX_TOKEN_MINUTES)
                created = await self._call(
                    self.service.accounts.create_enrollment_token,
                    submitted["tenant"],
                    submitted["group"],
                    minutes,
                    f"admin:{session.admin}",
                )
            except ForgedRequestError:
                raise
            except CollectorError as exc:
                session.flash.append(("error", f"No token was created: {exc.detail or exc}"))
                return await self._tokens(request, session, status=422, form=submitted)
            session.reveal = {
                "token": created.token,
                "tenant": created.record.tenant,
                "group": created.record.group,
                "expires": views.when(created.record.expires_at_ms),
            }
            session.flash.append(("info", f"Created enrollment token {created.record.token_id}."))
            return self._redirect(TOKENS)

        return await self.guarded(request, handle)

    # ------------------------------------------------------------------ audit

    async def audit_page(self, request: Request) -> Response:
        session = self._signed_in(request)
        if isinstance(session, Response):
            return session
        before_text = request.query_params.get("before", "")
        if before_text and not (before_text.isdigit() and len(before_text) <= 18):
            return self._error_page(
                request, session, 400, "Not a page of the audit log", "Use the page links."
            )
        before = int(before_text) if before_text else None
        size = self.config.audit_page_size
        events = await self._call(self.service.audit, size + 1, before)
        older = events[size - 1].event_id if len(events) > size else None
        return self._render(
            request,
            "audit.html",
            session,
            title="Audit log",
            active="audit",
            events=[views.audit_view(e) for e in events[:size]],
            first_page=before is None,
            newest_url=AUDIT,
            older_url=f"{AUDIT}?before={older}" if older is not None else "",
        )


def install_admin_pages(
    app: FastAPI, services: CollectorService, config: AdminPagesConfig | None = None
) -> AdminPages:
    """Mount the admin pages under ``/admin/`` on the collector's app.

    Returns the :class:`AdminPages` (its ``sessions`` and ``throttle`` are
    there for tests and for an operator's "sign everyone out"), also kept as
    ``app.state.admin_pages``. On an app that has the pages already, the
    routes stay and the pages are reconfigured instead (every session ends):
    a test can install them with its own configuration on an app whose
    ``create_app`` installed them.
    """
    config = config or AdminPagesConfig()
    pages: AdminPages | None = getattr(app.state, "admin_pages", None)
    if pages is not None:
        pages.configure(services, config)
        return pages
    pages = AdminPages(services, config)
    app.include_router(pages.router)
    app.state.admin_pages = pages
    logger.info("admin pages mounted under %s/", PREFIX)
    return pages


__all__ = ["AdminPages", "install_admin_pages"]
