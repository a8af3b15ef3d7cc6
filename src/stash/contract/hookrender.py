"""Checking and rendering hook templates (§6.4) over a hook's summary.

What it is for: `template_problem(text)` is the admission check (`stash.validation`):
a parse error, an unknown function, or a field the summary does not have, with its line
and column; `render_template(text, data)` renders a template over the summary
(`stash.contract.hooks.summary_data`) as upstream's `text/template` with
`missingkey=default` does, result trimmed.

Not for: parsing (`hooktemplate`) or the functions (`hookfunctions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stash.contract.hookfunctions import FUNCTIONS, TemplateRuntimeError, go_print, truth
from stash.contract.hooktemplate import (
    FieldNode,
    FuncNode,
    IfNode,
    LiteralNode,
    PipelineNode,
    TemplateError,
    error_at,
    parse_template,
)

__all__ = ["SUMMARY_FIELDS", "render_template", "template_problem"]

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


def _walk_fields(nodes: Sequence[Any]) -> list[FieldNode]:
    found: list[FieldNode] = []

    def pipe(p: PipelineNode) -> None:
        for command in p.commands:
            for arg in command:
                if isinstance(arg, FieldNode):
                    found.append(arg)
                elif isinstance(arg, PipelineNode):
                    pipe(arg)

    for node in nodes:
        if isinstance(node, PipelineNode):
            pipe(node)
        elif isinstance(node, IfNode):
            for cond, body in node.branches:
                pipe(cond)
                found.extend(_walk_fields(body))
            found.extend(_walk_fields(node.otherwise))
    return found


def template_problem(text: str) -> TemplateError | None:
    """Why admission refuses `text` (parse error, unknown function or summary field), or None."""
    try:
        tree = parse_template(text)
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
                return error_at(text, f.pos, f'the hook summary has no field "{name}"{where}')
            schema = schema[name]
    return None


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


def _evaluate(scope: _Scope, pipe: PipelineNode) -> Any:
    value: Any = None
    for n, command in enumerate(pipe.commands):
        head, args = command[0], command[1:]
        if isinstance(head, FuncNode):
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
    if isinstance(node, LiteralNode):
        return node.value
    if isinstance(node, PipelineNode):
        return _evaluate(scope, node)
    if isinstance(node, FuncNode):
        return FUNCTIONS[node.name]()
    if isinstance(node, FieldNode):
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
        elif isinstance(node, PipelineNode):
            value = _evaluate(scope, node)
            if value is not _NOTHING:
                out.append("<no value>" if value is None else go_print(value))
        elif isinstance(node, IfNode):
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
