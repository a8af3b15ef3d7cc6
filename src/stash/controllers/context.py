"""What every reconciler shares: the client, the informer caches, events, the cron
engine, the operator's settings and the clock. Built once by the operator
(`stash.operator`). Its readers (`repository_facts`, `target_facts`, ...) gather the
facts the pure condition rules (`stash.controllers.conditions`) decide from.

Not for: rules (a reader says what is there, never what it means).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stash.api import (
    GROUP,
    BackupBatch,
    BackupBlueprint,
    BackupConfiguration,
    BackupSession,
    Repository,
    RestoreBatch,
    RestoreSession,
)
from stash.api.common import ObjectReference, TargetRef
from stash.contract.resources import TARGET_KINDS
from stash.contract.sessions import LABEL_MANAGED_BY
from stash.controllers.conditions import InvokerFacts, RepositoryFacts, TargetFacts
from stash.controllers.liveness import ChangeClock, job_host, job_problem
from stash.hooks import PodExec
from stash.kube.client import JSON, Kube, KubeError, NotFound, key_of
from stash.kube.events import EventRecorder
from stash.kube.informer import Informer
from stash.kube.resources import EVENTS
from stash.notifications import Notifier
from stash.scheduler import CronEngine
from stash.sessionmetrics import SessionMetricsSink
from stash.settings import OperatorSettings

_M = TypeVar("_M", bound=BaseModel)

#: Seconds before a Job that has no pod (and no FailedCreate Event) is looked at again.
IDLE_RECHECK = 5.0
#: Parsed objects `ControllerContext.parse` remembers (the most recently read). A parsed
#: BackupConfiguration weighs ~13 KB and takes ~40 us to parse again: a larger memo would
#: cost more memory at 10,000 invokers than it saves time.
PARSED_KEEP = 1024
#: Selects the Jobs the operator creates, and their pods (`provisioning` labels them).
EXECUTOR_SELECTOR = f"{LABEL_MANAGED_BY}={GROUP}"


@dataclass
class Caches:
    """The informers whose caches reconcilers read (never the apiserver, for reads)."""

    repositories: Informer
    backupconfigurations: Informer
    backupsessions: Informer
    restoresessions: Informer
    secrets: Informer
    namespaces: Informer
    jobs: Informer
    """The backup and restore Jobs the operator created (indexed by `owner`)."""
    pods: Informer
    """The pods of those Jobs (indexed by `job`)."""
    backupblueprints: Informer | None = None
    """Cluster-scoped; auto-backup resolves annotations with it."""
    backupbatches: Informer | None = None
    restorebatches: Informer | None = None
    claims: Informer | None = None
    """Stand-alone PVCs (auto-backup targets)."""
    appbindings: Informer | None = None
    """AppBindings, when their API is served (auto-backup targets)."""

    def all(self) -> list[Informer]:
        optional = (
            self.backupblueprints,
            self.backupbatches,
            self.restorebatches,
            self.claims,
            self.appbindings,
        )
        return [
            self.repositories,
            self.backupconfigurations,
            self.backupsessions,
            self.restoresessions,
            self.secrets,
            self.namespaces,
            self.jobs,
            self.pods,
            *(i for i in optional if i is not None),
        ]


@dataclass(frozen=True)
class ExecutorFailures:
    """Hosts whose Job failed or could not start, and when to look again."""

    hosts: list[tuple[str, str]]
    """(host, message) to fail."""
    recheck: float | None
    """Seconds until a pod that cannot start has waited `executor_start_timeout`."""


@dataclass
class ControllerContext:
    """Dependencies of the reconcilers (one per operator process)."""

    kube: Kube
    caches: Caches
    recorder: EventRecorder
    engine: CronEngine
    settings: OperatorSettings
    """The agent image and Pushgateway Jobs get, the default time zone of schedules, how
    long an executor's heartbeat may be silent."""
    workloads: Mapping[str, Informer] = field(default_factory=dict)
    """The workload informers by kind (targets are looked up here first)."""
    targets: Mapping[str, Informer] = field(default_factory=dict)
    """Every target cache by kind: the workloads, PVCs and AppBindings (when served);
    `target_facts` reads them before asking the apiserver."""
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    session_metrics: SessionMetricsSink = field(default_factory=SessionMetricsSink)
    """Where session metrics go: the Pushgateway, or kept for the operator's /metrics."""
    pod_exec: PodExec | None = None
    """How a batch's exec global hooks run (`pods/exec`); None: they fail saying so."""
    notifier: Notifier | None = None
    """The operator's notifiers (None: no notifications)."""

    _parsed: OrderedDict[tuple[str, str], tuple[str, Any]] = field(default_factory=OrderedDict)

    def parse(self, model: type[_M], obj: JSON) -> _M:
        """`model.model_validate(obj)`, remembered per (kind, key) at its latest
        resourceVersion: the same cached object is parsed once, however many reconciles
        read it. The `PARSED_KEEP` most recently read objects are kept (a parsed
        BackupConfiguration weighs ~13 KB: all of 10,000 would triple the caches)."""
        meta = obj.get("metadata") or {}
        ck = (model.__name__, f"{meta.get('namespace')}/{meta.get('name')}")
        rv = str(meta.get("resourceVersion"))
        hit = self._parsed.get(ck)
        if hit is not None and hit[0] == rv:
            self._parsed.move_to_end(ck)
            parsed: _M = hit[1]
            return parsed
        parsed = model.model_validate(obj)
        self._parsed[ck] = (rv, parsed)
        self._parsed.move_to_end(ck)
        if len(self._parsed) > PARSED_KEEP:
            self._parsed.popitem(last=False)
        return parsed

    def forget_deleted(self) -> None:
        """From now on, a deleted object's parsed copy leaves the memo at once. (Left to
        age out, every BackupSession ever read would stay until `PARSED_KEEP` newer
        objects pushed it out: a day of one-minute schedules, growing all along.)"""
        c = self.caches
        for informer, model in (
            (c.backupsessions, BackupSession),
            (c.restoresessions, RestoreSession),
            (c.backupconfigurations, BackupConfiguration),
            (c.repositories, Repository),
            (c.backupbatches, BackupBatch),
            (c.restorebatches, RestoreBatch),
            (c.backupblueprints, BackupBlueprint),
        ):
            if informer is not None:
                informer.add_handler(self._forget(model.__name__))

    def _forget(self, model_name: str) -> Callable[[str, JSON, JSON | None], None]:
        def forget(event: str, obj: JSON, _old: JSON | None) -> None:
            if event == "DELETED":
                meta = obj.get("metadata") or {}
                self._parsed.pop((model_name, f"{meta.get('namespace')}/{meta.get('name')}"), None)

        return forget

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists (from the metadata-only secrets cache)."""
        return self.caches.secrets.get(f"{namespace}/{name}") is not None

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of namespace `name` (None: not in the cache)."""
        ns: JSON | None = self.caches.namespaces.get(name)
        if ns is None:
            return None
        return dict(ns.get("metadata", {}).get("labels") or {})

    def repository(self, ref: ObjectReference | None, namespace: str) -> Repository | None:
        """The parsed Repository `ref` names (None: unset, not cached or unparseable)."""
        if ref is None:
            return None
        raw = self.caches.repositories.get(f"{ref.namespace or namespace}/{ref.name}")
        if raw is None:
            return None
        try:
            return self.parse(Repository, raw)
        except ValidationError:
            return None

    def repository_facts(self, ref: ObjectReference | None, namespace: str) -> RepositoryFacts:
        """What the caches say about the Repository `ref` names (from `namespace`)."""
        if ref is None or not ref.name:
            return RepositoryFacts("", "unset")
        key = f"{ref.namespace or namespace}/{ref.name}"
        raw = self.caches.repositories.get(key)
        if raw is None:
            return RepositoryFacts(key, "missing")
        if raw["metadata"].get("deletionTimestamp"):
            return RepositoryFacts(key, "deleting")
        repo = self.repository(ref, namespace)
        backend = repo.spec.backend if repo and repo.spec else None
        secret = backend.storage_secret_name if backend else None
        found = bool(secret) and self.secret_exists(key.partition("/")[0], str(secret))
        return RepositoryFacts(key, "found", secret, found, repo)

    async def target_facts(self, ref: TargetRef, namespace: str) -> TargetFacts:
        """Look up the object `ref` names: the target caches (workloads, PVCs, ...)
        answer "found"; a miss (or a kind without a cache) is asked of the apiserver."""
        kind, name = str(ref.kind), str(ref.name)
        ns = ref.namespace or namespace
        res = TARGET_KINDS.get(kind)
        if res is None:
            why = f"target kind {kind} is not one the operator can look up"
            return TargetFacts(kind, ns, name, None, why)
        cache = self.targets.get(kind, self.workloads.get(kind))
        cached = cache.get(f"{ns}/{name}") if cache is not None else None
        if cached is not None:
            return TargetFacts(kind, ns, name, True, workload=cached)
        try:
            live = await self.kube.get(res, name, ns)
        except NotFound as exc:
            if not isinstance(exc.body, dict):
                # The apiserver's plain "404 page not found": no such API here (e.g.
                # DeploymentConfig off OpenShift), not a missing object.
                why = (
                    f"{kind} {ns}/{name} cannot be a target here: this cluster does not "
                    f"serve {res.plural}.{res.group or 'core'}/{res.version}"
                )
                return TargetFacts(kind, ns, name, False, why)
            return TargetFacts(kind, ns, name, False)
        except KubeError as exc:
            why = f"looking up {kind} {ns}/{name}: {exc.message or exc}"
            return TargetFacts(kind, ns, name, None, why)
        return TargetFacts(kind, ns, name, True, workload=live)

    async def invoker_facts(self, invoker: BackupConfiguration | RestoreSession) -> InvokerFacts:
        """The Repository (Restic driver), the target and the namespace labels."""
        ns = str(invoker.metadata.namespace)
        spec = invoker.spec
        repository = None
        if spec is not None and (spec.driver or "Restic") == "Restic":
            repository = self.repository_facts(spec.repository, ns)
        ref = spec.target.ref if spec and spec.target else None
        target = await self.target_facts(ref, ns) if ref and ref.kind and ref.name else None
        return InvokerFacts(repository, target, self.namespace_labels(ns))

    async def executor_failures(self, owner: str, seen: ChangeClock) -> ExecutorFailures:
        """The Jobs of `owner` (`<Kind>/<namespace>/<name>`) that failed, or whose pod
        has not been able to start for `executor_start_timeout` seconds as we observed
        it (`seen` remembers since when); the reason is the pod's or the Job's."""
        limit = self.settings.executor_start_timeout
        hosts: list[tuple[str, str]] = []
        recheck: float | None = None
        for job in self.caches.jobs.by_index("owner", owner):
            uid = str(job["metadata"].get("uid"))
            pods = self.caches.pods.by_index("job", key_of(job))
            status = job.get("status") or {}
            idle = not pods and not status.get("conditions")
            problem = job_problem(job, pods, await self._failed_create(job) if idle else None)
            if problem is None:
                seen.forget(owner, uid)
                if idle:  # no pod yet and no FailedCreate Event yet: look again soon
                    recheck = min(recheck or IDLE_RECHECK, IDLE_RECHECK)
            elif problem.final:
                hosts.append((job_host(job), problem.message))
            else:
                waited = seen.unchanged_for(owner, uid, "cannot start")
                if waited >= limit:
                    hosts.append((job_host(job), f"{problem.message} (for {waited:.0f}s)"))
                else:
                    left = limit - waited + 0.05
                    recheck = left if recheck is None else min(recheck, left)
        return ExecutorFailures(hosts, recheck)

    async def _failed_create(self, job: JSON) -> str | None:
        """The newest message of the Job controller's FailedCreate Events for `job`."""
        meta = job["metadata"]
        try:
            events = await self.kube.list(
                EVENTS,
                meta.get("namespace"),
                field_selector=f"involvedObject.uid={meta.get('uid')},reason=FailedCreate",
            )
        except KubeError:
            return None
        items = sorted(
            events.get("items") or [],
            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
        )
        return str(items[-1].get("message") or "") if items else None


