"""``overt install-autostart``: the generated files for each platform, in a temp HOME."""

from __future__ import annotations

import configparser
import os
import plistlib
import shlex
import stat
from pathlib import Path

import pytest

from ui.autostart import (
    AutostartSpec,
    cmd_line,
    desktop_exec,
    main,
    plan,
    systemd_exec,
)
from ui.errors import AutostartError

PYTHON = "/opt/overt venv/bin/python3"
AGENT = ["--trust", "/home/ann/keys/it 1.pub", "--tenant", "example-corp", "--sink", "batches"]
TRICKY = ["a b", 'quote"d', "dollar$HOME", "100%", "back\\slash", "semi;colon", "tab\tx",
          "tick`s", "emoji ✓", "", "x=y"]  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "APPDATA", "USERPROFILE"):
        monkeypatch.delenv(name, raising=False)
    return home


def install(*args: str) -> int:
    return main(["--python", PYTHON, *args, "--", *AGENT], prog="overt install-autostart")


# -- reference parsers: what the desktop, systemd and cmd.exe will read -----------


def parse_desktop_exec(value: str) -> list[str]:
    """The Desktop Entry Specification's reading of an Exec value."""
    # 1. string escapes of the desktop file
    unescaped, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            unescaped.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[value[i + 1]])
            i += 2
        else:
            unescaped.append(value[i])
            i += 1
    text = "".join(unescaped)
    # 2. quoting of arguments
    args, current, quoted, in_word, i = [], [], False, False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                assert text[i + 1] in '"`$\\', f"bad escape in {text!r}"
                current.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                quoted = False
            else:
                current.append(c)
        elif c == '"':
            quoted, in_word = True, True
        elif c == " ":
            if in_word:
                args.append("".join(current))
            current, in_word = [], False
        else:
            assert c not in "\\`$'", f"reserved {c!r} outside quotes in {text!r}"
            current.append(c)
            in_word = True
        i += 1
    assert not quoted
    if in_word:
        args.append("".join(current))
    # 3. field codes: %% is a literal %
    return [a.replace("%%", "\0").replace("\0", "%") for a in args]


def parse_systemd_exec(value: str) -> list[str]:
    words = shlex.split(value, posix=True)
    return [w.replace("%%", "\0").replace("\0", "%").replace("$$", "$") for w in words]


def parse_cmd_start(line: str) -> list[str]:
    assert line.startswith('start "" ')
    rest = line[len('start "" ') :]
    parts = rest.split('" "')
    assert parts[0].startswith('"')
    assert parts[-1].endswith('"')
    parts[0], parts[-1] = parts[0][1:], parts[-1][:-1]
    return [p.replace("%%", "%") for p in parts]


# -- quoting ------------------------------------------------------------------------


def test_desktop_exec_round_trips_every_awkward_argument() -> None:
    args = [PYTHON, "-m", "overt", "tray", "--", *TRICKY]
    assert parse_desktop_exec(desktop_exec(args)) == args


def test_systemd_exec_round_trips_every_awkward_argument() -> None:
    args = [PYTHON, *TRICKY]
    assert parse_systemd_exec(systemd_exec(args)) == args


def test_cmd_line_round_trips_and_refuses_a_double_quote() -> None:
    args = [r"C:\Program Files\Overt\pythonw.exe", *(a for a in TRICKY if '"' not in a and a)]
    assert parse_cmd_start('start "" ' + cmd_line(args)) == args
    with pytest.raises(AutostartError, match="double quote"):
        cmd_line(['say "hi"'])


@pytest.mark.parametrize("formatter", [desktop_exec, systemd_exec, cmd_line])
def test_a_line_break_is_refused_everywhere(formatter: object) -> None:
    with pytest.raises(AutostartError, match="line break"):
        formatter(["a\nb"])  # type: ignore[operator]


# -- the files, per platform ----------------------------------------------------------


