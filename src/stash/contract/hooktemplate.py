"""The Go text/template subset that hook bodies and commands are written in (§6.4).

What it is for: `parse_template(text)` turns a template into a tree or raises
`TemplateError` with the line and column of the first problem (admission refuses such a
template, `stash.validation`); `render_template(text, data)` renders it over a hook's
summary (`stash.contract.hooks.summary_data`) the way upstream's `text/template` with
`missingkey=default` does, result trimmed. `template_problem(text)` is the admission
check: parse errors, unknown functions and fields the summary does not have.

The subset (docs/hooks.md): text and `{{ pipeline }}` actions with the `{{-`/`-}}` trim
markers and `{{/* comments */}}`; operands `.`, `.Field.Field`, `$var`, `$var.field`,
string (`"..."`, raw) / number / `true` `false` `nil` literals and `( pipeline )`;
pipelines `a | f b | g` (the left value is the last argument); variables `{{ $x := ...
}}` / `{{ $x = ... }}`; `{{ if }} {{ else if }} {{ else }} {{ end }}`; the functions in
`stash.contract.hookfunctions`. `range`, `with`, `define`, `template` and `block` are
refused with their position.

Not for: the functions themselves (`hookfunctions`), running hooks (`stash.hooks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stash.contract.hookfunctions import FUNCTIONS, TemplateRuntimeError, go_print, truth

__all__ = [
    "SUMMARY_FIELDS",
    "Template",
    "TemplateError",
    "parse_template",
    "render_template",
    "template_problem",
]

#: The fields of the summary a template may name (None: a leaf or a list of hosts).
SUMMARY_FIELDS: Mapping[str, Any] = {
    "Name": None,
    "Namespace": None,
    "Invoker": {"APIGroup": None, "Kind": None, "Name": None},
    "Target": {"APIVersion": None, "Kind": None, "Name": None, "Namespace": None},
    "Status": {"Phase": None, "Duration": None, "Error": None},
    "Hosts": None,
    "RetryLeft": None,
}


class TemplateError(ValueError):
    """A template that does not parse (or names what the subset lacks), with its position."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# -- tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    var: str | None  # None: relative to the data (`.`); else `$name`
    path: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Func:
    name: str
    pos: int


@dataclass
class _Pipeline:
    commands: list[list[Any]]  # each command: operands; a _Func first = a call
    declare: str | None = None
    assign: bool = False
    pos: int = 0


@dataclass
class _If:
    branches: list[tuple[_Pipeline, list[Any]]]
    otherwise: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Template:
    """A parsed template: its nodes (text, pipelines, ifs) and the source it came from."""

    nodes: tuple[Any, ...]
    source: str


