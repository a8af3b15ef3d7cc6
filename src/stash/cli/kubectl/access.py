"""How `kubectl stash` reaches a Repository's data: restic run here with the Secret's keys.

What it is for: `open_repository()` reads a Repository and its storage Secret through the
API (so the caller's RBAC decides), maps them to a restic target with
`stash.restic.restic_target` (only the keys each backend documents), and gives a
`stash.restic.Restic` driver over a private scratch directory (0700, removed afterwards)
that holds restic's cache and any CA or key file. The restic binary is `--restic`, else
`$STASH_RESTIC`, else `restic` on the PATH.

A local backend is a volume only pods can mount (restic run here would create an empty
repository on this machine): `open_repository` raises `NeedsJob`, and the command runs
again in a Job that mounts it (`podjob`), where `--local-repository` opens it.

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
from stash.cli.kubectl.podjob import local_target
from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Forbidden, NotFound
from stash.kube.resources import SECRETS
from stash.restic import Restic, ResticError, ResticOptions, restic_target

__all__ = ["NeedsJob", "OpenRepository", "add_restic_flag", "open_repository", "secret_data"]


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


class NeedsJob(Exception):
    """The repository is on a local backend: the command runs in a Job (`podjob`)."""

    def __init__(self, repository: JSON, where: str) -> None:
        super().__init__(
            f"{where} uses a local backend, a volume only pods mount, and this command "
            "cannot run in a Job: run it in a pod that mounts the volume"
        )
        self.repository = repository


def _options(p: Plugin, scratch: Path, progress_fps: float | None) -> ResticOptions:
    return ResticOptions(
        binary=_binary(p),
        scratch_dir=str(scratch),
        cache_dir=str(scratch / "cache"),
        temp_dir=str(scratch),
        progress_fps=progress_fps,
        unreachable_timeout=60.0,
    )


@asynccontextmanager
async def open_repository(
    p: Plugin, name: str, *, progress_fps: float | None = None
) -> AsyncIterator[OpenRepository]:
    """The Repository `name` in the plugin's namespace, ready for restic commands
    (inside a Job with `--local-repository`: the repository mounted there)."""
    if getattr(p.args, "local_repository", None):
        scratch = Path(tempfile.mkdtemp(prefix="kubectl-stash-"))
        try:
            restic = Restic(
                local_target(p.args.local_repository), _options(p, scratch, progress_fps)
            )
            yield OpenRepository(name, p.namespace, {}, restic, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    obj, repo = await _get_repository(p, name)
    backend = repo.spec.backend if repo.spec else None
    where = f"Repository {p.namespace}/{name}"
    if backend is None or not backend.storage_secret_name:
        raise PluginError(f"{where} has no spec.backend.storageSecretName: set it")
    if backend.provider() == "local":
        raise NeedsJob(obj, where)
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
        restic = Restic(target, _options(p, scratch, progress_fps))
        yield OpenRepository(name, p.namespace, obj, restic, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
