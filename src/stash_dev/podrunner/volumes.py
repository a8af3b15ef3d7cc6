"""Local directories behind a pod's volumes, and the mounts one container asks for.

For: one pod's volumes, made once per pod and shared by its containers as in a real
pod: a directory the caller maps by volume name (a PVC, a hostPath, anything), an
emptyDir as a fresh directory, hostPath as the host path itself (this host is the node),
and Secret / ConfigMap / downwardAPI / projected (ServiceAccount token, ConfigMap,
Secret, downward API) volumes written out from the apiserver and the pod. Then, per
container, the list of (source, mountPath, readOnly) mounts, subPath and subPathExpr
resolved. Not for: entering a mount namespace (the trampoline does that), or volume
types that need a storage driver (PVC, CSI, NFS...): those must be mapped by the caller.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash_dev.podrunner.environment import field_value, resource_value
from stash_dev.podrunner.expansion import expand
from stash_dev.podrunner.objects import PodObjects, PodRunnerError

JSON = dict[str, Any]

#: Volume types a kubelet always mounts read-only.
READ_ONLY_TYPES = ("secret", "configMap", "downwardAPI", "projected")
_MADE_HERE = ("emptyDir", *READ_ONLY_TYPES)


@dataclass(frozen=True)
class Mount:
    """One bind mount in a container's view: host `source` seen at `target`."""

    source: str
    target: str
    read_only: bool


def volume_type(volume: Mapping[str, Any]) -> str:
    """The volume source's type key (`emptyDir`, `secret`, `persistentVolumeClaim`...)."""
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else "emptyDir"


def _relative(path: str, what: str) -> str:
    norm = posixpath.normpath(path)
    if not path or path.startswith("/") or norm == ".." or norm.startswith("../"):
        raise PodRunnerError(f"{what} {path!r} must be a relative path inside the volume")
    return norm


def _write(root: Path, rel: str, data: bytes, mode: int) -> None:
    dest = root / _relative(rel, "item path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(dest, mode)


def _effective_user(pod: JSON) -> int | None:
    """The one non-root UID every container runs as, when there is such a single UID."""
    pod_uid = (pod["spec"].get("securityContext") or {}).get("runAsUser")
    spec = pod["spec"]
    uids = {
        (c.get("securityContext") or {}).get("runAsUser", pod_uid)
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]
    }
    uid = uids.pop() if len(uids) == 1 else None
    return int(uid) if uid else None


