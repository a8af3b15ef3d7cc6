"""Where `kubectl-stash` finds its cluster, context and namespace: as kubectl does.

What it is for: `load_client_config()` resolves the kubeconfig files (`--kubeconfig`
alone; else every file of the `KUBECONFIG` list, merged; else `~/.kube/config`), the
context (`--context`, else the first `current-context` the files set, as kubectl's
merge rule says) and the namespace (`-n`, else the context's, else `default`) with
kubernetes-asyncio's config loader; with no kubeconfig file at all it uses the pod's
in-cluster settings. Nothing is written back to the files.

Not for: the operator, webhook and agent processes (they take `--kubeconfig` or run
in-cluster: `stash.kube.client.Kube.connect`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

__all__ = ["ClientConfig", "KubeconfigError", "kubeconfig_paths", "load_client_config"]

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeconfigError(Exception):
    """No usable configuration: the message says what was looked at."""


@dataclass(frozen=True)
class ClientConfig:
    """A client configuration and the namespace commands act in."""

    configuration: client.Configuration
    namespace: str
    context: str | None


def kubeconfig_paths(flag: Path | None, environ: Mapping[str, str], home: Path) -> list[Path]:
    """The kubeconfig files to merge, in precedence order (existing ones only, except
    an explicit `--kubeconfig`, which must exist)."""
    if flag is not None:
        if not flag.is_file():
            raise KubeconfigError(f"--kubeconfig {flag}: no such file")
        return [flag]
    listed = environ.get("KUBECONFIG", "")
    if listed:
        candidates = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    else:
        candidates = [home / ".kube" / "config"]
    return [p for p in candidates if p.is_file()]


def _first_current_context(paths: list[Path]) -> str | None:
    """kubectl's merge rule: the first file that sets `current-context` wins."""
    for path in paths:
        try:
            data: Any = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from None
        if isinstance(data, dict) and data.get("current-context"):
            return str(data["current-context"])
    return None


async def load_client_config(
    *,
    kubeconfig: Path | None = None,
    context: str | None = None,
    namespace: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> ClientConfig:
    """Resolve cluster, credentials, context and namespace (module docstring)."""
    env = os.environ if environ is None else environ
    paths = kubeconfig_paths(kubeconfig, env, home or Path.home())
    cfg = client.Configuration()
    if not paths:
        return _in_cluster(cfg, namespace, env)
    chosen = context or _first_current_context(paths)
    if chosen is None:
        raise KubeconfigError(f"no current context in {', '.join(map(str, paths))}: pass --context")
    try:
        loader = await config.load_kube_config(
            config_file=os.pathsep.join(map(str, paths)),
            context=chosen,
            client_configuration=cfg,
            persist_config=False,
        )
    except ConfigException as exc:
        raise KubeconfigError(f"kubeconfig: {exc}") from None
    current = loader.current_context or {}
    ns = namespace or (current.get("context") or {}).get("namespace") or "default"
    return ClientConfig(cfg, str(ns), chosen)


def _in_cluster(
    cfg: client.Configuration, namespace: str | None, env: Mapping[str, str]
) -> ClientConfig:
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException:
        raise KubeconfigError(
            "no kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not in a cluster"
        ) from None
    ns = namespace or env.get("POD_NAMESPACE")
    if not ns:
        try:
            ns = _SA_NAMESPACE.read_text().strip()
        except OSError:
            ns = None
    return ClientConfig(cfg, ns or "default", None)
