"""``overt collector serve`` with the admin pages mounted, for the browser test.

Runs the real serve command (same argument parsing, socket, uvicorn, store)
in this process; the only difference is that the app ``create_app`` builds
gets :func:`collector.web.install_admin_pages` called on it unless it has
the pages already (``app.state.admin_pages``). Once ``overt collector serve`` mounts the
pages itself this wrapper changes nothing.

Usage: ``python serve_with_pages.py --data DIR --port 0 [serve options]``.
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI

import collector.api
import collector.server
from collector.cli import main
from collector.web import AdminPagesConfig, install_admin_pages

_create_app = collector.api.create_app


def _create_app_with_pages(*args: Any, **kwargs: Any) -> FastAPI:
    app = _create_app(*args, **kwargs)
    if getattr(app.state, "admin_pages", None) is None:  # serve did not mount them
        install_admin_pages(app, app.state.service, AdminPagesConfig())
    return app


if __name__ == "__main__":
    collector.server.create_app = _create_app_with_pages  # type: ignore[attr-defined]
    sys.exit(main(["serve", *sys.argv[1:]]))