def test_linux_writes_an_xdg_autostart_entry_and_a_systemd_user_unit(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install("--platform", "linux") == 0
    desktop = home / ".config" / "autostart" / "overt-tray.desktop"
    unit = home / ".config" / "systemd" / "user" / "overt-tray.service"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read_string(desktop.read_text(encoding="utf-8"))
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Name"] == "Overt tray"
    assert section["Terminal"] == "false"
    expected = [PYTHON, "-m", "overt", "tray", "--", *AGENT]
    assert parse_desktop_exec(section["Exec"]) == expected

    service = configparser.ConfigParser(interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read_string(unit.read_text(encoding="utf-8"))
    assert parse_systemd_exec(service["Service"]["ExecStart"]) == expected
    assert service["Install"]["WantedBy"] == "graphical-session.target"
    assert service["Unit"]["PartOf"] == "graphical-session.target"
    assert stat.S_IMODE(desktop.stat().st_mode) == 0o644
    out = capsys.readouterr().out
    assert f"wrote {desktop}" in out
    assert "systemctl --user enable --now overt-tray.service" in out
    assert sorted(p.name for p in desktop.parent.iterdir()) == ["overt-tray.desktop"]


def test_linux_honours_xdg_config_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert install("--platform", "linux") == 0
    assert (tmp_path / "cfg" / "autostart" / "overt-tray.desktop").is_file()
    assert not (home / ".config").exists()


def test_macos_writes_a_launch_agent(home: Path) -> None:
    assert install("--platform", "macos") == 0
    path = home / "Library" / "LaunchAgents" / "org.overt.tray.plist"
    doc = plistlib.loads(path.read_bytes())
    assert doc["Label"] == "org.overt.tray"
    assert doc["ProgramArguments"] == [PYTHON, "-m", "overt", "tray", "--", *AGENT]
    assert doc["RunAtLoad"] is True
    assert doc["LimitLoadToSessionType"] == "Aqua"


def test_windows_writes_a_startup_cmd(home: Path) -> None:
    assert install("--platform", "windows") == 0
    path = (home / "AppData" / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs"
            / "Startup" / "overt-tray.cmd")  # fmt: skip
    raw = path.read_bytes()
    assert raw.startswith(b"@echo off\r\n")
    lines = raw.decode("utf-8").split("\r\n")
    (start,) = [line for line in lines if line.startswith("start ")]
    assert parse_cmd_start(start) == [PYTHON, "-m", "overt", "tray", "--", *AGENT]


def test_windows_uses_appdata_and_pythonw_when_there(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "pythonw.exe").touch()
    python = str(tmp_path / "py" / "python.exe")
    assert main(["--platform", "windows", "--python", python]) == 0
    path = tmp_path / "Roaming/Microsoft/Windows/Start Menu/Programs/Startup/overt-tray.cmd"
    assert "pythonw.exe" in path.read_text(encoding="utf-8")


# -- dry run, reinstall, uninstall, failures --------------------------------------------


def test_dry_run_prints_and_writes_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert install("--platform", "linux", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would write" in out
    assert "[Desktop Entry]" in out
    assert "ExecStart=" in out
    assert list(home.iterdir()) == []


def test_reinstalling_replaces_the_file_atomically(home: Path) -> None:
    assert main(["--platform", "linux", "--python", "/old/python"]) == 0
    assert install("--platform", "linux") == 0
    desktop = home / ".config" / "autostart" / "overt-tray.desktop"
    assert "/old/python" not in desktop.read_text(encoding="utf-8")
    leftovers = [p for p in desktop.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_uninstall_removes_exactly_what_install_wrote(
    home: Path, platform: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install("--platform", platform) == 0
    files = [f.path for f in plan(AutostartSpec(platform, home, PYTHON))]
    neighbour = files[0].parent / "someone-elses.desktop"
    neighbour.write_text("keep me", encoding="utf-8")
    assert main(["--platform", platform, "--uninstall", "--dry-run"]) == 0
    assert all(f.exists() for f in files)
    assert main(["--platform", platform, "--uninstall"]) == 0
    assert not any(f.exists() for f in files)
    assert neighbour.read_text(encoding="utf-8") == "keep me"
    assert main(["--platform", platform, "--uninstall"]) == 0
    assert "no autostart files were installed" in capsys.readouterr().out


def test_an_unwritable_place_is_a_clear_error_and_exit_1(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / ".config").write_text("a file where a directory should be", encoding="utf-8")
    assert install("--platform", "linux") == 1
    err = capsys.readouterr().err
    assert err.startswith("overt install-autostart: cannot write in ")
    assert (home / ".config").read_text(encoding="utf-8").startswith("a file")


def test_an_argument_a_format_cannot_carry_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--platform", "windows", "--python", PYTHON, "--", 'say "hi"']) == 1
    assert "cannot carry a double quote" in capsys.readouterr().err
    assert list(home.iterdir()) == []


def test_without_a_home_it_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HOME", "USERPROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--platform", "linux"]) == 1
    assert "HOME" in capsys.readouterr().err


def test_the_default_python_is_this_one(home: Path) -> None:
    assert main(["--platform", "macos"]) == 0
    doc = plistlib.loads((home / "Library/LaunchAgents/org.overt.tray.plist").read_bytes())
    assert os.path.isabs(doc["ProgramArguments"][0])
