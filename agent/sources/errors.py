"""The exceptions ``agent.sources`` raises.

::

    SourceError                 base of everything raised by agent.sources
    ├── NoDisplayError          no desktop session to attach to (e.g. DISPLAY unset)
    └── BackendUnavailableError the chosen backend cannot run here (missing
                                library, wrong platform, bad override value)

OS and library exceptions (python-xlib, pynput, mss, ctypes) are wrapped at the
backend boundary into one of these; a window vanishing mid-query is not an
error at all (the probe returns None).
"""

from __future__ import annotations


class SourceError(Exception):
    """Base class for errors from the OS sources."""


class NoDisplayError(SourceError):
    """There is no desktop to capture from."""


class BackendUnavailableError(SourceError):
    """The selected backend cannot be used on this machine."""


NO_X_DISPLAY = (
    "no X display: set DISPLAY, or run under Xvfb; Wayland sessions are not supported yet"
)
