"""A container's environment as a kubelet builds it, and the downward API values.

For: `envFrom` (Secret/ConfigMap, prefix, optional), then `env` in order (`value` with
`$(VAR)` expansion against what is defined so far, `valueFrom` fieldRef /
resourceFieldRef / secretKeyRef / configMapKeyRef), on top of what the runtime and the
kubelet add (PATH, HOME, HOSTNAME, KUBERNETES_SERVICE_HOST/PORT). The downward API
field and resource selectors here serve env vars and downwardAPI volume files alike.
Not for: service links for other Services (`enableServiceLinks`), image ENV (the runner
has no image), or logging: values may be secrets.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from stash_dev.podrunner.expansion import expand
from stash_dev.podrunner.objects import PodObjects, PodRunnerError

JSON = dict[str, Any]

#: What runc gives a process whose image declares no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The node's address: status.hostIP, and status.podIP of a pod no kubelet gave one.
LOOPBACK_IP = "127.0.0.1"

_SELECTOR = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
}  # fmt: skip
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+)((?:[eE][+-]?[0-9]+)|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$"
)


def _format_map(values: Mapping[str, str]) -> str:
    # Go's `%s=%q` per key, sorted; JSON string quoting matches it for ordinary text.
    return "\n".join(f"{k}={json.dumps(values[k], ensure_ascii=False)}" for k in sorted(values))


def field_value(pod: JSON, path: str) -> str:
    """The downward API value of `fieldRef.fieldPath` for `pod`."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP") or LOOPBACK_IP,
        "status.hostIP": status.get("hostIP") or LOOPBACK_IP,
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []) or LOOPBACK_IP,
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []) or LOOPBACK_IP,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        return _format_map(meta.get(path.split(".")[1]) or {})
    m = _SELECTOR.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise PodRunnerError(f"unsupported downward API fieldPath {path!r}")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity (`500m`, `1Gi`, `2e3`) as a number."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise PodRunnerError(f"invalid resource quantity {text!r}")
    try:
        number, suffix = Decimal(m.group(1)), m.group(2)
    except InvalidOperation:
        raise PodRunnerError(f"invalid resource quantity {text!r}") from None
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIXES[suffix]


def _node_allocatable(resource: str) -> Decimal:
    # What a kubelet substitutes for an unset limit: the node's allocatable amount.
    if resource == "cpu":
        return Decimal(os.cpu_count() or 1)
    if resource == "memory":
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return Decimal(int(line.split()[1]) * 1024)
    st = os.statvfs("/")
    return Decimal(st.f_blocks * st.f_frsize)


def resource_value(pod: JSON, default_container: str, ref: Mapping[str, Any]) -> str:
    """The downward API value of a `resourceFieldRef` (limits fall back to the node)."""
    name = ref.get("containerName") or default_container
    container = _find_container(pod, name)
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or not resource:
        raise PodRunnerError(f"unsupported resourceFieldRef resource {ref.get('resource')!r}")
    declared = (container.get("resources") or {}).get(kind) or {}
    if resource in declared:
        amount = parse_quantity(declared[resource])
    elif kind == "limits":
        amount = _node_allocatable(resource)
    else:
        amount = Decimal(0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise PodRunnerError(f"resourceFieldRef divisor must be positive, got {divisor}")
    if resource == "cpu":
        # The kubelet divides milli-values and rounds up.
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(amount / divisor))


def _find_container(pod: JSON, name: str) -> JSON:
    spec = pod.get("spec", {})
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if c.get("name") == name:
            return dict(c)
    raise PodRunnerError(f"pod has no container {name!r}")


def _text(data: bytes) -> str:
    # Secret bytes reach the environment unchanged, valid UTF-8 or not.
    return data.decode("utf-8", "surrogateescape")


def _valid_env_name(name: str) -> bool:
    return bool(name) and "=" not in name and name.isprintable() and name.isascii()


def runtime_env(pod: JSON) -> dict[str, str]:
    """What the container runtime gives every process (the image's ENV is unknown here)."""
    hostname = pod.get("spec", {}).get("hostname") or pod["metadata"]["name"]
    return {"PATH": DEFAULT_PATH, "HOME": "/root", "HOSTNAME": hostname[:63].rstrip("-.")}


def service_env(service_host: str, service_port: int) -> dict[str, str]:
    """The `kubernetes` Service variables a kubelet adds, pointing at our apiserver."""
    port = str(service_port)
    url = f"tcp://{service_host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": service_host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        f"KUBERNETES_PORT_{port}_TCP": url,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": port,
        f"KUBERNETES_PORT_{port}_TCP_ADDR": service_host,
    }


async def container_env(
    pod: JSON, container: JSON, objects: PodObjects, services: Mapping[str, str]
) -> dict[str, str]:
    """The kubelet's environment for `container`: `services`, then envFrom, then env.

    This is also what `$(VAR)` in command and args expands from; the runtime's defaults
    (`runtime_env`) sit below it in the process but are not expandable, as in a kubelet.
    """
    declared: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            ref = src["secretRef"]
            data = await objects.secret(ref["name"], bool(ref.get("optional")))
        elif "configMapRef" in src:
            ref = src["configMapRef"]
            data = await objects.config_map(ref["name"], bool(ref.get("optional")))
        else:
            raise PodRunnerError(f"unsupported envFrom source {sorted(src)}")
        for key, raw in (data or {}).items():
            if _valid_env_name(prefix + key):
                declared[prefix + key] = _text(raw)
    for var in container.get("env") or []:
        name = var["name"]
        if var.get("value"):
            declared[name] = expand(var["value"], {**services, **declared})
        elif "valueFrom" in var:
            value = await _value_from(pod, container, objects, name, var["valueFrom"])
            if value is None:
                continue
            declared[name] = value
        else:
            declared[name] = ""
    return {**services, **declared}


async def _value_from(
    pod: JSON, container: JSON, objects: PodObjects, name: str, source: Mapping[str, Any]
) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return resource_value(pod, container["name"], source["resourceFieldRef"])
    if "secretKeyRef" in source or "configMapKeyRef" in source:
        is_secret = "secretKeyRef" in source
        ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
        optional = bool(ref.get("optional"))
        data = await (objects.secret if is_secret else objects.config_map)(ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            kind = "Secret" if is_secret else "ConfigMap"
            raise PodRunnerError(
                f"env {name}: {kind} {objects.namespace}/{ref['name']} has no key {ref['key']!r}"
            )
        return _text(data[ref["key"]])
    raise PodRunnerError(f"env {name}: unsupported valueFrom {sorted(source)}")
