"""Open an invoker's Repository from inside a pod: Repository + storage Secret -> restic.

What it is for: `ResticSettings` (where the scratch dir, cache and restic binary are,
from flags and the environment the injection sets: NICE_ADJUSTMENT, IONICE_CLASS,
IONICE_CLASS_DATA, STASH_RESTIC, STASH_BACKEND_TIMEOUT) and `open_repository()`, which
reads the Repository and its storage Secret through the API and returns a ready
`stash.restic.Restic` driver. `AgentError` is a failure a person can act on, worded
for the host's status entry. `version_probed_meanwhile()` runs `restic version` while
the agent talks to the apiserver, so the first restic command does not wait for it.

Not for: what is done with the repository (backup, restore, post-backup actions).
Secret values never leave this module except inside the restic target, and are never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from stash.api import Repository
from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Forbidden, Kube, NotFound
from stash.kube.resources import SECRETS
from stash.restic import Restic, ResticError, ResticOptions, restic_target
from stash.restic.ledger import LEDGER_FILE, RunLedger
from stash.restic.version import detect_version

__all__ = [
    "AgentError",
    "RepositoryHandle",
    "ResticSettings",
    "describe",
    "open_repository",
    "version_probed_meanwhile",
]

DEFAULT_SCRATCH = Path("/stash-tmp")


class AgentError(Exception):
    """Something the agent cannot work around; the message says what to fix."""


@dataclass(frozen=True)
class ResticSettings:
    """How the agent runs restic in its pod."""

    scratch_dir: Path = DEFAULT_SCRATCH
    enable_cache: bool = True
    binary: str = "restic"
    backend_timeout: float | None = 120.0
    nice: int | None = None
    ionice_class: int | None = None
    ionice_class_data: int | None = None

    @classmethod
    def from_env(
        cls,
        scratch_dir: Path = DEFAULT_SCRATCH,
        enable_cache: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> ResticSettings:
        """Settings from flags plus the container environment (see module docstring)."""
        env = os.environ if env is None else env

        def number(key: str) -> int | None:
            value = env.get(key, "").strip()
            return int(value) if value.lstrip("-").isdigit() else None

        timeout = env.get("STASH_BACKEND_TIMEOUT", "").strip()
        return cls(
            scratch_dir=scratch_dir,
            enable_cache=enable_cache,
            binary=env.get("STASH_RESTIC") or "restic",
            backend_timeout=float(timeout) if timeout else 120.0,
            nice=number("NICE_ADJUSTMENT"),
            ionice_class=number("IONICE_CLASS"),
            ionice_class_data=number("IONICE_CLASS_DATA"),
        )

    @property
    def ledger(self) -> RunLedger:
        """The restic runs of this pod (in the scratch dir, which outlives a restart)."""
        return RunLedger.at(self.scratch_dir / LEDGER_FILE)

    def options(self) -> ResticOptions:
        """restic options: cache in `<scratch>/restic-cache`, TMPDIR a `tmp-*` subdir."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.scratch_dir / f"tmp-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700, exist_ok=True)
        return ResticOptions(
            binary=self.binary,
            scratch_dir=str(self.scratch_dir),
            cache_dir=str(self.scratch_dir / "restic-cache"),
            no_cache=not self.enable_cache,
            temp_dir=str(tmp),
            nice=self.nice,
            ionice_class=self.ionice_class,
            ionice_class_data=self.ionice_class_data,
            unreachable_timeout=self.backend_timeout,
            run_ledger=self.ledger,
        )


@dataclass(frozen=True)
class RepositoryHandle:
    """A Repository as read from the API, and a restic driver for it."""

    name: str
    namespace: str
    model: Repository
    restic: Restic

    @property
    def provider(self) -> str:
        """The backend provider (local, s3, gcs, ...)."""
        return self.restic.target.provider

    @property
    def display(self) -> str:
        """The repository location without credentials, for messages."""
        return self.restic.target.display


def _secret_data(secret: JSON) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = str(value).encode()
    return data


async def open_repository(
    kube: Kube, name: str, namespace: str, settings: ResticSettings
) -> RepositoryHandle:
    """Read Repository `namespace/name` and its storage Secret; a restic driver for it.

    Raises AgentError (missing, unreadable or forbidden objects) or the restic error
    for a backend spec or secret restic cannot use (`InvalidBackend`).
    """
    where = f"Repository {namespace}/{name}"
    try:
        obj = await kube.get(REPOSITORIES, name, namespace)
    except NotFound:
        raise AgentError(f"{where} does not exist; create it or fix spec.repository") from None
    except Forbidden as exc:
        raise AgentError(
            f"reading {where} is forbidden for this pod's ServiceAccount ({exc.message}); "
            "bind it to the stash agent ClusterRole"
        ) from None
    try:
        repo = Repository.model_validate(obj)
    except ValidationError as exc:
        raise AgentError(f"{where} does not parse: {exc.errors()[0]['msg']}") from None
    backend = repo.spec.backend if repo.spec else None
    if backend is None:
        raise AgentError(f"{where} has no spec.backend")
    secret_name = backend.storage_secret_name
    if not secret_name:
        raise AgentError(f"{where} has no spec.backend.storageSecretName")
    try:
        secret = await kube.get(SECRETS, secret_name, namespace)
    except NotFound:
        raise AgentError(
            f'the storage secret "{secret_name}" of {where} does not exist in namespace {namespace}'
        ) from None
    except Forbidden as exc:
        raise AgentError(
            f'reading the storage secret "{secret_name}" is forbidden for this pod\'s '
            f"ServiceAccount ({exc.message})"
        ) from None
    target = restic_target(
        backend,
        _secret_data(secret),
        scratch_dir=settings.scratch_dir,
        secret_name=secret_name,
    )
    local = target.local_path
    if local is not None and not await asyncio.to_thread(os.path.isdir, local):
        # restic would create it, and the backup would go to the container's own
        # filesystem, gone with the container.
        raise AgentError(
            f"the local backend of {where} is mounted at {local}, which does not exist in "
            "this pod: its volume is not mounted here (the pod was not injected with it)"
        )
    return RepositoryHandle(name, namespace, repo, Restic(target, settings.options()))


async def _probe_version(binary: str) -> None:
    with contextlib.suppress(ResticError, OSError):
        await detect_version(binary)


@contextlib.asynccontextmanager
async def version_probed_meanwhile(settings: ResticSettings) -> AsyncIterator[None]:
    """Run `restic version` while the body runs (its answer is cached per binary, so
    the body's first restic command starts at once). A failure is left for that command
    to report; leaving waits for the probe (a fraction of a second) rather than leave
    a `restic version` behind."""
    probe = asyncio.create_task(_probe_version(settings.binary))
    try:
        yield
    finally:
        await probe


def describe(exc: BaseException) -> str:
    """The one-line message a host's status entry carries for `exc`."""
    if isinstance(exc, ResticError):
        return str(exc)
    return str(exc) or type(exc).__name__
