"""The collector's admin web pages (server-rendered, no JavaScript).

Owns the pages under ``/admin/``: sign-in and sign-out, the exemption queue,
devices, enrollment tokens and the audit log, with their sessions, CSRF
checks and sign-in throttling. It holds no business logic: every decision
goes through the collector's service layer, the same one the JSON admin API
calls.

Public surface: :class:`AdminPagesConfig` and
``install_admin_pages(app, service, config) -> AdminPages``. The pages
module (FastAPI, Jinja2, the service) is imported only when one of its names
is first used, so that ``collector.config`` may import
:class:`AdminPagesConfig` without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from collector.web.config import AdminPagesConfig

if TYPE_CHECKING:
    from collector.web.pages import AdminPages, install_admin_pages

__all__ = ["AdminPages", "AdminPagesConfig", "install_admin_pages"]


def __getattr__(name: str) -> Any:
    if name in {"AdminPages", "install_admin_pages"}:
        from collector.web import pages

        return getattr(pages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
