"""`kubectl-stash` finds cluster, context and namespace as kubectl does (temp kubeconfigs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from stash.cli.kubeconfig import KubeconfigError, load_client_config


def _kubeconfig(
    path: Path, contexts: dict[str, dict[str, str]], current: str | None = None
) -> Path:
    """A kubeconfig with one cluster and token user per context (server named after it)."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": n, "cluster": {"server": f"https://{n}.example:6443"}} for n in contexts
        ],
        "users": [{"name": n, "user": {"token": f"token-{n}"}} for n in contexts],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": n, **extra}}
            for n, extra in contexts.items()
        ],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


async def _load(tmp_path: Path, env: dict[str, str], **flags: Any) -> tuple[str, str]:
    resolved = await load_client_config(environ=env, home=tmp_path / "home", **flags)
    return resolved.configuration.host, resolved.namespace


async def test_home_kubeconfig_and_its_context_namespace(tmp_path: Path) -> None:
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    _kubeconfig(tmp_path / "home" / ".kube" / "config", {"dev": {"namespace": "team"}}, "dev")
    assert await _load(tmp_path, {}) == ("https://dev.example:6443", "team")
    assert await _load(tmp_path, {}, namespace="other") == ("https://dev.example:6443", "other")


async def test_kubeconfig_list_is_merged_and_the_first_current_context_wins(
    tmp_path: Path,
) -> None:
    first = _kubeconfig(tmp_path / "a", {"prod": {"namespace": "shop"}}, "prod")
    second = _kubeconfig(tmp_path / "b", {"dev": {}}, "dev")
    missing = tmp_path / "not-there"
    env = {"KUBECONFIG": os.pathsep.join(map(str, (missing, first, second)))}
    assert await _load(tmp_path, env) == ("https://prod.example:6443", "shop")
    # A context of the second file is reachable by name; no namespace means default.
    assert await _load(tmp_path, env, context="dev") == ("https://dev.example:6443", "default")


async def test_kubeconfig_flag_wins_over_the_environment(tmp_path: Path) -> None:
    listed = _kubeconfig(tmp_path / "listed", {"prod": {}}, "prod")
    flag = _kubeconfig(tmp_path / "flag", {"lab": {"namespace": "lab-ns"}}, "lab")
    env = {"KUBECONFIG": str(listed)}
    assert await _load(tmp_path, env, kubeconfig=flag) == ("https://lab.example:6443", "lab-ns")


async def test_unusable_configurations_say_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeconfigError, match="not in a cluster"):
        await _load(tmp_path, {})
    config = _kubeconfig(tmp_path / "c", {"dev": {}})  # no current-context
    with pytest.raises(KubeconfigError, match="--context"):
        await _load(tmp_path, {"KUBECONFIG": str(config)})
    with pytest.raises(KubeconfigError, match="nope"):
        await _load(tmp_path, {"KUBECONFIG": str(config)}, context="nope")
    with pytest.raises(KubeconfigError, match="no such file"):
        await _load(tmp_path, {}, kubeconfig=tmp_path / "missing")
