"""The operator's Snapshot API: `kubectl get|delete snapshots` served next to the webhook.

What it is for: `OperatorSnapshotApi.run()`, which `stash operator` runs on every replica
when `serve_snapshot_api` is on. It serves `stash.snapshotapi` on `snapshot_api_port`
with the webhook's serving certificate (the same certificate store: the Secret the
replicas share, memory for a local run, or the mounted `webhook_cert_dir`), so the
APIService's caBundle is the webhook configurations' one; it looks at the certificate as
often as the webhook does and serves a renewal (publishing a new CA first). What it
registers follows the webhook's rules: nothing with a mounted certificate (cert-manager
injects the caBundle), the whole APIService when `snapshot_api_manage_apiservice`, else
only its caBundle (the chart owns it). A start that fails (the apiserver publishes no
front-proxy CA, RBAC missing) is logged and retried with backoff; the operator's other
work goes on.

With `snapshot_api_endpoint` (a run outside the cluster, e.g. tests and `stash dev`) it
also publishes a Service without selector and an EndpointSlice leading to that address,
so the aggregator (`--enable-aggregator-routing`) reaches this process, and removes
them and the APIService on exit.

Not for: the API's answers and TLS (`stash.snapshotapi`), the certificate's issuing and
rotation rules (`stash.webhook.certs`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from stash.kube.client import JSON, Conflict, Kube, KubeError, Resource
from stash.settings import OperatorSettings
from stash.snapshotapi.server import Registration, ServingCert, SnapshotApiServer
from stash.webhook.certs import CertStore
from stash.webhook.server import serving_bundle

__all__ = ["OperatorSnapshotApi", "registration_of"]

log = logging.getLogger(__name__)

SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
PORT_NAME = "https-snapshots"


def registration_of(settings: OperatorSettings) -> Registration:
    """What the operator writes into the APIService (module docstring)."""
    if settings.webhook_cert_dir:
        return "none"
    return "apiservice" if settings.snapshot_api_manage_apiservice else "ca-bundle"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OperatorSnapshotApi:
    """The Snapshot API of one operator replica; `server` is set while it serves."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        store: CertStore,
        *,
        check_interval: float = 3600.0,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store
        # A mounted certificate is renewed by someone else (cert-manager): look often.
        self.check_interval = (
            min(check_interval, 60.0) if settings.webhook_cert_dir else check_interval
        )
        self.server: SnapshotApiServer | None = None

    async def _certificate(self) -> ServingCert:
        bundle = await serving_bundle(self.settings, self.store, _now())
        return ServingCert(bundle.cert, bundle.key, bundle.ca_bundle)

    async def run(self) -> None:
        """Serve until cancelled (retrying a failed start), then clean up."""
        server = await self._start()
        self.server = server
        try:
            while True:
                await asyncio.sleep(self.check_interval)
                try:
                    if await server.reload(await self._certificate()):
                        log.info("snapshot API certificate renewed")
                except (KubeError, OSError, RuntimeError) as exc:
                    log.error("snapshot API certificate check failed: %s; retrying later", exc)
        finally:
            self.server = None
            await asyncio.shield(self._stop(server))

    async def _start(self) -> SnapshotApiServer:
        delay = 2.0
        while True:
            try:
                return await self._try_start()
            except (KubeError, OSError, RuntimeError) as exc:
                log.error("the snapshot API did not start: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _try_start(self) -> SnapshotApiServer:
        s = self.settings
        server = SnapshotApiServer(
            self.kube,
            namespace=s.namespace,
            service=s.service_name,
            service_port=s.snapshot_api_service_port,
            host=s.snapshot_api_endpoint or "0.0.0.0",
            port=s.snapshot_api_port,
            restic_binary=s.restic,
            certificate=await self._certificate(),
            registration=registration_of(s),
        )
        try:
            await server.serve()
            if s.snapshot_api_endpoint:  # the way there first, so the APIService works at once
                await self._publish_endpoint(s.snapshot_api_endpoint, server.port)
            await server.register()
        except BaseException:
            await asyncio.shield(server.stop(unregister=s.snapshot_api_endpoint is not None))
            raise
        return server

    async def _publish_endpoint(self, address: str, port: int) -> None:
        """A Service without selector and an EndpointSlice: the aggregator's way here."""
        s = self.settings
        ports = [{"name": PORT_NAME, "port": s.snapshot_api_service_port, "protocol": "TCP"}]
        service: JSON = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": s.service_name, "labels": _MANAGED},
            "spec": {"ports": [{**ports[0], "targetPort": port}]},
        }
        try:
            await self.kube.create(SERVICES, service, s.namespace)
        except Conflict:
            live = await self.kube.get(SERVICES, s.service_name, s.namespace)
            live["spec"]["ports"] = service["spec"]["ports"]
            await self.kube.replace(SERVICES, live)
        endpoints: JSON = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": _slice_name(s),
                "labels": {
                    **_MANAGED,
                    "kubernetes.io/service-name": s.service_name,
                    "endpointslice.kubernetes.io/managed-by": "stash.appscode.com",
                },
            },
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }
        await self.kube.delete(ENDPOINTSLICES, _slice_name(s), s.namespace)
        await self.kube.create(ENDPOINTSLICES, endpoints, s.namespace)

    async def _stop(self, server: SnapshotApiServer) -> None:
        """A local run removes what it registered; in the cluster the other replicas
        (and the chart) keep the APIService."""
        s = self.settings
        local = s.snapshot_api_endpoint is not None
        try:
            await server.stop(unregister=local)
            if local:
                await self.kube.delete(ENDPOINTSLICES, _slice_name(s), s.namespace)
                await self.kube.delete(SERVICES, s.service_name, s.namespace)
        except KubeError as exc:
            log.warning("removing the snapshot API's registration failed: %s", exc)


_MANAGED = {"app.kubernetes.io/managed-by": "stash"}


def _slice_name(settings: OperatorSettings) -> str:
    return f"{settings.service_name}-snapshot-api"
