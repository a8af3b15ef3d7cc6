"""Kubernetes' `$(VAR)` expansion for container command, args, env values and subPathExpr.

For: the exact rules a kubelet applies: `$(NAME)` becomes the variable's value when NAME
is defined, stays literally `$(NAME)` when it is not, `$$` is an escaped `$`, and an
unclosed `$(` or any other `$x` is copied as written. Not for: shell syntax (`${VAR}`,
`$VAR`), which a container's own shell expands, if it has one.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand every `$(NAME)` in `text` from `env`, the way a kubelet does."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            # `$$` escapes: one literal `$`, and the next character is not re-read.
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)
