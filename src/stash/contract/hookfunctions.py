"""The functions of stash's hook-template subset and Go's way of printing values (§6.4).

What it is for: `FUNCTIONS`, the name -> callable table the template parser checks names
against and the renderer calls: Go's built-ins (`printf`, `print`, `println`, `len`,
`index`, `not`, `and`, `or`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`) and the sprig functions
hook authors use (`quote`, `squote`, `default`, `empty`, `coalesce`, `toJson`, `dict`,
`list`, `upper`, `lower`, `title`, `trim`, `trimPrefix`, `trimSuffix`, `replace`,
`join`, `contains`, `hasPrefix`, `hasSuffix`); `go_print` prints a value as `{{ . }}`
does; `truth` is Go's truth of an `if`.

Not for: parsing or walking templates (`stash.contract.hooktemplate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["FUNCTIONS", "TemplateRuntimeError", "go_print", "go_quote", "truth"]


class TemplateRuntimeError(ValueError):
    """A template function failed on its arguments (wrong count, wrong type)."""


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, empty string, list or map are false."""
    return bool(value)


def go_print(value: Any) -> str:
    """`value` as Go's fmt prints it with %v (maps as map[k:v], lists as [a b])."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_print(k)}:{go_print(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    return str(value)


_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_QUOTE_ESCAPES |= {"\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's strconv.Quote: double quotes, Go escapes, printable Unicode kept."""
    out = []
    for c in text:
        if c in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[c])
        elif not c.isprintable() and c != " ":
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _pad(text: str, flags: str, width: str | None) -> str:
    if not width:
        return text
    return text.ljust(int(width)) if "-" in flags else text.rjust(int(width))


def _format_one(verb: str, flags: str, width: str | None, prec: str | None, arg: Any) -> str:
    if verb in "sv":
        text = go_print(arg) if verb == "v" or not isinstance(arg, str) else arg
        return _pad(text[: int(prec)] if prec is not None else text, flags, width)
    if verb == "q":
        return _pad(go_quote(arg if isinstance(arg, str) else go_print(arg)), flags, width)
    if verb == "t":
        return go_print(arg) if isinstance(arg, bool) else f"%!t({go_print(arg)})"
    sign = "+" if "+" in flags else ""
    zero = "0" if "0" in flags and "-" not in flags else ""
    align = "<" if "-" in flags else ""
    spec = f"{align}{sign}{zero}{width or ''}"
    if verb in "dxXob":
        if isinstance(arg, bool) or not isinstance(arg, int):
            return f"%!{verb}({go_print(arg)})"
        return format(arg, spec + verb)
    if verb in "eEfFgG":
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            return f"%!{verb}({go_print(arg)})"
        return format(float(arg), spec + (f".{prec}" if prec is not None else "") + verb)
    return f"%!{verb}({go_print(arg)})"


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise TemplateRuntimeError("printf: the format must be a string")
    out: list[str] = []
    pending = list(args)
    last = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[last : m.start()])
        last = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
        elif not pending:
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_format_one(verb, flags, width, prec, pending.pop(0)))
    out.append(fmt[last:])
    if pending:
        extra = ", ".join(f"{type(a).__name__}={go_print(a)}" for a in pending)
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _print(*args: Any) -> str:
    # Go's fmt.Sprint: a space between operands when neither is a string.
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_print(a)
    return out


def _to_json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _dict(*pairs: Any) -> dict[str, Any]:
    if len(pairs) % 2:
        pairs = (*pairs, "")
    made = {
        go_print(pairs[i]) if pairs[i] is not None else "": pairs[i + 1]
        for i in range(0, len(pairs), 2)
    }
    return dict(sorted(made.items()))


def _default(fallback: Any, *given: Any) -> Any:
    if not given or not truth(given[0]):
        return fallback
    return given[0]


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, Mapping):
                return None
            raise TemplateRuntimeError(f"index of {go_print(value)} with {key!r}") from None
    return value


def _len(value: Any) -> int:
    if isinstance(value, (str, Sequence, Mapping)):
        return len(value)
    raise TemplateRuntimeError(f"len of {go_print(value)}")


def _and(first: Any, *rest: Any) -> Any:
    for v in (first, *rest):
        if not truth(v):
            return v
    return rest[-1] if rest else first


def _or(first: Any, *rest: Any) -> Any:
    for v in (first, *rest):
        if truth(v):
            return v
    return rest[-1] if rest else first


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateRuntimeError("eq: missing argument for comparison")
    return any(first == o for o in others)


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError:
            raise TemplateRuntimeError(f"incompatible types for comparison: {a!r}, {b!r}") from None

    return compare


def _strings(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        return fn(*(go_print(a) if a is not None else "" for a in args))

    wrapped.__name__ = name
    return wrapped


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    # Go text/template built-ins
    "printf": _printf,
    "print": _print,
    "println": lambda *a: " ".join(go_print(v) for v in a) + "\n",
    "len": _len,
    "index": _index,
    "not": lambda v: not truth(v),
    "and": _and,
    "or": _or,
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    # sprig
    "quote": lambda *a: " ".join(
        go_quote(go_print(v) if not isinstance(v, str) else v) for v in a if v is not None
    ),
    "squote": lambda *a: " ".join(
        f"'{go_print(v) if not isinstance(v, str) else v}'" for v in a if v is not None
    ),
    "default": _default,
    "empty": lambda v=None: not truth(v),
    "coalesce": lambda *a: next((v for v in a if truth(v)), None),
    "toJson": _to_json,
    "dict": _dict,
    "list": lambda *a: list(a),
    "upper": _strings("upper", str.upper),
    "lower": _strings("lower", str.lower),
    "title": _strings("title", str.title),
    "trim": _strings("trim", str.strip),
    "trimPrefix": _strings("trimPrefix", lambda p, s: s.removeprefix(p)),
    "trimSuffix": _strings("trimSuffix", lambda p, s: s.removesuffix(p)),
    "replace": _strings("replace", lambda old, new, s: s.replace(old, new)),
    "contains": _strings("contains", lambda sub, s: sub in s),
    "hasPrefix": _strings("hasPrefix", lambda p, s: s.startswith(p)),
    "hasSuffix": _strings("hasSuffix", lambda p, s: s.endswith(p)),
    "join": lambda sep, items: go_print(sep).join(go_print(i) for i in items or []),
}