# -- lexing ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<declare>:=)
      | (?P<assign>=)
      | (?P<pipe>\|)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<char>'(?:[^'\\\n]|\\.)+')
      | (?P<number>[-+]?(?:0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+))
      | (?P<variable>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
      | (?P<dot>\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a"}
_ESCAPES |= {"b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_UNSUPPORTED = ("range", "with", "define", "template", "block", "break", "continue")


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, offset: int) -> TemplateError:
        line, column = _position(self.source, offset)
        return TemplateError(message, line, column)

    def tokens(self, start: int, end: int) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        i = start
        while i < end:
            m = _TOKEN.match(self.source, i, end)
            if m is None or m.end() == i:
                raise self.fail(f"unexpected {self.source[i]!r} in action", i)
            kind = m.lastgroup or ""
            if kind != "space":
                out.append((kind, m.group(), i))
            i = m.end()
        return out

    # -- the action sequence ------------------------------------------------------------

    def actions(self) -> list[tuple[str, Any, int]]:
        """(kind, payload, offset): ("text", str), ("action", tokens) in source order."""
        src = self.source
        out: list[tuple[str, Any, int]] = []
        i = 0
        trim_next = False
        while True:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            if trim_next:
                text = text.lstrip()
            if j < 0:
                out.append(("text", text, i))
                return out
            start = j + 2
            if src.startswith("-", start) and src[start + 1 : start + 2].isspace():
                text = text.rstrip()
                start += 2
            out.append(("text", text, i))
            close = self._close(start, j)
            end = close
            trim_next = False
            if close >= 2 and src[close - 1] == "-" and src[close - 2].isspace():
                end = close - 1
                trim_next = True
            body = src[start:end].strip()
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise self.fail("unclosed comment", start)
            else:
                out.append(("action", self.tokens(start, end), j))
            i = close + 2

    def _close(self, start: int, opened: int) -> int:
        src = self.source
        i = start
        quote = ""
        opened_at = start
        while i < len(src):
            c = src[i]
            if quote:
                if c == "\\" and quote != "`":
                    i += 2
                    continue
                if c == quote:
                    quote = ""
                elif c == "\n" and quote != "`":
                    raise self.fail("unterminated quoted string", i)
            elif c in "\"'`":
                quote, opened_at = c, i
            elif src.startswith("}}", i):
                return i
            i += 1
        if quote:
            raise self.fail("unterminated quoted string", opened_at)
        raise self.fail("unclosed action: no matching }}", opened)

    # -- structure ----------------------------------------------------------------------

    def parse(self) -> Template:
        items = self.actions()
        nodes, stop, at = self._list(items, 0, top=True)
        if stop is not None:
            raise self.fail(f"unexpected {{{{{stop}}}}}", at)
        return Template(tuple(nodes), self.source)

    def _list(self, items: list[tuple[str, Any, int]], k: int, top: bool = False) -> Any:
        nodes: list[Any] = []
        while k < len(items):
            kind, payload, at = items[k]
            k += 1
            if kind == "text":
                if payload:
                    nodes.append(payload)
                continue
            toks: list[tuple[str, str, int]] = payload
            if not toks:
                raise self.fail("missing value for command", at)
            head = toks[0]
            if head[0] == "ident" and head[1] in ("end", "else"):
                if top:
                    raise self.fail(f"unexpected {{{{{head[1]}}}}}", head[2])
                return nodes, (toks, k), at
            if head[0] == "ident" and head[1] in _UNSUPPORTED:
                raise self.fail(f'"{head[1]}" is not in stash\'s template subset', head[2])
            if head[0] == "ident" and head[1] == "if":
                node, k = self._if(items, toks, k, at)
                nodes.append(node)
                continue
            nodes.append(self.pipeline(toks, at))
        if top:
            return nodes, None, len(self.source)
        raise self.fail("unexpected EOF: missing {{end}}", len(self.source))

    def _if(self, items: list[tuple[str, Any, int]], toks: list[Any], k: int, at: int) -> Any:
        node = _If(branches=[])
        cond = toks[1:]
        while True:
            if not cond:
                raise self.fail("missing value for if", at)
            body, (stop, k), at = self._list(items, k)
            node.branches.append((self.pipeline(cond, at), body))
            if stop[0][1] == "end":
                if len(stop) > 1:
                    raise self.fail("unexpected words after end", stop[1][2])
                return node, k
            if len(stop) > 2 and stop[1][1] == "if":
                cond = stop[2:]
                continue
            if len(stop) > 1:
                raise self.fail("unexpected words after else", stop[1][2])
            body, (stop, k), at = self._list(items, k)
            if stop[0][1] != "end" or len(stop) > 1:
                raise self.fail("expected {{end}} after {{else}}", stop[0][2])
            node.otherwise = body
            return node, k

    def pipeline(self, toks: list[tuple[str, str, int]], at: int) -> _Pipeline:
        pipe = _Pipeline(commands=[], pos=toks[0][2] if toks else at)
        if len(toks) >= 2 and toks[0][0] == "variable" and toks[1][0] in ("declare", "assign"):
            if "." in toks[0][1]:
                raise self.fail("cannot assign to a field", toks[0][2])
            pipe.declare, pipe.assign = toks[0][1], toks[1][0] == "assign"
            toks = toks[2:]
            if not toks:
                raise self.fail("missing value for declaration", at)
        command: list[Any] = []
        i = 0
        while i < len(toks):
            kind, text, pos = toks[i]
            if kind == "pipe":
                if not command:
                    raise self.fail("missing command before |", pos)
                pipe.commands.append(command)
                command = []
                i += 1
                continue
            if kind == "lparen":
                depth, j = 1, i + 1
                while j < len(toks) and depth:
                    depth += {"lparen": 1, "rparen": -1}.get(toks[j][0], 0)
                    j += 1
                if depth:
                    raise self.fail("unclosed left paren", pos)
                if j - 1 == i + 1:
                    raise self.fail("missing value in parentheses", pos)
                command.append(self.pipeline(toks[i + 1 : j - 1], pos))
                i = j
                continue
            command.append(self.operand(kind, text, pos, first=not command))
            i += 1
        if not command:
            raise self.fail("missing command", toks[-1][2] if toks else at)
        pipe.commands.append(command)
        for later in pipe.commands[1:]:
            if not isinstance(later[0], _Func):
                raise self.fail("non executable command in pipeline stage", pipe.pos)
        return pipe

    def operand(self, kind: str, text: str, pos: int, *, first: bool) -> Any:
        if kind == "field":
            return _Field(None, tuple(text[1:].split(".")), pos)
        if kind == "dot":
            return _Field(None, (), pos)
        if kind == "variable":
            name, *path = text.split(".")
            return _Field(name, tuple(path), pos)
        if kind == "string":
            return _Literal(self._unquote(text, pos))
        if kind == "raw":
            return _Literal(text[1:-1])
        if kind == "char":
            return _Literal(ord(self._unquote(text, pos)))
        if kind == "number":
            return _Literal(self._number(text, pos))
        if kind == "ident":
            if text in ("true", "false"):
                return _Literal(text == "true")
            if text == "nil":
                return _Literal(None)
            if text not in FUNCTIONS:
                raise self.fail(f'function "{text}" not defined', pos)
            return _Func(text, pos)
        raise self.fail(f"unexpected {text!r}", pos)

    def _unquote(self, text: str, pos: int) -> str:
        out: list[str] = []
        i = 1
        while i < len(text) - 1:
            c = text[i]
            if c == "\\":
                nxt = text[i + 1]
                if nxt not in _ESCAPES:
                    raise self.fail(f"unknown escape sequence \\{nxt}", pos + i)
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            out.append(c)
            i += 1
        return "".join(out)

    def _number(self, text: str, pos: int) -> int | float:
        clean = text.replace("_", "")
        try:
            return (
                int(clean, 0) if re.fullmatch(r"[-+]?(0[xX])?[0-9a-fA-F]+", clean) else float(clean)
            )
        except ValueError:
            raise self.fail(f"bad number syntax: {text}", pos) from None


def parse_template(text: str) -> Template:
    """The template's tree; `TemplateError` (with line:column) when it does not parse."""
    return _Parser(text).parse()


# -- checking --------------------------------------------------------------------------


def _walk_fields(nodes: Sequence[Any]) -> list[_Field]:
    found: list[_Field] = []

    def pipe(p: _Pipeline) -> None:
        for command in p.commands:
            for arg in command:
                if isinstance(arg, _Field):
                    found.append(arg)
                elif isinstance(arg, _Pipeline):
                    pipe(arg)

    for node in nodes:
        if isinstance(node, _Pipeline):
            pipe(node)
        elif isinstance(node, _If):
            for cond, body in node.branches:
                pipe(cond)
                found.extend(_walk_fields(body))
            found.extend(_walk_fields(node.otherwise))
    return found


def template_problem(text: str) -> TemplateError | None:
    """Why admission refuses `text` (parse error, unknown function or summary field), or None."""
    parser = _Parser(text)
    try:
        tree = parser.parse()
    except TemplateError as exc:
        return exc
    for f in _walk_fields(tree.nodes):
        if f.var is not None:
            continue  # a variable holds whatever it was given (a dict, a string)
        schema: Any = SUMMARY_FIELDS
        for name in f.path:
            if not isinstance(schema, Mapping) or name not in schema:
                known = ", ".join(f".{k}" for k in schema) if isinstance(schema, Mapping) else ""
                where = f" (known: {known})" if known else ""
                return parser.fail(f'the hook summary has no field "{name}"{where}', f.pos)
            schema = schema[name]
    return None


# -- rendering -------------------------------------------------------------------------


class _Scope:
    def __init__(self, data: Any) -> None:
        self.data = data
        self.vars: dict[str, Any] = {"$": data}


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for name in path:
        if isinstance(value, Mapping):
            value = value.get(name)
        else:
            return None
    return value


def _evaluate(scope: _Scope, pipe: _Pipeline) -> Any:
    value: Any = None
    for n, command in enumerate(pipe.commands):
        head, args = command[0], command[1:]
        if isinstance(head, _Func):
            values = [_operand(scope, a) for a in args]
            if n > 0:
                values.append(value)
            value = FUNCTIONS[head.name](*values)
        else:
            if args:
                raise TemplateRuntimeError("can't give argument to non-function")
            value = _operand(scope, head)
    if pipe.declare is not None:
        if pipe.assign and pipe.declare not in scope.vars:
            raise TemplateRuntimeError(f"undefined variable: {pipe.declare}")
        scope.vars[pipe.declare] = value
        return _NOTHING
    return value


_NOTHING = object()


def _operand(scope: _Scope, node: Any) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Pipeline):
        return _evaluate(scope, node)
    if isinstance(node, _Func):
        return FUNCTIONS[node.name]()
    if isinstance(node, _Field):
        if node.var is None:
            return _lookup(scope.data, node.path)
        if node.var not in scope.vars:
            raise TemplateRuntimeError(f"undefined variable: {node.var}")
        return _lookup(scope.vars[node.var], node.path)
    raise TemplateRuntimeError(f"cannot evaluate {node!r}")


def _execute(scope: _Scope, nodes: Sequence[Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Pipeline):
            value = _evaluate(scope, node)
            if value is not _NOTHING:
                out.append("<no value>" if value is None else go_print(value))
        elif isinstance(node, _If):
            for cond, body in node.branches:
                if truth(_evaluate(scope, cond)):
                    _execute(scope, body, out)
                    break
            else:
                _execute(scope, node.otherwise, out)


def render_template(text: str, data: Mapping[str, Any]) -> str:
    """`text` rendered over `data` and trimmed; text without `{{` is returned as it is.

    Raises `TemplateError` when it does not parse, `TemplateRuntimeError` when a
    function fails on its arguments.
    """
    if "{{" not in text:
        return text
    tree = parse_template(text)
    out: list[str] = []
    _execute(_Scope(data), tree.nodes, out)
    return "".join(out).strip()