def job_owner_key(obj: JSON) -> list[str]:
    """Index: `<Kind>/<namespace>/<name>` of the session (or RestoreBatch) that owns a Job."""
    ns = obj["metadata"].get("namespace")
    return [
        f"{o['kind']}/{ns}/{o['name']}"
        for o in obj["metadata"].get("ownerReferences") or []
        if o.get("kind") in ("BackupSession", "RestoreSession", "RestoreBatch") and o.get("name")
    ]


def pod_job_key(obj: JSON) -> list[str]:
    """Index: `<namespace>/<name>` of the Job a pod belongs to."""
    ns = obj["metadata"].get("namespace")
    return [
        f"{ns}/{o['name']}"
        for o in obj["metadata"].get("ownerReferences") or []
        if o.get("kind") == "Job" and o.get("name")
    ]


def sessions_of_job(kind: str) -> Callable[[JSON], list[str]]:
    """Map a Job to the keys of the `kind` sessions that own it."""

    def keys(job: JSON) -> list[str]:
        return [k.split("/", 1)[1] for k in job_owner_key(job) if k.startswith(f"{kind}/")]

    return keys


def sessions_of_pod(kind: str, jobs: Informer) -> Callable[[JSON], list[str]]:
    """Map a Job's pod to the keys of the `kind` sessions that own its Job."""
    of_job = sessions_of_job(kind)

    def keys(pod: JSON) -> list[str]:
        found = [jobs.get(k) for k in pod_job_key(pod)]
        return [k for job in found if job is not None for k in of_job(job)]

    return keys


def metadata_only(obj: JSON) -> JSON:
    """Informer transform for Secrets: keep metadata, drop the data (never cache secrets)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}