class PodVolumes:
    """The directories behind one pod's volumes, made on first use under `root`."""

    def __init__(
        self, pod: JSON, root: Path, mapped: Mapping[str, Path], objects: PodObjects
    ) -> None:
        self.pod = pod
        self.root = root
        self.mapped = {k: Path(v) for k, v in mapped.items()}
        self.objects = objects
        self._made: dict[str, Path] = {}
        self._lock = asyncio.Lock()
        self._specs = {v["name"]: v for v in pod["spec"].get("volumes") or []}

    def spec(self, name: str) -> JSON:
        """The pod's volume named `name`."""
        if name not in self._specs:
            raise PodRunnerError(f"volumeMount refers to volume {name!r}, not in the pod")
        return dict(self._specs[name])

    async def source(self, name: str) -> Path:
        """The local path behind volume `name` (made or mapped)."""
        if name in self.mapped:
            path = self.mapped[name]
            if not path.exists():
                raise PodRunnerError(f"volume {name!r} is mapped to {path}, which does not exist")
            return path
        async with self._lock:
            if name not in self._made:
                self._made[name] = await self._make(self.spec(name))
            return self._made[name]

    async def _make(self, volume: JSON) -> Path:
        name, kind = volume["name"], volume_type(volume)
        if kind == "hostPath":
            host: Path = _host_path(name, volume["hostPath"])
            return host
        if kind == "persistentVolumeClaim":
            return await self.objects.claim_path(str(volume[kind].get("claimName", "")))
        if kind not in _MADE_HERE:
            raise PodRunnerError(
                f"volume {name!r} ({kind}) has no local directory: "
                f"pass volumes={{{name!r}: <path>}} to the runner"
            )
        src = volume.get(kind) or {}
        # A kubelet makes emptyDirs world-writable; the others are only read.
        path = _new_dir(self.root / str(name), 0o777 if kind == "emptyDir" else 0o755)
        if kind != "emptyDir":
            mode = int(src.get("defaultMode", 0o644))
            if kind == "projected":
                for source in src.get("sources") or []:
                    await self._project(path, source, mode)
            else:
                await self._project(path, {kind: src}, mode)
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        if fs_group is not None:
            _chgrp_tree(path, int(fs_group))
        return path

    async def _project(self, path: Path, source: Mapping[str, Any], mode: int) -> None:
        if "secret" in source or "configMap" in source:
            kind = "secret" if "secret" in source else "configMap"
            ref = source[kind]
            obj_name = ref.get("secretName") or ref.get("name") or ""
            optional = bool(ref.get("optional"))
            read = self.objects.secret if kind == "secret" else self.objects.config_map
            data = await read(obj_name, optional)
            if data is None:
                return
            items = ref.get("items") or [{"key": k, "path": k} for k in sorted(data)]
            for item in items:
                if item["key"] not in data:
                    if optional:
                        continue
                    raise PodRunnerError(
                        f"{kind} {self.objects.namespace}/{obj_name} has no key {item['key']!r}"
                    )
                _write(path, item["path"], data[item["key"]], int(item.get("mode", mode)))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    value = field_value(self.pod, item["fieldRef"]["fieldPath"])
                else:
                    ref = item["resourceFieldRef"]
                    value = resource_value(self.pod, ref.get("containerName", ""), ref)
                _write(path, item["path"], value.encode(), int(item.get("mode", mode)))
        elif "serviceAccountToken" in source:
            await self._token(path, source["serviceAccountToken"], mode)
        else:
            raise PodRunnerError(f"unsupported projected volume source {sorted(source)}")

    async def _token(self, path: Path, ref: Mapping[str, Any], mode: int) -> None:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        # A Pod stored without serviceAccountName (possible only with the ServiceAccount
        # admission plugin off, as in the test cluster) cannot be a token's bound object.
        bound = (meta["name"], meta["uid"]) if spec.get("serviceAccountName") else None
        token = await self.objects.token(
            spec.get("serviceAccountName") or "default",
            audience=ref.get("audience"),
            expiration_seconds=int(ref.get("expirationSeconds", 3600)),
            bound_pod=bound,
        )
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        uid = _effective_user(self.pod)
        if uid is not None and fs_group is None:
            _write(path, ref["path"], token.encode(), 0o600)
            os.chown(path / ref["path"], uid, -1)
        else:
            _write(path, ref["path"], token.encode(), mode)

    async def mounts(self, container: JSON, env: Mapping[str, str]) -> list[Mount]:
        """The container's volumeMounts as host-path mounts, parents before children."""
        if container.get("volumeDevices"):
            raise PodRunnerError(f"container {container['name']!r}: volumeDevices unsupported")
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            base = await self.source(vm["name"])
            source = base
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = expand(vm["subPathExpr"], env)
            if sub:
                source = _sub_path(base, sub, vm["name"])
            target = posixpath.normpath(vm["mountPath"])
            if not target.startswith("/"):
                raise PodRunnerError(f"mountPath {vm['mountPath']!r} must be absolute")
            kind = volume_type(self.spec(vm["name"]))
            read_only = bool(vm.get("readOnly")) or kind in READ_ONLY_TYPES
            out.append(Mount(str(source), target, read_only))
        out.sort(key=lambda m: m.target.rstrip("/").count("/"))
        return out


def _new_dir(path: Path, mode: int) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


def _chgrp_tree(path: Path, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(entry, -1, gid)


def _sub_path(base: Path, sub: str, volume: str) -> Path:
    """`sub` inside `base`; missing directories get the volume root's mode and owner.

    A kubelet does the same, so a group given by fsGroup can write in a new subPath.
    """
    source = base / _relative(sub, "subPath")
    if not source.exists() and not source.is_symlink():
        root = base.stat()
        current = base
        for part in Path(_relative(sub, "subPath")).parts:
            current = current / part
            if not current.exists():
                current.mkdir()
                os.chmod(current, root.st_mode & 0o7777)
                os.chown(current, root.st_uid, root.st_gid)
    real, real_base = os.path.realpath(source), os.path.realpath(base)
    if real != real_base and not real.startswith(real_base + "/"):
        raise PodRunnerError(f"subPath {sub!r} escapes volume {volume!r}")
    return source


def _host_path(name: str, spec: Mapping[str, Any]) -> Path:
    path, kind = Path(spec["path"]), spec.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644, exist_ok=True)
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket}
    if kind in checks and not checks[kind]():
        raise PodRunnerError(f"hostPath volume {name!r}: {path} is not a {kind}")
    if not path.exists():
        if kind:
            raise PodRunnerError(f"hostPath volume {name!r}: {path} does not exist")
        # A kubelet bind-mounts an absent untyped hostPath as a new directory.
        path.mkdir(parents=True, mode=0o755)
    return path
