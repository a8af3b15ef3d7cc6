"""YAML fixtures of Stash objects (tests/unit/fixtures/api), loaded the way kubectl does.

Not for: anything but tests. Shared by test_api_roundtrip.py and test_crds.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "api"


class KubeYAMLLoader(yaml.SafeLoader):
    """A SafeLoader that leaves timestamps as strings, as sigs.k8s.io/yaml does."""


KubeYAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_all(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML stream, skipping empty documents."""
    return [doc for doc in yaml.load_all(text, Loader=KubeYAMLLoader) if doc]


def fixture_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every fixture file, as (`file#index`, object) pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for i, doc in enumerate(load_all(path.read_text(encoding="utf-8"))):
            out.append((f"{path.name}#{i}", doc))
    return out
