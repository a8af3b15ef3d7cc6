"""`stash operator`: informers, controllers, cron engine, /metrics, webhook, Snapshot API.

Every replica runs the informers (warm caches make a hand-over fast), the metrics
server and the admission webhook; only the replica holding the Lease runs the
controllers and the cron engine (and registers a deleted webhook configuration again),
and it stops them as soon as it can no longer renew the lease. Not for: rules
(`stash.controllers`), webhook and Snapshot API serving (`stash.webhookserving`,
`stash.snapshotserving`), plumbing (`stash.kube`).
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
from stash.contract.resources import (
    APPBINDINGS,
    BACKUPBATCHES,
    BACKUPBLUEPRINTS,
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTOREBATCHES,
    RESTORESESSIONS,
)
from stash.controllers.autobackup import (
    AUTO_TARGET_INDEX,
    BLUEPRINT_INDEX,
    AutoBackupReconciler,
    appbindings_served,
    auto_target_keys,
    target_blueprints,
)
from stash.controllers.backupbatch import BackupBatchReconciler
from stash.controllers.backupconfiguration import (
    BackupConfigurationReconciler,
    repository_key,
)
from stash.controllers.backupsession import BackupSessionReconciler
from stash.controllers.catalog import install_builtins
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
from stash.controllers.mappers import (
    by_index,
    invokers_of_secret,
    invokers_of_target,
    own_kind_key,
    secret_key,
    sessions_of_invoker,
    targets_of_blueprint,
    workloads_of_repository,
)
from stash.controllers.repository import ReferenceDigests, RepositoryReconciler
from stash.controllers.restorebatch import RestoreBatchReconciler
from stash.controllers.restoresession import RestoreSessionReconciler
from stash.controllers.sessionend import invoker_key
from stash.controllers.staleness import StaleInvokerWatch
from stash.controllers.trigger import create_backup_session
from stash.controllers.workload import (
    WATCHED_WORKLOADS,
    WorkloadReconciler,
    target_workload_keys,
    workload_key,
)
from stash.kube.client import JSON, Kube, Resource, key_of
from stash.kube.controller import Controller, ObjectReconciler, as_reconciler, spec_changed
from stash.kube.events import EventRecorder
from stash.kube.informer import Informer, wait_synced
from stash.kube.leader import LeaderElector
from stash.kube.resources import JOBS, NAMESPACES, PODS, PVCS, SECRETS
from stash.kube.supervisor import Supervisor
from stash.notifications import Notifier, secret_loader
from stash.scheduler import CronEngine
from stash.sessionmetrics import MetricLabels, SessionMetricsSink
from stash.settings import OperatorSettings
from stash.snapshotserving import OperatorSnapshotApi
from stash.webhook.server import WebhookServer, cert_store
from stash.webhookserving import OperatorWebhook

log = logging.getLogger(__name__)

#: BackupSessions a tick creates at once (`Operator._fire`): hundreds due in the same
#: second go through this many connections, not one new TLS connection each.
TICK_CREATES = 32


class Operator:
    """The operator process: build with settings and a client, then `await run()`."""

    _ticking: asyncio.Semaphore
    """Bounds the sessions a tick creates at once (made when this replica leads)."""

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

        claims = informer(PVCS)
        self.references = ReferenceDigests()
        self.backupbatches, self.restorebatches = informer(BACKUPBATCHES), informer(RESTOREBATCHES)
        self.caches = Caches(
            repositories=informer(REPOSITORIES, transform=self.references),
            backupconfigurations=informer(BACKUPCONFIGURATIONS),
            backupsessions=informer(BACKUPSESSIONS),
            restoresessions=informer(RESTORESESSIONS),
            secrets=informer(SECRETS, transform=metadata_only, metadata_only=True),
            namespaces=Informer(kube, NAMESPACES, resync_period=0, on_failure=metrics.watch_failed),
            jobs=informer(JOBS, label_selector=EXECUTOR_SELECTOR),
            pods=informer(PODS, label_selector=EXECUTOR_SELECTOR),
            backupblueprints=Informer(
                kube,
                BACKUPBLUEPRINTS,
                resync_period=settings.resync_period,
                on_failure=metrics.watch_failed,
            ),
            claims=claims,
            backupbatches=self.backupbatches,
            restorebatches=self.restorebatches,
        )
        c = self.caches
        self.supervisor = Supervisor()
        self.workloads = {kind: informer(res) for kind, res in WATCHED_WORKLOADS.items()}
        #: What auto-backup reads annotations from (AppBinding joins when it is served).
        self.auto_targets: dict[str, Informer] = {
            **self.workloads,
            "PersistentVolumeClaim": claims,
        }
        self._add_indexes()
        self.engine = CronEngine(self._fire, missed_grace=settings.missed_schedule_grace)
        self.ctx = ControllerContext(
            kube=kube,
            caches=c,
            recorder=EventRecorder(kube, "stash-operator", self.identity),
            engine=self.engine,
            settings=settings,
            workloads=self.workloads,
            targets=self.auto_targets,
            session_metrics=SessionMetricsSink(
                settings.pushgateway_url or None, settings.pushgateway_timeout
            ),
            notifier=Notifier(secret_loader(kube, settings.namespace, settings.notifiers_secret))
            if settings.notifiers_secret
            else None,
        )
        self.stale = StaleInvokerWatch(self.ctx)
        self.controllers = self._wire()
        observer = metrics.ControllerObserver()
        for ctrl in self.controllers:
            ctrl.metrics = observer
        self.ready = asyncio.Event()
        # The Snapshot API serves the webhook's certificate (one store).
        store = cert_store(settings, kube)
        self.webhook_serving = OperatorWebhook(kube, settings, store)
        self.snapshot_api = OperatorSnapshotApi(kube, settings, store)
        self.metrics_port: int | None = None
        self._phase_of: dict[str, str] = {}
        c.backupsessions.add_handler(self._count_phases)
        c.backupconfigurations.add_handler(self._forget_metrics_of("BackupConfiguration"))
        c.restoresessions.add_handler(self._forget_metrics_of("RestoreSession"))
        self.backupbatches.add_handler(self._forget_metrics_of("BackupBatch"))

    def _add_indexes(self) -> None:
        """The cache indexes the mappers and readers look objects up by."""
        c = self.caches
        for inv in (
            c.backupconfigurations,
            c.restoresessions,
            self.backupbatches,
            self.restorebatches,
        ):
            inv.add_index("repository", repository_key)
            inv.add_index("target", target_workload_keys)
        c.backupsessions.add_index("invoker", invoker_key)
        c.repositories.add_index("secret", secret_key)
        c.backupconfigurations.add_index(AUTO_TARGET_INDEX, auto_target_keys)
        c.repositories.add_index(AUTO_TARGET_INDEX, auto_target_keys)
        c.jobs.add_index("owner", job_owner_key)
        c.pods.add_index("job", pod_job_key)
        for inf in self.auto_targets.values():
            inf.add_index(BLUEPRINT_INDEX, target_blueprints)

    def _for_objects(
        self, reconciler: ObjectReconciler[Any], cache: Informer, res: Resource, share: int = 1
    ) -> Controller:
        """A controller running an object reconciler on the objects `cache` holds (with
        `share` times the configured workers)."""
        adapter = as_reconciler(reconciler, cache, self.kube, res, parse=self.ctx.parse)
        return Controller(adapter, workers=share * self.settings.workers)

    def _wire(self) -> list[Controller]:
        c, w = self.caches, self.settings.workers
        bbs, rbs = self.backupbatches, self.restorebatches
        # Not wired (yet): with `self.ctx.forget_deleted()` here, chaos seed 427344462
        # left a killed Job's restic lock behind (session 6's note); the memo is bounded
        # by PARSED_KEEP meanwhile.
        repos = RepositoryReconciler(self.ctx, self.references)
        repo = self._for_objects(repos, c.repositories, REPOSITORIES)
        repo.watch(c.repositories)
        for inv in (c.backupconfigurations, c.restoresessions):
            repo.watch(inv, repository_key, when=spec_changed)
        repo.watch(c.secrets, by_index(c.repositories, "secret"))

        # Invokers: their own spec changes (their status writes need no second look:
        # resync covers drift), their targets, Repositories and Secrets.
        # A new BackupConfiguration waits on three requests in a row (finalizer, status,
        # Event): thousands created at once are bound by round trips, not CPU.
        bcs = BackupConfigurationReconciler(self.ctx)
        bc = self._for_objects(bcs, c.backupconfigurations, BACKUPCONFIGURATIONS, share=4)
        bb = self._for_objects(BackupBatchReconciler(self.ctx), bbs, BACKUPBATCHES)
        for ctrl, cache in ((bc, c.backupconfigurations), (bb, bbs)):
            ctrl.watch(cache, when=spec_changed)
            for kind, inf in self.workloads.items():
                ctrl.watch(inf, invokers_of_target(cache, kind), when=spec_changed)
            # Their conditions read a Repository's spec and metadata, never its status
            # (references change with every new invoker: thousands of needless passes).
            ctrl.watch(c.repositories, by_index(cache, "repository"), when=spec_changed)
            ctrl.watch(c.secrets, invokers_of_secret(c.repositories, cache))

        self.session_reconciler = BackupSessionReconciler(self.ctx)
        bs = self._for_objects(self.session_reconciler, c.backupsessions, BACKUPSESSIONS)
        bs.watch(c.backupsessions)
        bs.watch(
            c.backupconfigurations, sessions_of_invoker(c.backupsessions, "BackupConfiguration")
        )
        bs.watch(bbs, sessions_of_invoker(c.backupsessions, "BackupBatch"))
        bs.watch(c.jobs, sessions_of_job("BackupSession"))
        bs.watch(c.pods, sessions_of_pod("BackupSession", c.jobs))

        rs = self._for_objects(
            RestoreSessionReconciler(self.ctx), c.restoresessions, RESTORESESSIONS
        )
        rb = self._for_objects(RestoreBatchReconciler(self.ctx), rbs, RESTOREBATCHES)
        for ctrl, cache in ((rs, c.restoresessions), (rb, rbs)):
            ctrl.watch(cache)
            ctrl.watch(c.repositories, by_index(cache, "repository"))
        for ctrl, kind in ((rs, "RestoreSession"), (rb, "RestoreBatch")):
            ctrl.watch(c.jobs, sessions_of_job(kind))
            ctrl.watch(c.pods, sessions_of_pod(kind, c.jobs))

        wl = Controller(WorkloadReconciler(self.ctx), workers=w)
        for kind, inf in self.workloads.items():
            wl.watch(inf, own_kind_key(kind))
        for inv in (c.backupconfigurations, c.restoresessions, bbs, rbs):
            wl.watch(inv, target_workload_keys, when=spec_changed)
        # a usage policy that starts or stops allowing an invoker adds or removes its agent
        invokers = [c.backupconfigurations, c.restoresessions, bbs, rbs]
        wl.watch(c.repositories, workloads_of_repository(invokers), when=spec_changed)
        assert c.backupblueprints is not None
        wl.watch(c.backupblueprints, targets_of_blueprint(self.workloads))

        self.autobackup = AutoBackupReconciler(self.ctx, self.auto_targets)
        # Each object costs two applies and an Event, all I/O: twice the workers.
        ab = Controller(self.autobackup, workers=2 * w)
        for kind, inf in self.auto_targets.items():
            ab.watch(inf, own_kind_key(kind), when=spec_changed)
        ab.watch(c.backupblueprints, targets_of_blueprint(self.auto_targets))
        ab.watch(c.backupconfigurations, auto_target_keys, when=spec_changed)
        ab.watch(c.repositories, auto_target_keys, when=spec_changed)
        self._autobackup_controller = ab
        return [repo, bc, bb, bs, rs, rb, wl, ab]

    # ------------------------------------------------------------------ metrics
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
        kind, ns, name = ekey.split("/", 2)
        cache = self.backupbatches if kind == "BackupBatch" else self.caches.backupconfigurations
        invoker = cache.get(f"{ns}/{name}")
        if invoker is None or (invoker.get("spec") or {}).get("paused"):
            return
        # List items carry no kind: the session's invoker kind comes from the key.
        async with self._ticking:
            await create_backup_session(self.kube, {**invoker, "kind": kind}, when)
        metrics.TICK_LAG.observe((self.ctx.now() - when).total_seconds())

    @property
    def webhook(self) -> WebhookServer | None:
        """This replica's admission webhook while it serves."""
        return self.webhook_serving.server

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """Run until cancelled; clean shutdown on cancellation."""
        await self._add_appbindings()
        informers = [*self.caches.all(), *self.workloads.values()]
        for inf in informers:
            self.supervisor.spawn(f"informer {inf.resource.plural}", inf.run, progress=inf.progress)
        server = await self._serve_metrics()
        side = [self.webhook_serving.run()] if self.settings.serve_webhook else []
        side += [self.snapshot_api.run()] if self.settings.serve_snapshot_api else []
        side_tasks = [asyncio.create_task(coro) for coro in side]
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
            await self.ctx.recorder.close()
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await server.cleanup()

    async def _add_appbindings(self) -> None:
        """AppBindings become auto-backup targets when their API is served."""
        if not await appbindings_served(self.kube):
            return
        inf = Informer(
            self.kube,
            APPBINDINGS,
            namespace=self.settings.watch_namespace,
            resync_period=self.settings.resync_period,
            on_failure=metrics.watch_failed,
        )
        inf.add_index(BLUEPRINT_INDEX, target_blueprints)
        self.caches.appbindings = self.auto_targets["AppBinding"] = inf
        self.autobackup.add_target("AppBinding", inf)
        self._autobackup_controller.watch(inf, own_kind_key("AppBinding"), when=spec_changed)

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

    async def _lead(self) -> None:
        """Leader work: the cron engine and every controller (re-synced from the caches)."""
        log.info("%s leads", self.identity)
        self.session_reconciler.new_term()
        await install_builtins(self.ctx)
        self._ticking = asyncio.Semaphore(TICK_CREATES)
        self.engine.start()
        for ctrl in self.controllers:
            for key in self._initial_keys(ctrl):
                ctrl.queue.add(key)
        tasks = [
            asyncio.create_task(ctrl.run(), name=f"controller {ctrl.name}")
            for ctrl in self.controllers
        ]
        if self.ctx.notifier is not None:
            tasks.append(asyncio.create_task(self.stale.run(), name="stale invokers"))
        if self.settings.serve_webhook:
            keep = self.webhook_serving.keep_registered()
            tasks.append(asyncio.create_task(keep, name="webhook configurations"))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.engine.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.ctx.notifier is not None:
                await self.ctx.notifier.close()
            for ctrl in self.controllers:
                ctrl.reset()

    def _initial_keys(self, ctrl: Controller) -> list[str]:
        c = self.caches
        source: dict[str, Informer] = {
            "repository": c.repositories,
            "backupconfiguration": c.backupconfigurations,
            "backupsession": c.backupsessions,
            "restoresession": c.restoresessions,
            "backupbatch": self.backupbatches,
            "restorebatch": self.restorebatches,
        }
        if ctrl.name in ("workload", "autobackup"):
            targets = self.workloads if ctrl.name == "workload" else self.auto_targets
            return [
                workload_key(kind, o["metadata"]["namespace"], o["metadata"]["name"])
                for kind, inf in targets.items()
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
