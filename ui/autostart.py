"""``overt install-autostart``: start the tray at login, on Linux, macOS or Windows.

This module owns the autostart files and nothing else:

========  ===================================================================
linux     ``$XDG_CONFIG_HOME/autostart/overt-tray.desktop`` (XDG autostart,
          read by every desktop) and
          ``$XDG_CONFIG_HOME/systemd/user/overt-tray.service`` (a systemd
          user unit, for sessions that start graphical-session.target;
          enable it with ``systemctl --user enable overt-tray.service``).
          ``$XDG_CONFIG_HOME`` defaults to ``~/.config``. Both may be active:
          the tray runs once per control socket and a second one exits.
macos     ``~/Library/LaunchAgents/org.overt.tray.plist`` (a LaunchAgent)
windows   ``%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs\\Startup\\overt-tray.cmd``
          (a .lnk shortcut would need COM; a .cmd does not)
========  ===================================================================

Each file runs ``<this Python> -m overt tray``; the arguments given after
``--`` are the agent's, passed on as ``overt tray -- <them>`` (so
``overt install-autostart -- --trust it-1.pub …`` reaches ``overt agent
run`` when the tray starts the agent). Every argument is quoted for
the format it is written in; an argument that a format cannot carry (a
newline anywhere, a double quote in a .cmd) is refused with a clear error
rather than written wrong.

Guarantees: files are written atomically (temporary file in the same
directory, fsync, rename, fsync of the directory), so after a crash each
file is either the old one or the new one; ``--uninstall`` removes only the
files this module names; ``--dry-run`` prints what would be written or
removed and touches nothing.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from overt.files import atomic_write
from ui.errors import AutostartError

PLATFORMS = ("linux", "macos", "windows")
LAUNCHD_LABEL = "org.overt.tray"
DESCRIPTION = "Overt tray: shows when capture is on; pause, discard, consent"


@dataclass(frozen=True, slots=True)
class AutostartSpec:
    """What to install where: built once from the command line and environment."""

    platform: str
    home: Path
    python: str
    agent_args: tuple[str, ...] = ()
    xdg_config_home: Path | None = None
    appdata: Path | None = None

    @property
    def command(self) -> tuple[str, ...]:
        """The command line that starts the tray."""
        extra = ("--", *self.agent_args) if self.agent_args else ()
        return (self.python, "-m", "overt", "tray", *extra)


@dataclass(frozen=True, slots=True)
class AutostartFile:
    path: Path
    content: bytes
    mode: int = 0o644


def current_platform() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    raise AutostartError(f"no autostart support for {sys.platform}; pass --platform")


def spec_from_environment(
    platform: str, agent_args: Sequence[str], python: str, env: Mapping[str, str]
) -> AutostartSpec:
    home = env.get("HOME") or env.get("USERPROFILE")
    if not home:
        raise AutostartError("neither HOME nor USERPROFILE is set: cannot find your home")
    xdg = env.get("XDG_CONFIG_HOME")
    appdata = env.get("APPDATA")
    return AutostartSpec(
        platform=platform,
        home=Path(home),
        python=python,
        agent_args=tuple(agent_args),
        # The XDG specification ignores a relative XDG_CONFIG_HOME.
        xdg_config_home=Path(xdg) if xdg and os.path.isabs(xdg) else None,
        appdata=Path(appdata) if appdata else None,
    )


# -- quoting ------------------------------------------------------------------


def _no_newlines(args: Sequence[str]) -> None:
    for arg in args:
        if "\n" in arg or "\r" in arg or "\0" in arg:
            raise AutostartError(f"an argument holds a line break or NUL: {arg!r}")


def desktop_exec(args: Sequence[str]) -> str:
    """The ``Exec`` value of a desktop entry for ``args``.

    Desktop Entry Specification: an argument with a reserved character is
    double-quoted, and inside the quotes ``"``, `````, ``$`` and ``\\`` are
    backslash-escaped; ``%`` is doubled (field codes). The value is then a
    desktop-file string, in which a backslash is written twice.
    """
    _no_newlines(args)
    reserved = set(" \t\"'\\><~|&;$*?#()`=%")
    words = []
    for arg in args:
        arg = arg.replace("%", "%%")
        if arg and not set(arg) & reserved:
            words.append(arg)
            continue
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        words.append(f'"{escaped}"')
    return " ".join(words).replace("\\", "\\\\")


def systemd_exec(args: Sequence[str]) -> str:
    """The ``ExecStart`` value for ``args``: each word double-quoted with C-style
    escapes, ``%`` doubled (specifiers) and ``$`` doubled (variable expansion)."""
    _no_newlines(args)
    words = []
    for arg in args:
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("%", "%%").replace("$", "$$")
        words.append(f'"{escaped}"')
    return " ".join(words)


def cmd_line(args: Sequence[str]) -> str:
    """A .cmd command line for ``args``: double-quoted, ``%`` doubled.

    Inside double quotes cmd.exe takes ``&|<>^`` literally; ``%`` still
    expands in a batch file, so it is doubled. A double quote cannot be
    carried and is refused.
    """
    _no_newlines(args)
    words = []
    for arg in args:
        if '"' in arg:
            raise AutostartError(f"a Windows startup file cannot carry a double quote: {arg!r}")
        words.append('"' + arg.replace("%", "%%") + '"')
    return " ".join(words)


# -- the files ----------------------------------------------------------------


def _xdg_config(spec: AutostartSpec) -> Path:
    return spec.xdg_config_home or spec.home / ".config"


def desktop_entry(spec: AutostartSpec) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.0\n"
        "Name=Overt tray\n"
        f"Comment={DESCRIPTION}\n"
        f"Exec={desktop_exec(spec.command)}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def systemd_unit(spec: AutostartSpec) -> str:
    return (
        "[Unit]\n"
        f"Description={DESCRIPTION}\n"
        "PartOf=graphical-session.target\n"
        "After=graphical-session.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={systemd_exec(spec.command)}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=graphical-session.target\n"
    )


def launch_agent_plist(spec: AutostartSpec) -> bytes:
    _no_newlines(spec.command)
    logs = spec.home / "Library" / "Logs" / "overt-tray.log"
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": list(spec.command),
            "RunAtLoad": True,
            "LimitLoadToSessionType": "Aqua",
            "ProcessType": "Interactive",
            "StandardErrorPath": str(logs),
        },
        fmt=plistlib.FMT_XML,
    )


def startup_cmd(spec: AutostartSpec) -> bytes:
    python = spec.python
    # pythonw.exe runs without a console window; use it when it sits next to python.exe.
    windowless = Path(python).with_name("pythonw.exe")
    if Path(python).name.lower() == "python.exe" and windowless.exists():
        python = str(windowless)
    command = (python, *spec.command[1:])
    text = f'@echo off\r\nrem {DESCRIPTION}\r\nstart "" {cmd_line(command)}\r\n'
    return text.encode("utf-8")


def plan(spec: AutostartSpec) -> list[AutostartFile]:
    """The files to write for ``spec``, with their content."""
    if spec.platform == "linux":
        config = _xdg_config(spec)
        return [
            AutostartFile(
                config / "autostart" / "overt-tray.desktop", desktop_entry(spec).encode("utf-8")
            ),
            AutostartFile(
                config / "systemd" / "user" / "overt-tray.service",
                systemd_unit(spec).encode("utf-8"),
            ),
        ]
    if spec.platform == "macos":
        path = spec.home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return [AutostartFile(path, launch_agent_plist(spec))]
    if spec.platform == "windows":
        appdata = spec.appdata or spec.home / "AppData" / "Roaming"
        folder = appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup"
        return [AutostartFile(folder / "overt-tray.cmd", startup_cmd(spec))]
    raise AutostartError(f"unknown platform {spec.platform!r}; use one of {', '.join(PLATFORMS)}")


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutostartError(f"cannot write in {path.parent}: {exc.strerror or exc}") from exc
    try:
        atomic_write(path, data, mode)
    except OSError as exc:
        raise AutostartError(f"cannot write {path}: {exc.strerror or exc}") from exc


def install(files: Sequence[AutostartFile]) -> None:
    for file in files:
        _write(file.path, file.content, file.mode)


def uninstall(files: Sequence[AutostartFile]) -> list[Path]:
    """Remove the files; return those that were there."""
    removed = []
    for file in files:
        try:
            file.path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise AutostartError(f"cannot remove {file.path}: {exc.strerror or exc}") from exc
        removed.append(file.path)
    return removed


# -- the command ----------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Start the Overt tray at login (and with it the agent). "
        "Arguments after -- are the agent's: the tray passes them to `overt agent run`.",
        epilog="Example: overt install-autostart -- --trust it-1.pub --tenant example-corp "
        "--device-group office --sink batches",
    )
    parser.add_argument("--platform", choices=PLATFORMS, help="default: this machine's")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be written; change nothing"
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the autostart files")
    parser.add_argument(
        "--python", metavar="PATH", help="the Python that runs overt (default: this one)"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "overt install-autostart") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    agent_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, agent_args = args[:cut], args[cut + 1 :]
    ns = _parser(prog).parse_args(args)
    try:
        platform = ns.platform or current_platform()
        python = ns.python or os.path.abspath(sys.executable)
        spec = spec_from_environment(platform, agent_args, python, os.environ)
        files = plan(spec)
        if ns.uninstall:
            if ns.dry_run:
                for file in files:
                    state = "would remove" if file.path.exists() else "not present"
                    print(f"{state}: {file.path}")
                return 0
            removed = uninstall(files)
            for path in removed:
                print(f"removed {path}")
            if not removed:
                print("no autostart files were installed")
            return 0
        if ns.dry_run:
            for file in files:
                print(f"would write {file.path}:")
                print(file.content.decode("utf-8").rstrip("\n"))
                print()
            return 0
        install(files)
    except AutostartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    for file in files:
        print(f"wrote {file.path}")
    if platform == "linux":
        print(
            "The tray starts at your next login. With a systemd session you can "
            "instead run: systemctl --user enable --now overt-tray.service"
        )
    elif platform == "macos":
        print(f"Loaded at your next login (or now: launchctl load {files[0].path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
