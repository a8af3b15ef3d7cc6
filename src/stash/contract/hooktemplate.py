"""The Go text/template subset that hook bodies and commands are written in (§6.4): its
parser.

What it is for: `parse_template(text)` turns a template into a tree (`Template` of text,
`PipelineNode` and `IfNode`) or raises `TemplateError` with the line and column of the
first problem; `stash.contract.hookrender` checks and renders the tree.

The subset (docs/hooks.md): text and `{{ pipeline }}` actions with the `{{-`/`-}}` trim
markers and `{{/* comments */}}`; operands `.`, `.Field.Field`, `$var`, `$var.field`,
string (`"..."`, raw) / number / `true` `false` `nil` literals and `( pipeline )`;
pipelines `a | f b | g` (the left value is the last argument); variables `{{ $x := ...
}}` / `{{ $x = ... }}`; `{{ if }} {{ else if }} {{ else }} {{ end }}`; the functions in
`stash.contract.hookfunctions`. `range`, `with`, `define`, `template` and `block` are
refused with their position.

Not for: the functions (`hookfunctions`), checking or rendering (`hookrender`), running
hooks (`stash.hooks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stash.contract.hookfunctions import FUNCTIONS

__all__ = [
    "FieldNode",
    "FuncNode",
    "IfNode",
    "LiteralNode",
    "PipelineNode",
    "Template",
    "TemplateError",
    "error_at",
    "parse_template",
]


class TemplateError(ValueError):
    """A template that does not parse (or names what the subset lacks), with its position."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# -- tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldNode:
    var: str | None  # None: relative to the data (`.`); else `$name`
    path: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class LiteralNode:
    value: Any


@dataclass(frozen=True)
class FuncNode:
    name: str
    pos: int


@dataclass
class PipelineNode:
    commands: list[list[Any]]  # each command: operands; a FuncNode first = a call
    declare: str | None = None
    assign: bool = False
    pos: int = 0


@dataclass
class IfNode:
    branches: list[tuple[PipelineNode, list[Any]]]
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


def error_at(source: str, offset: int, message: str) -> TemplateError:
    """A `TemplateError` for `message` at character `offset` of `source` (line:column)."""
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return TemplateError(message, line, column)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, offset: int) -> TemplateError:
        return error_at(self.source, offset, message)

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
        node = IfNode(branches=[])
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

    def pipeline(self, toks: list[tuple[str, str, int]], at: int) -> PipelineNode:
        pipe = PipelineNode(commands=[], pos=toks[0][2] if toks else at)
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
            if not isinstance(later[0], FuncNode):
                raise self.fail("non executable command in pipeline stage", pipe.pos)
        return pipe

    def operand(self, kind: str, text: str, pos: int, *, first: bool) -> Any:
        if kind == "field":
            return FieldNode(None, tuple(text[1:].split(".")), pos)
        if kind == "dot":
            return FieldNode(None, (), pos)
        if kind == "variable":
            name, *path = text.split(".")
            return FieldNode(name, tuple(path), pos)
        if kind == "string":
            return LiteralNode(self._unquote(text, pos))
        if kind == "raw":
            return LiteralNode(text[1:-1])
        if kind == "char":
            return LiteralNode(ord(self._unquote(text, pos)))
        if kind == "number":
            return LiteralNode(self._number(text, pos))
        if kind == "ident":
            if text in ("true", "false"):
                return LiteralNode(text == "true")
            if text == "nil":
                return LiteralNode(None)
            if text not in FUNCTIONS:
                raise self.fail(f'function "{text}" not defined', pos)
            return FuncNode(text, pos)
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
