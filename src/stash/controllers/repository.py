"""Repository reconciler (stash-api.md §2.3).

Keeps the finalizer `stash`, warns (Event) about an invalid backend or a missing storage
Secret, maintains `status.references` (the invokers using the repository, from the
caches) and, on deletion with `wipeOut: true`, deletes the repository's objects in its
storage before letting the Repository go. Backup statistics in the status (integrity,
size, counts, times) belong to the agents and are never touched here.

Wipe-out deletes only keys under `<prefix>/` (each key is checked, whatever the storage
lists), never without a prefix; while other invokers still use the Repository it waits
(requeued, up to `wipe_out_wait` after the deletion began) and then keeps the data; the
deletion is bounded (`wipe_out_timeout`, and timeouts on every storage call). Each outcome
is an Event; the Repository is released in every case, so deleting a namespace never
hangs on it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import Repository
from stash.api.repository import S3Spec
from stash.contract.phases import FINAL_RESTORE_PHASES
from stash.contract.resources import REPOSITORIES
from stash.contract.sessions import REPOSITORY_FINALIZER
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON, KubeError, key_of
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.informer import slim
from stash.kube.resources import SECRETS
from stash.kube.status import update_status
from stash.validation import validate_repository

log = logging.getLogger(__name__)


def references_of(ctx: ControllerContext, key: str) -> list[JSON]:
    """Invokers (BackupConfigurations, RestoreSessions) whose repository is `key`."""
    refs: list[JSON] = []
    for bc in ctx.caches.backupconfigurations.by_index("repository", key):
        refs.append(_ref(bc))
    for rs in ctx.caches.restoresessions.by_index("repository", key):
        refs.append(_ref(rs))
    return sorted(refs, key=lambda r: (r["kind"], r["namespace"], r["name"]))


def _ref(obj: JSON) -> JSON:
    return {
        "apiGroup": "stash.appscode.com",
        "kind": obj.get("kind"),
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"]["namespace"],
    }


def _digest(references: object) -> str:
    text = json.dumps(references, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ReferenceDigests:
    """The Repositories informer's transform: `status.references` (one entry per
    invoker, ~1 MB at 10,000) leaves the cached copy, and its digest is kept here, so
    the reconciler can still tell whether the live list is the one it would write. No
    other reader of the cache looks at the references."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def __call__(self, obj: JSON) -> JSON:
        obj = slim(obj)
        status = obj.get("status")
        if isinstance(status, dict):
            status = dict(status)
            self._digests[key_of(obj)] = _digest(status.pop("references", []))
            obj["status"] = status
        else:
            self._digests[key_of(obj)] = _digest([])
        return obj

    def cached(self, key: str) -> str | None:
        """The digest of the cached Repository `key`'s references (None: not seen)."""
        return self._digests.get(key)

    def same(self, key: str, status: JSON, references: list[JSON]) -> bool:
        """Whether the cached Repository `key` (its `status`) lists `references`."""
        digest = self._digests.get(key)
        if digest is None:  # not cached through this transform: the list is there
            return bool(status.get("references", []) == references)
        return digest == _digest(references)


