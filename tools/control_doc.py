"""`python tools/control_doc.py [--check]`: docs/CONTROL.md's tables, from the models.

``docs/CONTROL.md`` is prose written by people (the transport, what the
server and the client guarantee, what consent means) around tables this
tool writes from the declarations of ``overt.wire.control``,
``overt.wire.control_results`` and ``overt.wire.notice`` (and the server's
and client's limits in ``agent.control``): the limits, the error codes, the
commands with their arguments and results, every result object field by
field, the reasons and the notice. Each table sits between
``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; everything outside
those markers is left as it is.

With ``--check`` it writes nothing and exits 1 if the document differs from
what the models give (``tests/wire/test_control_doc.py`` runs the same
check). This is a repository tool, not part of the package.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agent.control import client as control_client
from agent.control import server as control_server
from overt.files import atomic_write
from overt.wire import control, control_results, notice

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "CONTROL.md"

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S
)


# ------------------------------------------------------------------ types in words


def _constraints(metadata: Sequence[object]) -> str:
    low = high = shortest = longest = None
    words = []
    for rule in metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
        shortest = getattr(rule, "min_length", shortest)
        longest = getattr(rule, "max_length", longest)
    if longest is not None:
        words.append(f"{shortest or 0:,} … {longest:,} characters")
    if low is not None and high is not None:
        words.insert(0, f"{low:,} … {high:,}")
    elif low is not None:
        words.insert(0, f"≥ {low:,}")
    elif high is not None:
        words.insert(0, f"≤ {high:,}")
    return ", ".join(words)


def type_words(annotation: Any, metadata: Sequence[object] = ()) -> str:
    """A field's type as the tables show it: ``int ≥ 0``, ``[str]``, ``SpoolSummary or null``."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = get_args(annotation)
        return type_words(inner, [*extra, *metadata])
    limits = _constraints([m for m in metadata if not isinstance(m, FieldInfo)])
    limits = limits or _constraints(
        [m for f in metadata if isinstance(f, FieldInfo) for m in f.metadata]
    )
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        words = " or ".join(type_words(a, metadata) for a in options)
        return f"{words} or null" if len(options) < len(get_args(annotation)) else words
    if origin is Literal:
        return "/".join(
            f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in get_args(annotation)
        )
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{type_words(args[0])}]"
        return "[" + ", ".join(type_words(a) for a in args) + "]"
    if origin is dict:
        key, value = get_args(annotation)
        return f"{{{type_words(key)}: {type_words(value)}}}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    name = {int: "int", str: "str", bool: "bool", float: "number"}.get(annotation)
    if name is None:
        name = "object" if annotation is Any else getattr(annotation, "__name__", str(annotation))
    return f"{name} {limits}".strip()


def _field_type(field: FieldInfo) -> str:
    return type_words(field.annotation, field.metadata)


def _field_name(name: str, field: FieldInfo) -> str:
    return f"`{name}`" + ("" if field.is_required() else " (may be absent)")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required"
    return f"optional, default `{field.default}`" if field.default is not None else "optional"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


# ------------------------------------------------------------------ the blocks


def _limits() -> list[str]:
    rows = [
        ("PROTOCOL_VERSION", control.PROTOCOL_VERSION, "the request's `v`"),
        ("MAX_REQUEST_BYTES", control.MAX_REQUEST_BYTES, "the longest request line"),
        ("MAX_RESPONSE_BYTES", control.MAX_RESPONSE_BYTES, "the longest response line"),
        (
            "DEFAULT_LINE_TIMEOUT",
            control_server.DEFAULT_LINE_TIMEOUT,
            "seconds to send one request line, and to take one answer",
        ),
        (
            "MAX_CONNECTIONS",
            control_server.MAX_CONNECTIONS,
            "connections held open (a quarter of `RLIMIT_NOFILE` if fewer)",
        ),
        (
            "COMMAND_THREADS",
            control_server.COMMAND_THREADS,
            "threads carrying out commands; one runs only the urgent ones",
        ),
        (
            "DEFAULT_CLIENT_TIMEOUT",
            control_client.DEFAULT_CLIENT_TIMEOUT,
            "seconds the client waits, asking a busy agent again",
        ),
    ]
    return _table(("limit", "value", "what"), [(f"`{n}`", f"{v:,}", w) for n, v, w in rows])


