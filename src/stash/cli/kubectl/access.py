"""How `kubectl stash` reaches a Repository's data: restic run here with the Secret's keys.

What it is for: `open_repository()` reads a Repository and its storage Secret through the
API (so the caller's RBAC decides), maps them to a restic target with
`stash.restic.restic_target` (only the keys each backend documents), and gives a
`stash.restic.Restic` driver over a private scratch directory (0700, removed afterwards)
that holds restic's cache and any CA or key file. The restic binary is `--restic`, else
`$STASH_RESTIC`, else `restic` on the PATH.

A local backend is a volume only pods can mount; `open_repository` refuses it with a
message naming the fix (run the command where the volume is mounted, or use a remote
backend), since restic run here would create an empty repository on this machine.

Not for: what is done with the repository (the command modules).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stash.api import Repository
from stash.cli.kubectl.plugin import Plugin, PluginError
from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Forbidden, NotFound
from stash.kube.resources import SECRETS
from stash.restic import Restic, ResticError, ResticOptions, restic_target

__all__ = ["OpenRepository", "add_restic_flag", "open_repository", "secret_data"]


@dataclass(frozen=True)
class OpenRepository:
    """A Repository opened for restic commands run by this process."""

    name: str
    namespace: str
    obj: JSON
    restic: Restic
    scratch: Path


def add_restic_flag(parser: Any) -> None:
    """Add `--restic` (the restic binary the repository commands run)."""
    parser.add_argument("--restic", help="restic binary (default: $STASH_RESTIC, else restic)")


def secret_data(secret: JSON) -> dict[str, bytes]:
    """A Secret's data, decoded (stringData of an unsaved object included)."""
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def _binary(p: Plugin) -> str:
    chosen = getattr(p.args, "restic", None) or os.environ.get("STASH_RESTIC") or "restic"
    found = shutil.which(chosen)
    if found is None:
        raise PluginError(
            f"restic ({chosen}) is not installed here: install restic 0.16 or newer, "
            "or pass --restic=/path/to/restic"
        )
    return found


async def _get_repository(p: Plugin, name: str) -> tuple[JSON, Repository]:
    where = f'Repository "{name}" in namespace {p.namespace}'
    try:
        obj = await p.kube.get(REPOSITORIES, name, p.namespace)
    except NotFound:
        raise PluginError(f"not found: no {where}") from None
    except Forbidden as exc:
        raise PluginError(f"reading {where} is forbidden for you: {exc.message}") from None
    try:
        return obj, Repository.model_validate(obj)
    except ValidationError as exc:
        raise PluginError(f"{where} does not parse: {exc.errors()[0]['msg']}") from None


@asynccontextmanager
async def open_repository(
    p: Plugin, name: str, *, progress_fps: float | None = None
) -> AsyncIterator[OpenRepository]:
    """The Repository `name` in the plugin's namespace, ready for restic commands."""
    obj, repo = await _get_repository(p, name)
    backend = repo.spec.backend if repo.spec else None
    where = f"Repository {p.namespace}/{name}"
    if backend is None or not backend.storage_secret_name:
        raise PluginError(f"{where} has no spec.backend.storageSecretName: set it")
    if backend.provider() == "local":
        raise PluginError(
            f"{where} uses a local backend, a volume only pods mount: run restic in a pod "
            "that mounts it, or move the repository to a remote backend (s3, gcs, rest, ...)"
        )
    secret_name = backend.storage_secret_name
    try:
        secret = await p.kube.get(SECRETS, secret_name, p.namespace)
    except NotFound:
        raise PluginError(
            f'the storage secret "{secret_name}" of {where} does not exist: create it'
        ) from None
    except Forbidden as exc:
        raise PluginError(f'reading Secret "{secret_name}" is forbidden: {exc.message}') from None
    scratch = Path(tempfile.mkdtemp(prefix="kubectl-stash-"))
    try:
        try:
            target = restic_target(
                backend, secret_data(secret), scratch_dir=scratch, secret_name=secret_name
            )
        except ResticError as exc:
            raise PluginError(f"{where}: {exc}") from None
        options = ResticOptions(
            binary=_binary(p),
            scratch_dir=str(scratch),
            cache_dir=str(scratch / "cache"),
            temp_dir=str(scratch),
            progress_fps=progress_fps,
            unreachable_timeout=60.0,
        )
        yield OpenRepository(name, p.namespace, obj, Restic(target, options), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
