"""Pod Security Standards `restricted`, checked on a pod spec (a test-side reading of the
policy at https://kubernetes.io/docs/concepts/security/pod-security-standards/).

What it is for: `restricted_violations(pod_spec)` lists what in a pod spec (a Pod's, or a
Deployment's or Job's pod template's) a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` would refuse, in words; an empty list
means admitted. Tests of rendered manifests use it where no apiserver is involved; with
one, the apiserver's own PodSecurity admission is the judge.

Not for: the baseline level alone, or Windows pods (hostProcess is only refused).
"""

from __future__ import annotations

from typing import Any

__all__ = ["restricted_violations"]

JSON = dict[str, Any]

_ALLOWED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
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


def _containers(spec: JSON) -> list[tuple[str, JSON]]:
    out = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            out.append((f"{field}[{c.get('name')}]", c))
    return out


def _host_namespaces(spec: JSON) -> list[str]:
    return [f"{f} is true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]


def _volumes(spec: JSON) -> list[str]:
    problems = []
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        bad = kinds - _ALLOWED_VOLUMES
        if bad:
            problems.append(f"volume {vol.get('name')} has type {sorted(bad)}")
    return problems


def _pod_level(spec: JSON) -> list[str]:
    ctx = spec.get("securityContext") or {}
    problems = []
    if ctx.get("runAsUser") == 0:
        problems.append("pod securityContext.runAsUser is 0")
    for s in ctx.get("sysctls") or []:
        if s.get("name") not in _SAFE_SYSCTLS:
            problems.append(f"pod sysctl {s.get('name')} is not a safe sysctl")
    seccomp = (ctx.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in _SECCOMP_OK:
        problems.append(f"pod seccompProfile.type is {seccomp}")
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("pod windowsOptions.hostProcess is true")
    return problems


def _container(where: str, c: JSON, pod_ctx: JSON) -> list[str]:
    ctx = c.get("securityContext") or {}
    problems = []
    if ctx.get("privileged"):
        problems.append(f"{where}: privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    caps = ctx.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append(f"{where}: capabilities.drop does not include ALL")
    extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
    if extra:
        problems.append(f"{where}: capabilities.add {sorted(extra)}")
    non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if non_root is not True:
        problems.append(f"{where}: runAsNonRoot is not true (pod or container)")
    if ctx.get("runAsUser") == 0:
        problems.append(f"{where}: runAsUser is 0")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in _SECCOMP_OK:
        problems.append(f"{where}: seccompProfile is {seccomp} (pod or container)")
    if ctx.get("procMount") not in (None, "Default"):
        problems.append(f"{where}: procMount is {ctx.get('procMount')}")
    for port in c.get("ports") or []:
        if port.get("hostPort"):
            problems.append(f"{where}: hostPort {port['hostPort']}")
    return problems


def restricted_violations(pod_spec: JSON) -> list[str]:
    """What `restricted` refuses in this pod spec (empty: admitted)."""
    pod_ctx = pod_spec.get("securityContext") or {}
    problems = _host_namespaces(pod_spec) + _volumes(pod_spec) + _pod_level(pod_spec)
    for where, c in _containers(pod_spec):
        problems += _container(where, c, pod_ctx)
    return problems
