"""The package's import layers (docs/architecture.md): an import may only go down a layer,
packages of one layer do not import each other, and nothing in `stash` imports the dev
tooling. Read statically from the source (function-level imports included), so a lazy
import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Top to bottom. A package may import packages of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stash.cli",),
    ("stash.operator",),
    ("stash.snapshotserving", "stash.webhookserving"),
    ("stash.controllers", "stash.webhook", "stash.agent", "stash.snapshotapi"),
    ("stash.notifications",),
    (
        "stash.scheduler",
        "stash.inject",
        "stash.validation",
        "stash.sessionmetrics",
        "stash.hooks",
    ),
    ("stash.contract", "stash.restic"),
    ("stash.kube",),
    ("stash.api", "stash.cron", "stash.settings", "stash.metrics", "stash.pki", "stash.logs"),
)
#: `stash/__init__.py` (the version) may be imported from anywhere.
ROOT = "stash"
#: Plumbing names no application: these pairs are refused even though they go down.
FORBIDDEN = {("stash.kube", "stash.metrics")}


def _unit(module: str) -> str:
    """The layered unit a module belongs to: `stash.<pkg>` or a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # `from stash import metrics` imports the module stash.metrics
            if target == "stash":
                found.update(
                    f"stash.{a.name}"
                    for a in node.names
                    if (SRC / "stash" / f"{a.name}.py").exists()
                    or (SRC / "stash" / a.name).is_dir()
                )
    return found


def import_graph(package: str) -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the modules that import it (for the failure message)."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted((SRC / package).rglob("*.py")):
        module = _module_name(path)
        for target in _imports(path):
            if not (target == "stash" or target.startswith(("stash.", "stash_dev"))):
                continue
            a, b = _unit(module), _unit(target)
            if a != b:
                graph[a][b].add(module)
    return graph


def _layer_of(unit: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    return None


def test_every_package_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in (SRC / "stash").rglob("*.py")}
    missing = sorted(u for u in units if u != ROOT and _layer_of(u) is None)
    assert not missing, f"add these to LAYERS (and docs/architecture.md): {missing}"


def test_imports_only_go_down_a_layer() -> None:
    bad = []
    for a, targets in import_graph("stash").items():
        la = _layer_of(a)
        for b, where in targets.items():
            if b == ROOT:
                continue
            lb = _layer_of(b)
            if b.startswith("stash_dev"):
                bad.append(f"{a} -> {b} (the operator package never imports dev tooling)")
            elif la is None or lb is None or lb <= la or (a, b) in FORBIDDEN:
                bad.append(f"{a} -> {b} in {sorted(where)}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_package_cycles() -> None:
    graph = {a: set(t) for a, t in import_graph("stash").items()}
    seen: set[str] = set()
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        if u in stack:
            return [*stack[stack.index(u) :], u]
        if u in seen:
            return None
        seen.add(u)
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if v != ROOT and (cycle := visit(v)):
                return cycle
        stack.pop()
        return None

    for unit in sorted(graph):
        cycle = visit(unit)
        assert cycle is None, "package cycle: " + " -> ".join(cycle)


def _modules_after_import(module: str, prefixes: tuple[str, ...]) -> list[str]:
    import subprocess
    import sys

    probe = (
        f"import {module}, sys; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return list(ast.literal_eval(done.stdout))


def test_the_operator_process_loads_no_agent_dev_tooling_or_boto3() -> None:
    loaded = _modules_after_import(
        "stash.operator", ("stash.agent", "stash_dev", "stash.devcluster", "boto3")
    )
    assert loaded == []


def test_the_webhook_process_loads_no_apscheduler() -> None:
    assert _modules_after_import("stash.webhook.server", ("apscheduler",)) == []
