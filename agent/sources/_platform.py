"""Backend selection shared by the input, window and screen sources.

One function decides which backend a source uses: an environment override
first (``OVERT_<KIND>_BACKEND``), then the platform. Nothing here imports an
OS library.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from agent.sources.errors import NO_X_DISPLAY, BackendUnavailableError, NoDisplayError


def choose_backend(
    kind: str,
    choices: tuple[str, ...],
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    native: Mapping[str, str] | None = None,
) -> str:
    """Name of the backend for ``kind`` ("window", "input", "screen").

    ``OVERT_<KIND>_BACKEND`` wins when set; otherwise ``xorg`` on Linux and
    BSDs (DISPLAY must be set, or :class:`NoDisplayError` says how to fix it),
    ``win32`` on Windows, ``darwin`` on macOS, each mapped through ``native``
    when one library serves several platforms (``{"xorg": "pynput", ...}``).
    Only names in ``choices`` are accepted.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    variable = f"OVERT_{kind.upper()}_BACKEND"
    override = env.get(variable, "").strip().lower()
    if override:
        if override not in choices:
            raise BackendUnavailableError(
                f"{variable}={override!r} is not a {kind} backend; "
                f"choose one of {', '.join(choices)}"
            )
        return override
    if platform == "win32":
        name = "win32"
    elif platform == "darwin":
        name = "darwin"
    else:
        if not env.get("DISPLAY"):
            raise NoDisplayError(NO_X_DISPLAY)
        name = "xorg"
    if native is not None:
        name = native.get(name, name)
    if name not in choices:
        raise BackendUnavailableError(f"no {kind} backend for platform {platform!r}")
    return name
