"""Power source and network cost: the two host facts the upload rules depend on.

This module owns how the agent learns whether the machine runs on battery
(the policy's ``upload.ac_only``) and whether its network is metered
(``upload.unmetered_only``). It does not decide anything: the uploader feeds
these facts to ``agent.pipeline.decision.upload_allowed``.

One small interface, :class:`ConditionsProbe` (``read() -> HostConditions``),
with two backends chosen by :func:`select_conditions_probe` (override
``OVERT_POWER_BACKEND`` = system | fake):

- :class:`SystemConditions`: ``psutil.sensors_battery()`` for power (no
  battery, i.e. ``None``, means a desktop on mains: not on battery); on Linux,
  NetworkManager through ``nmcli -t -f GENERAL.STATE,GENERAL.METERED device
  show`` for the network (metered when a connected device says ``yes`` or
  ``yes (guessed)``). Where the OS does not tell (no nmcli, nmcli failing,
  another platform, psutil without battery support), the answer is ``None``:
  unknown, which the uploader treats as allowed.
- :class:`FakeConditions`: settable values, for tests.

Importing this module imports neither psutil nor runs a process; the system
backend does both when asked. Failures of either probe are logged once per
kind and answered with ``None``; they never raise.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.sources.errors import BackendUnavailableError

log = logging.getLogger(__name__)

NMCLI_COMMAND = ("nmcli", "-t", "-f", "GENERAL.STATE,GENERAL.METERED", "device", "show")
_NMCLI_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HostConditions:
    """What the OS says about power and network; None where it does not know."""

    on_battery: bool | None
    metered: bool | None


class ConditionsProbe(Protocol):
    def read(self) -> HostConditions:
        """The current conditions; never raises."""
        ...


class FakeConditions:
    """A probe whose answers a test sets (``on_battery``, ``metered``)."""

    def __init__(self, on_battery: bool | None = False, metered: bool | None = False) -> None:
        self.on_battery = on_battery
        self.metered = metered
        self.reads = 0

    def read(self) -> HostConditions:
        self.reads += 1
        return HostConditions(self.on_battery, self.metered)


#: Runs a command and returns its standard output; raises OSError or
#: subprocess.SubprocessError on failure.
CommandRunner = Callable[[tuple[str, ...]], str]


def _run(command: tuple[str, ...]) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=_NMCLI_TIMEOUT_S, check=True
    )
    return done.stdout


class SystemConditions:
    """Power from psutil; network cost from NetworkManager's ``nmcli`` on Linux."""

    def __init__(
        self,
        *,
        platform: str | None = None,
        which: Callable[[str], str | None] = shutil.which,
        run: CommandRunner = _run,
        battery: Callable[[], object] | None = None,
    ) -> None:
        self._platform = sys.platform if platform is None else platform
        self._which = which
        self._run = run
        self._battery = battery
        self._warned: set[str] = set()

    def read(self) -> HostConditions:
        return HostConditions(self.on_battery(), self.metered())

    def on_battery(self) -> bool | None:
        try:
            if self._battery is not None:
                status = self._battery()
            else:
                import psutil

                status = psutil.sensors_battery()
        except (AttributeError, NotImplementedError, OSError, RuntimeError) as exc:
            self._warn("power", f"cannot read the power source: {exc}")
            return None
        if status is None:
            return False  # no battery: a desktop on mains
        plugged = getattr(status, "power_plugged", None)
        return None if plugged is None else not plugged

    def metered(self) -> bool | None:
        if not self._platform.startswith("linux"):
            return None
        if self._which("nmcli") is None:
            return None
        try:
            output = self._run(NMCLI_COMMAND)
        except (OSError, subprocess.SubprocessError) as exc:
            self._warn("network", f"nmcli failed: {type(exc).__name__}")
            return None
        return parse_nmcli_metered(output)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s (treated as unknown)", message)


def parse_nmcli_metered(output: str) -> bool | None:
    """Whether the network is metered, from ``nmcli -t -f GENERAL.STATE,GENERAL.METERED
    device show``: True if a connected device is metered, False if every connected
    device says ``no``, None when no connected device tells."""
    devices: list[dict[str, str]] = [{}]
    for line in output.splitlines():
        if not line.strip():
            devices.append({})
            continue
        name, _, value = line.partition(":")
        if name in devices[-1]:  # no blank line between devices
            devices.append({})
        devices[-1][name.strip()] = value.strip().lower()
    values: list[str] = []
    for device in devices:
        metered = device.get("GENERAL.METERED")
        if metered is None:
            continue
        state = device.get("GENERAL.STATE")
        if state is not None and not state.startswith("100"):
            continue  # not connected
        values.append(metered)
    if any(v.startswith("yes") for v in values):
        return True
    if values and all(v.startswith("no") for v in values):
        return False
    return None


def select_conditions_probe(env: Mapping[str, str] | None = None) -> ConditionsProbe:
    """The probe for this machine; ``OVERT_POWER_BACKEND`` = system | fake overrides."""
    env = os.environ if env is None else env
    choice = env.get("OVERT_POWER_BACKEND", "").strip().lower() or "system"
    if choice == "system":
        return SystemConditions()
    if choice == "fake":
        return FakeConditions()
    raise BackendUnavailableError(
        f"OVERT_POWER_BACKEND={choice!r} is not a power backend; choose one of system, fake"
    )