def _errors() -> list[str]:
    return _table(
        ("code", "meaning"),
        [(f"`{code.value}`", control.ERROR_MEANING[code]) for code in control.ErrorCode],
    )


def _arguments_words(model: type[control.Arguments]) -> str:
    if not model.model_fields:
        return "—"
    return ", ".join(f"`{name}`" for name in model.model_fields)


def _commands() -> list[str]:
    rows = []
    for command in control.COMMANDS.values():
        result = command.result.__name__
        rows.append(
            (
                f"`{command.name}`" + (" (urgent)" if command.urgent else ""),
                _arguments_words(command.arguments),
                f"[{result}](#{result.lower()})",
                command.summary,
            )
        )
    return _table(("cmd", "args", "result", "what"), rows)


def _arguments() -> list[str]:
    lines: list[str] = []
    for command in control.COMMANDS.values():
        model = command.arguments
        if not model.model_fields:
            continue
        lines += ["", f"`{command.name}`:", ""]
        lines += _table(
            ("argument", "type", "", "what"),
            [
                (f"`{n}`", _field_type(f), _default(f), f.description or "")
                for n, f in model.model_fields.items()
            ],
        )
    return lines[1:]


def _models(roots: Sequence[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """Every model reachable from ``roots``, each once, parents before children."""
    seen: list[type[BaseModel]] = []

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for field in model.model_fields.values():
            for inner in _nested(field.annotation):
                walk(inner)

    for root in roots:
        walk(root)
    yield from seen


def _nested(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _nested(arg)


def _model_tables(
    roots: Sequence[type[BaseModel]], stop: Sequence[type[BaseModel]] = ()
) -> list[str]:
    lines: list[str] = []
    for model in _models(roots):
        if model in stop:
            continue
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").replace("``", "`")
        lines += ["", f"### {model.__name__}", ""]
        if doc and not doc.startswith("Base of"):
            lines += [doc, ""]
        lines += _table(
            ("field", "type", "what"),
            [
                (
                    f"`{name}`" + ("" if field.is_required() else " (may be absent)"),
                    _field_type(field),
                    field.description or "",
                )
                for name, field in model.model_fields.items()
            ],
        )
    return lines[1:]


def _results() -> list[str]:
    roots = list(dict.fromkeys(c.result for c in control.COMMANDS.values()))
    return _model_tables(roots, stop=list(_models([notice.CaptureNotice])))


def _reasons() -> list[str]:
    return _table(
        ("reason", "reason_text"),
        [(f"`{code}`", text) for code, text in control_results.REASON_TEXT.items()],
    )


def _notice() -> list[str]:
    return _model_tables([notice.CaptureNotice])


BLOCKS: dict[str, Callable[[], list[str]]] = {
    "limits": _limits,
    "errors": _errors,
    "commands": _commands,
    "arguments": _arguments,
    "results": _results,
    "reasons": _reasons,
    "notice": _notice,
}


def generate(text: str) -> str:
    """``text`` with every generated block written anew from the models."""
    found = {m.group("name") for m in _BLOCK.finditer(text)}
    missing = sorted(set(BLOCKS) - found)
    if missing:
        raise ValueError(f"docs/CONTROL.md has no block for {', '.join(missing)}")

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise ValueError(f"docs/CONTROL.md has a block nothing generates: {name}")
        return match.group(1) + "\n".join(BLOCKS[name]()) + "\n" + match.group(4)

    return _BLOCK.sub(fill, text)


def main(argv: Sequence[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = generate(current)
    if "--check" in argv:
        if wanted != current:
            print("docs/CONTROL.md differs from the models: run python tools/control_doc.py")
            return 1
        return 0
    if wanted != current:
        atomic_write(DOC, wanted.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
