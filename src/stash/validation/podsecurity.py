"""What an invoker asks for beyond its namespace's Pod Security level.

What it is for: `check_pod_security(r, path, runtime, repository, labels)` refuses, with a
message naming the field and the level, the securityContext fields of
`runtimeSettings.pod` / `runtimeSettings.container` — and a Repository's `hostPath`
local backend — that the Pod Security Standards forbid at the level the namespace's
`pod-security.kubernetes.io/enforce` label sets (`baseline` or `restricted`). The
operator puts these into pods it creates or changes for the invoker's author; the
author learns at admission, not from a Job whose pod Pod Security admission refuses.

The fields judged are the ones an author sets explicitly: privileged, added
capabilities, privilege escalation, root, `procMount`, seccomp / AppArmor `Unconfined`,
SELinux types, Windows host processes and unsafe sysctls. What the final pod lacks
(e.g. `runAsNonRoot` nobody set) is left to Pod Security admission itself, which
still judges every pod. A namespace without the label (the cluster's default level,
which the operator cannot read) is not judged here.

Not for: reading the namespace (callers pass its labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stash.api import Repository
from stash.api.common import RuntimeSettings
from stash.validation.report import Report

__all__ = ["ENFORCE_LABEL", "check_pod_security", "enforced_level"]

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
_LEVELS = ("privileged", "baseline", "restricted")

# Pod Security Standards, baseline: capabilities a container may add.
_BASELINE_CAPS = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)


def enforced_level(labels: Mapping[str, str] | None) -> str | None:
    """The namespace's enforced Pod Security level (None: not labelled, or unknown)."""
    level = (labels or {}).get(ENFORCE_LABEL)
    return level if level in _LEVELS else None


def _common(sc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, problem) of a pod or container securityContext, at baseline."""
    out: list[tuple[str, str]] = []
    selinux = sc.get("seLinuxOptions") or {}
    if isinstance(selinux, Mapping):
        if selinux.get("type", "") not in _SELINUX_TYPES:
            out.append(("seLinuxOptions.type", f'"{selinux.get("type")}" is not allowed'))
        for key in ("user", "role"):
            if selinux.get(key):
                out.append((f"seLinuxOptions.{key}", "may not be set"))
    for key in ("seccompProfile", "appArmorProfile"):
        profile = sc.get(key) or {}
        if isinstance(profile, Mapping) and profile.get("type") == "Unconfined":
            out.append((f"{key}.type", "Unconfined is not allowed"))
    windows = sc.get("windowsOptions") or {}
    if isinstance(windows, Mapping) and windows.get("hostProcess"):
        out.append(("windowsOptions.hostProcess", "host processes are not allowed"))
    return out


def _container(sc: Mapping[str, Any], restricted: bool) -> list[tuple[str, str]]:
    out = _common(sc)
    if sc.get("privileged"):
        out.append(("privileged", "privileged containers are not allowed"))
    if sc.get("procMount") not in (None, "Default"):
        out.append(("procMount", f'"{sc.get("procMount")}" is not allowed'))
    caps = sc.get("capabilities") or {}
    added = caps.get("add") if isinstance(caps, Mapping) else None
    allowed = frozenset({"NET_BIND_SERVICE"}) if restricted else _BASELINE_CAPS
    extra = [c for c in added or [] if str(c).upper().removeprefix("CAP_") not in allowed]
    if extra:
        out.append(("capabilities.add", f"{', '.join(map(str, extra))} may not be added"))
    if restricted and sc.get("allowPrivilegeEscalation") is True:
        out.append(("allowPrivilegeEscalation", "must not be true"))
    return out


def _pod(sc: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = _common(sc)
    for i, sysctl in enumerate(sc.get("sysctls") or []):
        name = sysctl.get("name") if isinstance(sysctl, Mapping) else None
        if name not in _SAFE_SYSCTLS:
            out.append((f"sysctls[{i}]", f'"{name}" is not a safe sysctl'))
    return out


def _root(sc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """restricted: no explicit root."""
    out: list[tuple[str, str]] = []
    if sc.get("runAsNonRoot") is False:
        out.append(("runAsNonRoot", "must not be false"))
    if sc.get("runAsUser") == 0:
        out.append(("runAsUser", "must not be 0 (root)"))
    return out


def check_pod_security(
    r: Report,
    path: str,
    runtime: RuntimeSettings | None,
    repository: Repository | None,
    labels: Mapping[str, str] | None,
) -> None:
    """Refuse what `runtime` (at `path`) and a hostPath `repository` ask for beyond the
    level the namespace labels enforce."""
    level = enforced_level(labels)
    if level in (None, "privileged"):
        return
    restricted = level == "restricted"
    because = f"the namespace enforces Pod Security level {level}"
    pod = runtime.pod.security_context if runtime and runtime.pod else None
    if isinstance(pod, Mapping):
        problems = _pod(pod) + (_root(pod) if restricted else [])
        for field, problem in problems:
            r.error(f"{path}.runtimeSettings.pod.securityContext.{field}", f"{problem}: {because}")
    container = runtime.container.security_context if runtime and runtime.container else None
    if isinstance(container, Mapping):
        problems = _container(container, restricted) + (_root(container) if restricted else [])
        for field, problem in problems:
            r.error(
                f"{path}.runtimeSettings.container.securityContext.{field}", f"{problem}: {because}"
            )
    backend = repository.spec.backend if repository and repository.spec else None
    local = backend.local if backend else None
    if repository is not None and local is not None and "hostPath" in local.volume_source():
        where = f"{repository.metadata.namespace}/{repository.metadata.name}"
        r.error(
            "spec.repository",
            f"Repository {where} keeps its data in a hostPath volume, which the pods "
            f"that would mount it may not have: {because}",
        )
