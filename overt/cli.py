"""``overt <command> ...``: dispatch to the CLI of the package that owns the command.

Each command's module is imported only when that command runs, so that
``overt policy`` never loads capture or UI code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: command -> ("module" or "module:function", one-line help). The function
#: (``main`` unless named) is called as ``function(argv, prog) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "policy": ("policies.cli", "IT tooling: keys, signing, verifying and showing policies"),
    "agent": ("agent.cli", "run the capture agent, enroll it, give consent, inspect batches"),
    "status": ("ui.control_cli:status", "is capture on, and why; pause, spool and upload state"),
    "pause": ("ui.control_cli:pause", "pause capture for MIN minutes (the policy's maximum)"),
    "resume": ("ui.control_cli:resume", "resume capture now"),
    "discard": ("ui.control_cli:discard", "delete what was captured in the last MIN minutes"),
    "consent": ("ui.control_cli:consent", "show the capture notice; accept or decline it"),
    "exemption": ("ui.control_cli:exemption", "request an exemption; list your requests"),
    "ledger": ("ui.control_cli:ledger", "every batch captured on this machine, and its fate"),
    "tray": ("ui.app:main", "the tray icon (starts the agent if none is running)"),
    "install-autostart": ("ui.autostart:main", "start the tray at login"),
    "collector": ("collector.cli", "run the collector; enrollment and admin tokens"),
    "admin": ("collector.admin_cli", "exemption requests, devices and audit log (admin API)"),
    "export": ("collector.export.command", "decrypt stored batches into a training dataset"),
}

USAGE = "usage: overt <command> [options]\n\ncommands:\n" + "".join(
    f"  {name:<18} {help_}\n" for name, (_, help_) in COMMANDS.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"overt: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[command][0].partition(":")
    module = importlib.import_module(module_name)
    code: int = getattr(module, function or "main")(rest, prog=f"overt {command}")
    return code


if __name__ == "__main__":
    sys.exit(main())
