"""Repository reconciler (stash-api.md §2.3).

Keeps the finalizer `stash`, warns (Event) about an invalid backend or a missing storage
Secret, maintains `status.references` (the invokers using the repository, from the
caches) and, on deletion with `wipeOut: true`, deletes the repository's objects in its
storage before letting the Repository go. Backup statistics in the status (integrity,
size, counts, times) belong to the agents and are never touched here.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

from pydantic import ValidationError

from stash.api import Repository
from stash.contract.resources import REPOSITORIES
from stash.contract.sessions import REPOSITORY_FINALIZER
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON, KubeError
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
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


class RepositoryReconciler:
    """Finalizer, checks, references and wipe-out of Repositories."""

    name = "repository"
    model = Repository

    #: References are rewritten at most this often per Repository (a burst of new
    #: invokers would otherwise rewrite an ever-longer list once per invoker).
    REFERENCES_EVERY = 2.0

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self._written: dict[str, float] = {}
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

    async def _finalize(self, obj: JSON, repo: Repository | None) -> None:
        if repo is not None and repo.spec and repo.spec.wipe_out:
            await self._wipe_out(obj, repo)

    async def _write_references(self, obj: JSON) -> Result:
        """status.references (and observedGeneration), at most every REFERENCES_EVERY s."""
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        refs = references_of(self.ctx, key)
        status = obj.get("status") or {}
        if status.get("references", []) == refs and status.get("observedGeneration") == meta.get(
            "generation"
        ):
            return DONE
        wait = self._written.get(key, 0.0) + self.REFERENCES_EVERY - time.monotonic()
        if wait > 0:
            return Result(requeue_after=wait)
        self._written[key] = time.monotonic()

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
        s3 = backend.s3
        try:
            count = await asyncio.to_thread(
                _wipe_s3,
                s3.endpoint,
                s3.bucket,
                (s3.prefix or "").strip("/"),
                data.get("AWS_ACCESS_KEY_ID"),
                data.get("AWS_SECRET_ACCESS_KEY"),
                s3.region,
                bool(s3.insecure_tls),
            )
        except Exception as exc:  # the storage said no: keep the finalizer? no: report
            await ctx.recorder.emit(
                obj, WARNING, "WipeOutFailed", f"deleting s3://{s3.bucket}/{s3.prefix or ''}: {exc}"
            )
            return
        await ctx.recorder.emit(
            obj,
            NORMAL,
            "WipedOut",
            f"deleted {count} object(s) under s3://{s3.bucket}/{s3.prefix or ''}",
        )


def _wipe_s3(
    endpoint: str,
    bucket: str,
    prefix: str,
    key_id: str | None,
    secret: str | None,
    region: str | None,
    insecure: bool,
) -> int:
    import boto3  # imported lazily: only wipe-out needs it

    url = endpoint if "://" in endpoint else f"https://{endpoint}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region or "us-east-1",
        verify=not insecure,
    )
    count = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            count += len(keys)
    return count
