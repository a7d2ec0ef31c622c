"""``overt <command> ...``: dispatch to the CLI of the package that owns the command.

Each command's module is imported only when that command runs, so that
``overt policy`` never loads capture or UI code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: command -> (module with ``main(argv, prog) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "policy": ("policies.cli", "IT tooling: keys, signing, verifying and showing policies"),
    "agent": ("agent.cli", "run the capture agent, give consent, inspect batches"),
}

USAGE = "usage: overt <command> [options]\n\ncommands:\n" + "".join(
    f"  {name:<10} {help_}\n" for name, (_, help_) in COMMANDS.items()
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
    module = importlib.import_module(COMMANDS[command][0])
    code: int = module.main(rest, prog=f"overt {command}")
    return code


if __name__ == "__main__":
    sys.exit(main())
