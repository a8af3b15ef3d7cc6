"""`stash operator`: informers, controllers, the cron engine and /metrics in one loop.

Every replica runs the informers (warm caches make a hand-over fast) and the metrics
server; only the replica holding the Lease runs the controllers and the cron engine,
and it stops them as soon as it can no longer renew the lease. Not for: rules (they are
in `stash.controllers`) or Kubernetes plumbing (`stash.kube`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stash import metrics
from stash.contract import phases
from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    FUNCTIONS,
    REPOSITORIES,
    RESTORESESSIONS,
    TASKS,
)
from stash.controllers.backupconfiguration import (
    BackupConfigurationReconciler,
    repository_key,
)
from stash.controllers.backupsession import BackupSessionReconciler
from stash.controllers.catalog import builtin_functions, builtin_tasks
from stash.controllers.context import (
    EXECUTOR_SELECTOR,
    Caches,
    ControllerContext,
    job_owner_key,
    metadata_only,
    pod_job_key,
    sessions_of_job,
    sessions_of_pod,
)
from stash.controllers.provisioning import FIELD_MANAGER, install_cluster_roles
from stash.controllers.repository import RepositoryReconciler
from stash.controllers.restoresession import RestoreSessionReconciler
from stash.controllers.sessionend import invoker_key
from stash.controllers.trigger import create_backup_session
from stash.controllers.workload import (
    WATCHED_WORKLOADS,
    WorkloadReconciler,
    target_workload_keys,
    workload_key,
)
from stash.kube.client import JSON, Conflict, Kube, KubeError, Resource, key_of
from stash.kube.controller import Controller, ObjectReconciler, as_reconciler, spec_changed
from stash.kube.events import EventRecorder
from stash.kube.informer import Informer, wait_synced
from stash.kube.leader import LeaderElector
from stash.kube.resources import JOBS, NAMESPACES, PODS, SECRETS
from stash.kube.supervisor import Supervisor
from stash.scheduler import CronEngine
from stash.sessionmetrics import MetricLabels, SessionMetricsSink
from stash.settings import OperatorSettings
from stash.webhook.server import WebhookServer

log = logging.getLogger(__name__)


def _secret_key(obj: JSON) -> list[str]:
    backend = (obj.get("spec") or {}).get("backend") or {}
    name = backend.get("storageSecretName")
    return [f"{obj['metadata']['namespace']}/{name}"] if name else []


def _restore_repository_key(obj: JSON) -> list[str]:
    return repository_key(obj)


def _workload_mapper(kind: str) -> Callable[[JSON], list[str]]:
    def keys(obj: JSON) -> list[str]:
        return [workload_key(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])]

    return keys


class Operator:
    """The operator process: build with settings and a client, then `await run()`."""

    def __init__(self, kube: Kube, settings: OperatorSettings, identity: str | None = None):
        self.kube = kube
        self.settings = settings
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        ns = settings.watch_namespace

        def informer(res: Any, **kw: Any) -> Informer:
            metrics.WATCH_FAILURES.labels(res.plural)  # the series exists from the start
            return Informer(
                kube,
                res,
                namespace=ns,
                resync_period=settings.resync_period,
                on_failure=metrics.watch_failed,
                **kw,
            )

        self.caches = Caches(
            repositories=informer(REPOSITORIES),
            backupconfigurations=informer(BACKUPCONFIGURATIONS),
            backupsessions=informer(BACKUPSESSIONS),
            restoresessions=informer(RESTORESESSIONS),
            secrets=informer(SECRETS, transform=metadata_only, metadata_only=True),
            namespaces=Informer(kube, NAMESPACES, resync_period=0, on_failure=metrics.watch_failed),
            jobs=informer(JOBS, label_selector=EXECUTOR_SELECTOR),
            pods=informer(PODS, label_selector=EXECUTOR_SELECTOR),
        )
        c = self.caches
        c.backupconfigurations.add_index("repository", repository_key)
        c.restoresessions.add_index("repository", _restore_repository_key)
        c.backupsessions.add_index("invoker", invoker_key)
        c.backupconfigurations.add_index("target", target_workload_keys)
        c.repositories.add_index("secret", _secret_key)
        c.jobs.add_index("owner", job_owner_key)
        c.pods.add_index("job", pod_job_key)
        self.supervisor = Supervisor()
        self.workloads = {kind: informer(res) for kind, res in WATCHED_WORKLOADS.items()}
        self.engine = CronEngine(self._fire, missed_grace=settings.missed_schedule_grace)
        self.ctx = ControllerContext(
            kube=kube,
            caches=c,
            recorder=EventRecorder(kube, "stash-operator", self.identity),
            engine=self.engine,
            settings=settings,
            workloads=self.workloads,
            session_metrics=SessionMetricsSink(
                settings.pushgateway_url or None, settings.pushgateway_timeout
            ),
        )
        self.controllers = self._wire()
        observer = metrics.ControllerObserver()
        for ctrl in self.controllers:
            ctrl.metrics = observer
        self.ready = asyncio.Event()
        self.webhook: WebhookServer | None = None
        self.metrics_port: int | None = None
        self._phase_of: dict[str, str] = {}
        c.backupsessions.add_handler(self._count_phases)
        c.backupconfigurations.add_handler(self._forget_metrics_of("BackupConfiguration"))
        c.restoresessions.add_handler(self._forget_metrics_of("RestoreSession"))

    def _for_objects(
        self, reconciler: ObjectReconciler[Any], cache: Informer, res: Resource
    ) -> Controller:
        """A controller running an object reconciler on the objects `cache` holds."""
        adapter = as_reconciler(reconciler, cache, self.kube, res, parse=self.ctx.parse)
        return Controller(adapter, workers=self.settings.workers)

    def _wire(self) -> list[Controller]:
        c, w = self.caches, self.settings.workers
        repo = self._for_objects(RepositoryReconciler(self.ctx), c.repositories, REPOSITORIES)
        repo.watch(c.repositories)
        repo.watch(c.backupconfigurations, repository_key, when=spec_changed)
        repo.watch(c.restoresessions, _restore_repository_key, when=spec_changed)
        repo.watch(
            c.secrets, lambda s: [key_of(r) for r in c.repositories.by_index("secret", key_of(s))]
        )

        bc = self._for_objects(
            BackupConfigurationReconciler(self.ctx), c.backupconfigurations, BACKUPCONFIGURATIONS
        )
        # Its own status writes need no second look (resync covers drift).
        bc.watch(c.backupconfigurations, when=spec_changed)
        for kind, inf in self.workloads.items():
            bc.watch(inf, self._bcs_of_target(kind), when=spec_changed)
        bc.watch(c.repositories, self._bcs_of_repository)
        bc.watch(c.secrets, self._bcs_of_secret)

        bs = self._for_objects(BackupSessionReconciler(self.ctx), c.backupsessions, BACKUPSESSIONS)
        bs.watch(c.backupsessions)
        bs.watch(c.backupconfigurations, self._sessions_of_invoker)
        bs.watch(c.jobs, sessions_of_job("BackupSession"))
        bs.watch(c.pods, sessions_of_pod("BackupSession", c.jobs))

        rs = self._for_objects(
            RestoreSessionReconciler(self.ctx), c.restoresessions, RESTORESESSIONS
        )
        rs.watch(c.restoresessions)
        rs.watch(
            c.repositories,
            lambda r: [key_of(o) for o in c.restoresessions.by_index("repository", key_of(r))],
        )
        rs.watch(c.jobs, sessions_of_job("RestoreSession"))
        rs.watch(c.pods, sessions_of_pod("RestoreSession", c.jobs))
        wl = Controller(WorkloadReconciler(self.ctx), workers=w)
        for kind, inf in self.workloads.items():
            wl.watch(inf, _workload_mapper(kind))
        wl.watch(c.backupconfigurations, target_workload_keys, when=spec_changed)
        wl.watch(c.restoresessions, target_workload_keys, when=spec_changed)
        # a usage policy that starts or stops allowing an invoker adds or removes its agent
        wl.watch(c.repositories, self._workloads_of_repository, when=spec_changed)
        return [repo, bc, bs, rs, wl]

    # ------------------------------------------------------------------ mappers
    def _bcs_of_repository(self, repo: JSON) -> list[str]:
        return [
            key_of(o) for o in self.caches.backupconfigurations.by_index("repository", key_of(repo))
        ]

    def _workloads_of_repository(self, repo: JSON) -> list[str]:
        c, key = self.caches, key_of(repo)
        users = [*c.backupconfigurations.by_index("repository", key)]
        users += c.restoresessions.by_index("repository", key)
        return [k for u in users for k in target_workload_keys(u)]

    def _bcs_of_target(self, kind: str) -> Callable[[JSON], list[str]]:
        def keys(obj: JSON) -> list[str]:
            wk = workload_key(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
            return [key_of(b) for b in self.caches.backupconfigurations.by_index("target", wk)]

        return keys

    def _bcs_of_secret(self, secret: JSON) -> list[str]:
        out: list[str] = []
        for repo in self.caches.repositories.by_index("secret", key_of(secret)):
            out.extend(self._bcs_of_repository(repo))
        return out

    def _sessions_of_invoker(self, bc: JSON) -> list[str]:
        ns, name = bc["metadata"]["namespace"], bc["metadata"]["name"]
        sessions = self.caches.backupsessions.by_index(
            "invoker", f"BackupConfiguration/{ns}/{name}"
        )
        return [
            key_of(s)
            for s in sessions
            if (s.get("status") or {}).get("phase") not in phases.FINAL_SESSION_PHASES
        ]

    def _count_phases(self, kind: str, obj: JSON, old: JSON | None) -> None:
        key = key_of(obj)
        before = self._phase_of.pop(key, None)
        if before is not None:
            metrics.SESSIONS_BY_PHASE.labels(before).dec()
        if kind != "DELETED":
            phase = (obj.get("status") or {}).get("phase") or "Pending"
            self._phase_of[key] = phase
            metrics.SESSIONS_BY_PHASE.labels(phase).inc()

    def _forget_metrics_of(self, invoker_kind: str) -> Callable[[str, JSON, JSON | None], None]:
        """An informer handler: a deleted invoker's session metrics leave /metrics."""

        def forget(kind: str, obj: JSON, _old: JSON | None) -> None:
            if kind == "DELETED":
                meta = obj["metadata"]
                labels = MetricLabels(invoker_kind, meta["name"], meta["namespace"], "")
                self.ctx.session_metrics.local.forget(labels.job)

        return forget

    # ------------------------------------------------------------------ cron tick
    async def _fire(self, ekey: str, when: Any) -> None:
        _kind, ns, name = ekey.split("/", 2)
        invoker = self.caches.backupconfigurations.get(f"{ns}/{name}")
        if invoker is None or (invoker.get("spec") or {}).get("paused"):
            return
        await create_backup_session(self.kube, invoker, when)
        metrics.TICK_LAG.observe((self.ctx.now() - when).total_seconds())

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """Run until cancelled; clean shutdown on cancellation."""
        informers = [*self.caches.all(), *self.workloads.values()]
        for inf in informers:
            self.supervisor.spawn(f"informer {inf.resource.plural}", inf.run, progress=inf.progress)
        server = await self._serve_metrics()
        webhook_task = (
            asyncio.create_task(self._serve_webhook(), name="admission webhook")
            if self.settings.serve_webhook
            else None
        )
        try:
            await wait_synced(informers)
            self.ready.set()
            log.info(
                "caches synced (%s); identity %s",
                self.settings.watch_namespace or "all namespaces",
                self.identity,
            )
            if self.settings.leader_elect:
                await self._lease_namespace()
                elector = LeaderElector(
                    self.kube,
                    self.settings.namespace,
                    self.settings.lease_name,
                    self.identity,
                    lease_duration=self.settings.lease_duration,
                    renew_deadline=self.settings.renew_deadline,
                    retry_period=self.settings.retry_period,
                    on_change=metrics.leader_changed,
                )
                await elector.run(self._lead)
            else:
                await self._lead()
        finally:
            self.engine.stop()
            await self.supervisor.close()
            if webhook_task is not None:
                webhook_task.cancel()
                await asyncio.gather(webhook_task, return_exceptions=True)
            await server.cleanup()

    async def _lease_namespace(self) -> None:
        """Wait (saying why, once, as an ERROR) while the Lease's namespace is missing."""
        ns = self.settings.namespace
        if self.caches.namespaces.get(ns) is not None:
            return
        log.error(
            f"namespace {ns}, where the leader-election Lease {self.settings.lease_name} "
            "lives, does not exist: this replica waits for it and does no work meanwhile. "
            f"Create it (kubectl create namespace {ns}), or set --operator-namespace "
            "(STASH_NAMESPACE) to the operator's namespace, or run one replica with "
            "--no-leader-elect"
        )
        await self.caches.namespaces.holds(ns)
        log.info("namespace %s exists now; competing for the lease", ns)

    async def _serve_webhook(self) -> None:
        """The admission webhook, on every replica; retried until it starts (a replica
        whose webhook is not serving is not ready, so the Service skips it)."""
        delay = 2.0
        while True:
            webhook = WebhookServer(self.settings, self.kube)
            try:
                await webhook.start()
                break
            except (KubeError, OSError, RuntimeError) as exc:
                await webhook.stop(unregister_webhooks=False)
                log.error("the admission webhook did not start: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        self.webhook = webhook
        try:
            await asyncio.Event().wait()
        finally:
            self.webhook = None
            await asyncio.shield(webhook.stop())

    async def _lead(self) -> None:
        """Leader work: the cron engine and every controller (re-synced from the caches)."""
        log.info("%s leads", self.identity)
        await self._install_builtins()
        self.engine.start()
        for ctrl in self.controllers:
            for key in self._initial_keys(ctrl):
                ctrl.queue.add(key)
        tasks = [
            asyncio.create_task(ctrl.run(), name=f"controller {ctrl.name}")
            for ctrl in self.controllers
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.engine.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ctrl in self.controllers:
                ctrl.reset()

    async def _install_builtins(self) -> None:
        """Agent ClusterRoles, and the built-in Functions/Tasks unless customised (§5.5)."""
        if self.settings.manage_agent_roles:
            try:
                await install_cluster_roles(self.ctx)
            except KubeError as exc:
                log.error(
                    "installing the agent ClusterRoles failed: %s (when a Helm chart owns "
                    "them, run with STASH_MANAGE_AGENT_ROLES=false)",
                    exc,
                )
        for obj, res in [
            *((f, FUNCTIONS) for f in builtin_functions()),
            *((t, TASKS) for t in builtin_tasks()),
        ]:
            try:
                # Not forced: a field someone else changed (a customised built-in) makes
                # this a Conflict and the object is left as it is.
                await self.kube.apply(res, obj, field_manager=FIELD_MANAGER)
            except Conflict:
                log.info("%s %s is customised; left as it is", res.kind, obj["metadata"]["name"])
            except KubeError as exc:
                log.error("creating %s %s failed: %s", res.kind, obj["metadata"]["name"], exc)

    def _initial_keys(self, ctrl: Controller) -> list[str]:
        c = self.caches
        source: dict[str, Informer] = {
            "repository": c.repositories,
            "backupconfiguration": c.backupconfigurations,
            "backupsession": c.backupsessions,
            "restoresession": c.restoresessions,
        }
        if ctrl.name == "workload":
            return [
                workload_key(kind, o["metadata"]["namespace"], o["metadata"]["name"])
                for kind, inf in self.workloads.items()
                for o in inf.list()
            ]
        inf = source.get(ctrl.name)
        return [key_of(o) for o in inf.list()] if inf else []

    async def _serve_metrics(self) -> web.AppRunner:
        async def metrics_handler(_: web.Request) -> web.Response:
            for ctrl in self.controllers:
                metrics.QUEUE_DEPTH.labels(ctrl.name).set(ctrl.queue.depth)
            # The operator's families, then the session metrics it keeps when no
            # Pushgateway is configured (docs/metrics.md).
            body = generate_latest() + self.ctx.session_metrics.exposition()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            down = "\n".join(f"{k}: {v}" for k, v in sorted(self.supervisor.problems().items()))
            return web.Response(status=503, text=down) if down else web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            if not self.ready.is_set():
                return web.Response(status=503, text="caches not synced")
            if self.settings.serve_webhook and self.webhook is None:
                return web.Response(status=503, text="admission webhook not serving")
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.metrics_host, self.settings.metrics_port)
        await site.start()
        addrs = runner.addresses
        self.metrics_port = int(addrs[0][1]) if addrs else None
        return runner