class RepositoryReconciler:
    """Finalizer, checks, references and wipe-out of Repositories."""

    name = "repository"
    model = Repository

    #: References are gathered and rewritten at most this often per Repository (a burst
    #: of new invokers would otherwise rewrite an ever-longer list once per invoker).
    REFERENCES_EVERY = 2.0

    def __init__(self, ctx: ControllerContext, references: ReferenceDigests | None = None) -> None:
        self.ctx = ctx
        #: The Repositories cache's transform (its copies carry no references).
        self.references = references or ReferenceDigests()
        self._gathered: dict[str, float] = {}
        #: Per Repository: what was true when its references last matched its users.
        self._matched: dict[str, tuple[object, ...]] = {}
        self.hooks = ObjectHooks[Repository](
            finalizer=REPOSITORY_FINALIZER, finalize=self._finalize, invalid=self._invalid
        )

    async def reconcile(self, repo: Repository, obj: JSON) -> Result:
        ctx = self.ctx
        verdict = validate_repository(repo)
        if not verdict.ok:
            await ctx.recorder.emit(obj, WARNING, "RepositoryInvalid", verdict.message)
        ns = str(repo.metadata.namespace)
        secret = repo.spec.backend.storage_secret_name if repo.spec and repo.spec.backend else None
        if secret and not ctx.secret_exists(ns, secret):
            await ctx.recorder.emit(
                obj,
                WARNING,
                "BackendSecretNotAvailable",
                f"storage Secret {ns}/{secret} not found: backups and "
                "restores using this Repository cannot run until it exists",
            )
        return await self._write_references(obj)

    async def _invalid(self, obj: JSON, error: ValidationError) -> Result:
        await self.ctx.recorder.emit(obj, WARNING, "RepositoryInvalid", f"does not parse: {error}")
        return await self._write_references(obj)

    async def _finalize(self, obj: JSON, repo: Repository | None) -> Result | None:
        if repo is None or not repo.spec or not repo.spec.wipe_out:
            return None
        users = self._users(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
        if users:
            settings = self.ctx.settings
            waited = self.ctx.now() - _deletion_time(obj, self.ctx.now())
            left = settings.wipe_out_wait - waited.total_seconds()
            if left > 0:
                return Result(requeue_after=min(settings.wipe_out_recheck, left))
            await self.ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutRefused",
                f"still used by {', '.join(users)} after waiting {settings.wipe_out_wait:.0f}s; "
                "the repository's data was kept",
            )
            return None
        await self._wipe_out(obj, repo)
        return None

    def _users(self, key: str) -> list[str]:
        """Invokers that still use the Repository: BackupConfigurations, and
        RestoreSessions that have not finished (none being deleted)."""
        caches = self.ctx.caches
        out = []
        for kind, objs in (
            ("BackupConfiguration", caches.backupconfigurations.by_index("repository", key)),
            ("RestoreSession", caches.restoresessions.by_index("repository", key)),
        ):
            for o in objs:
                phase = (o.get("status") or {}).get("phase")
                if o["metadata"].get("deletionTimestamp") or phase in FINAL_RESTORE_PHASES:
                    continue
                out.append(f"{kind} {o['metadata']['namespace']}/{o['metadata']['name']}")
        return sorted(out)

    async def _write_references(self, obj: JSON) -> Result:
        """status.references (and observedGeneration), gathered (and written when they
        changed) at most every REFERENCES_EVERY s: with thousands of invokers on one
        Repository, gathering them once per invoker event was most of the operator's
        CPU (bench/operator_scale.py --profile)."""
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        wait = self._gathered.get(key, 0.0) + self.REFERENCES_EVERY - time.monotonic()
        if wait > 0:
            return Result(requeue_after=wait)
        self._gathered[key] = time.monotonic()
        status = obj.get("status") or {}
        caches = self.ctx.caches
        # A reference is the kind, namespace and name of a user: the same users and
        # the same cached list as when they last matched need no gathering (10,000
        # users: gathering and digesting them every 2 s was most of the CPU).
        now = (
            caches.backupconfigurations.index_keys("repository", key),
            caches.restoresessions.index_keys("repository", key),
            self.references.cached(key),
            meta.get("generation"),
            status.get("observedGeneration"),
        )
        if now[2] is not None and self._matched.get(key) == now:
            return DONE
        refs = references_of(self.ctx, key)
        if self.references.same(key, status, refs) and status.get("observedGeneration") == meta.get(
            "generation"
        ):
            self._matched[key] = now
            return DONE

        def compute(live: JSON) -> JSON:
            st = dict(live.get("status") or {})
            st["references"] = refs
            st["observedGeneration"] = live["metadata"].get("generation")
            return st

        await update_status(self.ctx.kube, REPOSITORIES, meta["name"], meta["namespace"], compute)
        return DONE

    async def _wipe_out(self, obj: JSON, repo: Repository) -> None:
        """Delete every object under the repository's bucket/prefix (s3); others: say why not."""
        ctx = self.ctx
        backend = repo.spec.backend if repo.spec else None
        provider = backend.provider() if backend else ""
        ns = obj["metadata"]["namespace"]
        if backend is None or backend.s3 is None:
            await ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutNotSupported",
                f"wipeOut is not supported for the {provider or 'unknown'} backend here; "
                "the repository's data was kept",
            )
            return
        s3 = backend.s3
        where = f"s3://{s3.bucket}/{s3.prefix or ''}"
        if not (s3.prefix or "").strip("/"):
            await ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutRefused",
                f"{where} has no prefix: wiping it would delete the whole bucket; "
                "the repository's data was kept",
            )
            return
        try:
            secret = await ctx.kube.get(SECRETS, backend.storage_secret_name or "", ns)
        except KubeError as exc:
            await ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutFailed",
                f"cannot read storage Secret {ns}/{backend.storage_secret_name}: "
                f"{exc.message or exc}; the repository's data was kept",
            )
            return
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        target = _S3Target(s3, data.get("AWS_ACCESS_KEY_ID"), data.get("AWS_SECRET_ACCESS_KEY"))
        timeout = self.ctx.settings.wipe_out_timeout
        try:
            async with asyncio.timeout(timeout):
                deleted, outside = await asyncio.to_thread(
                    _wipe_s3, target, time.monotonic() + timeout
                )
        except TimeoutError:
            await ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutFailed",
                f"deleting {where} did not finish within {timeout:.0f}s; what was not "
                "deleted by then was kept",
            )
            return
        except Exception as exc:  # the storage said no: report, and let the object go
            await ctx.recorder.emit(obj, WARNING, "WipeOutFailed", f"deleting {where}: {exc}")
            return
        if outside:
            await ctx.recorder.emit(
                obj,
                WARNING,
                "WipeOutSkippedKeys",
                f"the storage listed {outside} key(s) outside {where}/; they were kept",
            )
        await ctx.recorder.emit(
            obj, NORMAL, "WipedOut", f"deleted {deleted} object(s) under {where}"
        )


