"""Where the admin pages live: every path under ``/admin/``, and the navigation.

One place for the paths, so that the routes, the redirects and the links the
views put in the templates cannot disagree.
"""

from __future__ import annotations

PREFIX = "/admin"
SIGN_IN = f"{PREFIX}/sign-in"
SIGN_OUT = f"{PREFIX}/sign-out"
EXEMPTIONS = f"{PREFIX}/exemptions"
DEVICES = f"{PREFIX}/devices"
TOKENS = f"{PREFIX}/enrollment-tokens"
AUDIT = f"{PREFIX}/audit"
STYLESHEET = f"{PREFIX}/static/admin.css"

NAV = (
    ("exemptions", "Exemption requests", EXEMPTIONS),
    ("devices", "Devices", DEVICES),
    ("tokens", "Enrollment tokens", TOKENS),
    ("audit", "Audit log", AUDIT),
)
