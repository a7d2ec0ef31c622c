"""The collector's admin web pages (server-rendered, no JavaScript).

Owns the pages under ``/admin/``: sign-in and sign-out, the exemption queue,
devices, enrollment tokens and the audit log, with their sessions, CSRF
checks and sign-in throttling. It holds no business logic: every decision
goes through the collector's service layer, the same one the JSON admin API
calls.
"""

from collector.web.config import AdminPagesConfig
from collector.web.pages import AdminPages, install_admin_pages

__all__ = ["AdminPages", "AdminPagesConfig", "install_admin_pages"]
