"""The agent's OS sources: input hooks, window probe, screen grabs.

This package is the only code in the agent that touches the operating system.
Each concern has one small interface and a backend chosen in one function,
with an environment override:

- input: :class:`InputHooks`, chosen by :func:`select_input_hooks`,
  override ``OVERT_INPUT_BACKEND`` = pynput | fake;
- windows: :class:`WindowProbe`, chosen by :func:`select_window_probe`,
  override ``OVERT_WINDOW_BACKEND`` = xorg | win32 | darwin | fake;
- screen: :class:`ScreenGrabber`, chosen by :func:`select_screen_grabber`,
  override ``OVERT_SCREEN_BACKEND`` = mss | fake.

Input events reach the agent through an :class:`EventQueue`. Everything
produced is a value from :mod:`agent.events`.

Importing this package imports no OS library and touches no display, disk or
network; backends import pynput, python-xlib, mss, ctypes.windll or pyobjc
when they are constructed or started. It does not decide what is recorded:
that is the pipeline's job.
"""

from agent.sources.errors import BackendUnavailableError, NoDisplayError, SourceError
from agent.sources.input import (
    EventQueue,
    InputHooks,
    normalise_button,
    normalise_key,
    select_input_hooks,
)
from agent.sources.screen import ScreenGrabber, grab_region, select_screen_grabber
from agent.sources.window import FocusCallback, WindowProbe, select_window_probe

__all__ = [
    "BackendUnavailableError",
    "EventQueue",
    "FocusCallback",
    "InputHooks",
    "NoDisplayError",
    "ScreenGrabber",
    "SourceError",
    "WindowProbe",
    "grab_region",
    "normalise_button",
    "normalise_key",
    "select_input_hooks",
    "select_screen_grabber",
    "select_window_probe",
]