def _deletion_time(obj: JSON, default: dt.datetime) -> dt.datetime:
    stamp = obj["metadata"].get("deletionTimestamp")
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return default


@dataclass(frozen=True)
class _S3Target:
    """Where a wipe-out deletes, with the storage Secret's credentials."""

    spec: S3Spec
    key_id: str | None
    secret: str | None

    @property
    def prefix(self) -> str:
        """`<prefix>/`: every key deleted starts with it."""
        return (self.spec.prefix or "").strip("/") + "/"


def _wipe_s3(target: _S3Target, deadline: float) -> tuple[int, int]:
    """Delete the keys under `target.prefix` until `deadline` (monotonic); return
    (deleted, keys listed outside the prefix, which are left alone)."""
    import boto3  # imported lazily: only wipe-out needs it
    from botocore.config import Config

    spec = target.spec
    url = spec.endpoint if "://" in spec.endpoint else f"https://{spec.endpoint}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=target.key_id,
        aws_secret_access_key=target.secret,
        region_name=spec.region or "us-east-1",
        verify=not spec.insecure_tls,
        config=Config(connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 2}),
    )
    deleted = outside = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=spec.bucket, Prefix=target.prefix):
        if time.monotonic() > deadline:
            raise TimeoutError("wipe-out deadline passed")
        keys = [str(o["Key"]) for o in page.get("Contents", [])]
        mine = [{"Key": k} for k in keys if k.startswith(target.prefix)]
        outside += len(keys) - len(mine)
        if mine:
            client.delete_objects(Bucket=spec.bucket, Delete={"Objects": mine, "Quiet": True})
            deleted += len(mine)
    return deleted, outside
