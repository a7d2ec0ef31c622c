"""Power and network probing for the upload rules (agent.sources.power): what the
OS says, and "unknown" wherever it does not say."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from agent.sources.errors import BackendUnavailableError
from agent.sources.power import (
    NMCLI_COMMAND,
    FakeConditions,
    HostConditions,
    SystemConditions,
    parse_nmcli_metered,
    select_conditions_probe,
)

WIRED_UNMETERED = "GENERAL.STATE:100 (connected)\nGENERAL.METERED:no\n"
PHONE_HOTSPOT = "GENERAL.STATE:100 (connected)\nGENERAL.METERED:yes (guessed)\n"
LOOPBACK = "GENERAL.STATE:100 (connected (externally))\nGENERAL.METERED:unknown\n"
DISCONNECTED_METERED = "GENERAL.STATE:30 (disconnected)\nGENERAL.METERED:yes\n"


@pytest.mark.parametrize(
    ("output", "metered"),
    [
        (WIRED_UNMETERED, False),
        (PHONE_HOTSPOT, True),
        (WIRED_UNMETERED + "\n" + PHONE_HOTSPOT, True),
        (WIRED_UNMETERED + "\n" + DISCONNECTED_METERED, False),
        (LOOPBACK, None),
        (WIRED_UNMETERED + "\n" + LOOPBACK, None),
        ("", None),
        ("GENERAL.METERED:no (guessed)\nGENERAL.METERED:no\n", False),  # no state field
        ("GENERAL.STATE:100 (connected)\nGENERAL.METERED:yes\nGENERAL.STATE:20\n", True),
    ],
    ids=[
        "wired",
        "hotspot",
        "wired-and-hotspot",
        "disconnected-metered-ignored",
        "loopback-unknown",
        "one-unknown",
        "empty",
        "no-state-field",
        "no-blank-line",
    ],
)
def test_nmcli_output_is_read_per_connected_device(output: str, metered: bool | None) -> None:
    assert parse_nmcli_metered(output) is metered


def _system(**kwargs: object) -> SystemConditions:
    defaults: dict[str, object] = {
        "platform": "linux",
        "which": lambda name: "/usr/bin/nmcli",
        "run": lambda command: WIRED_UNMETERED,
        "battery": lambda: None,
    }
    defaults.update(kwargs)
    return SystemConditions(**defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("battery", "on_battery"),
    [
        (None, False),  # a desktop on mains
        (SimpleNamespace(percent=80, power_plugged=True), False),
        (SimpleNamespace(percent=80, power_plugged=False), True),
        (SimpleNamespace(percent=80, power_plugged=None), None),
    ],
    ids=["desktop", "plugged", "unplugged", "unknown"],
)
def test_power_comes_from_the_battery_sensor(battery: object, on_battery: bool | None) -> None:
    assert _system(battery=lambda: battery).on_battery() is on_battery


def test_a_failing_battery_sensor_means_unknown() -> None:
    def broken() -> object:
        raise OSError("no sysfs")

    assert _system(battery=broken).on_battery() is None


def test_the_network_is_asked_of_nmcli_with_the_documented_command() -> None:
    commands: list[tuple[str, ...]] = []

    def run(command: tuple[str, ...]) -> str:
        commands.append(command)
        return PHONE_HOTSPOT

    assert _system(run=run).read() == HostConditions(on_battery=False, metered=True)
    assert commands == [NMCLI_COMMAND]
    assert NMCLI_COMMAND[:4] == ("nmcli", "-t", "-f", "GENERAL.STATE,GENERAL.METERED")


@pytest.mark.parametrize(
    "setup",
    [
        {"which": lambda name: None},
        {"platform": "darwin"},
        {"platform": "win32"},
        {"run": lambda c: (_ for _ in ()).throw(subprocess.CalledProcessError(8, c))},
        {"run": lambda c: (_ for _ in ()).throw(subprocess.TimeoutExpired(c, 5))},
        {"run": lambda c: (_ for _ in ()).throw(OSError("exec failed"))},
    ],
    ids=["no-nmcli", "macos", "windows", "nmcli-fails", "nmcli-hangs", "exec-fails"],
)
def test_where_the_os_does_not_tell_the_network_is_unknown(setup: dict[str, object]) -> None:
    assert _system(**setup).metered() is None


def test_the_real_system_probe_answers_without_raising() -> None:
    conditions = SystemConditions().read()
    assert conditions.on_battery in (True, False, None)
    assert conditions.metered in (True, False, None)


def test_the_fake_probe_answers_what_it_is_told() -> None:
    fake = FakeConditions(on_battery=True, metered=None)
    assert fake.read() == HostConditions(True, None)
    fake.metered = True
    assert fake.read().metered is True
    assert fake.reads == 2


def test_the_backend_is_chosen_by_environment() -> None:
    assert isinstance(select_conditions_probe({}), SystemConditions)
    assert isinstance(select_conditions_probe({"OVERT_POWER_BACKEND": "fake"}), FakeConditions)
    with pytest.raises(BackendUnavailableError, match="system, fake"):
        select_conditions_probe({"OVERT_POWER_BACKEND": "acpi"})
