"""Operator settings: what the operator process and its webhook are configured with.

What it is for: one `OperatorSettings` object (pydantic-settings; environment variables
prefixed `STASH_`, overridden by command-line flags) that the webhook, the injector and
the controllers read: the agent image, image pull secrets, the Pushgateway, where the
webhook listens and how it is reached, which webhooks are enabled, the operator's own
namespace and Service, and how injection is done (`workload` or `pod`).

Not for: per-object behaviour (that lives in the invokers) or the Kubernetes client
configuration (kubeconfig / in-cluster, see `stash.kube.client`).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stash import __version__

__all__ = ["InjectionMode", "OperatorSettings"]

InjectionMode = Literal["workload", "pod"]
"""Where the agent is injected: into workload pod templates, or into Pods at admission."""

OPT_OUT_LABEL = "stash.appscode.com/webhook"
"""Label on a namespace or object that turns the webhooks off for it (value `disabled`)."""

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class OperatorSettings(BaseSettings):
    """Settings of `stash operator` and `stash webhook` (env `STASH_<FIELD>`, upper case)."""

    model_config = SettingsConfigDict(env_prefix="STASH_", extra="ignore", frozen=True)

    # --- the agent image (stash-api.md §12: --docker-registry/--image/--image-tag)
    docker_registry: str = "stash"
    image: str = "stash"
    image_tag: str = __version__
    image_pull_secrets: list[str] = Field(default_factory=list)
    """Secret names appended to injected pods' imagePullSecrets (they must exist in the
    workload's namespace; the operator copies them there)."""

    # --- metrics
    pushgateway_url: str | None = None
    """The Pushgateway the operator and the agents push session metrics to. None: no
    push; the operator exports the same families on its /metrics (docs/metrics.md)."""
    pushgateway_timeout: float = Field(default=10.0, gt=0)
    """Seconds one push may take, connecting included."""

    # --- notifications (docs/hooks.md)
    notifiers_secret: str | None = None
    """A Secret (in `namespace`) whose `notifiers.yaml` lists the operator's notifiers
    (Slack, webhook, email). None: no notifications."""
    stale_check_interval: float = Field(default=60.0, gt=0)
    """Seconds between the leader's looks for stale invokers (no successful backup within
    the schedule's period plus the configured `staleAfter`)."""

    # --- the operator itself
    namespace: str = "stash"
    """The namespace the operator runs in (never mutated by its own webhook)."""
    service_name: str = "stash-operator"
    """The operator's Service (its DNS name is in the webhook certificate)."""
    cluster_domain: str = "cluster.local"

    # --- the admission webhook
    serve_webhook: bool = True
    """Serve the admission webhook in the operator process (every replica serves it;
    only the leader reconciles)."""
    webhook_manage_configurations: bool = True
    """Create and update the Mutating/ValidatingWebhookConfigurations. False when the Helm
    chart owns them: the operator then only writes their caBundle."""
    webhook_cert_dir: str | None = None
    """A directory holding `tls.crt` and `tls.key` (e.g. a cert-manager Secret mounted
    there): served as they are and re-read when they change; the operator issues no
    certificate and writes no caBundle (cert-manager or the chart does)."""
    webhook_host: str = "0.0.0.0"
    """Bind address. A specific address (e.g. 127.0.0.1) also makes the registrations
    point at `https://<host>:<port>` instead of the Service: for running out of cluster."""
    webhook_port: int = Field(default=8443, ge=0, le=65535)
    webhook_service_port: int = 443
    enable_mutating_webhook: bool = True
    enable_validating_webhook: bool = True
    webhook_config_name: str = "admission.stash.appscode.com"
    """Name of both the Mutating- and the ValidatingWebhookConfiguration."""
    webhook_timeout_seconds: int = Field(default=5, ge=1, le=30)
    webhook_recheck_interval: float = Field(default=30.0, gt=0)
    """Seconds between the leader's looks for a deleted webhook configuration, which
    it registers again."""
    webhook_tls_secret: str = "stash-webhook-tls"
    """Secret (in `namespace`) that stores the webhook CA and serving certificate."""
    injection_mode: InjectionMode = "workload"

    # --- the Snapshot API (repositories.stash.appscode.com/v1alpha1, stash-api.md §11)
    serve_snapshot_api: bool = True
    """Serve `kubectl get|delete snapshots` as an aggregated API in the operator process
    (every replica serves it, with the webhook's serving certificate)."""
    snapshot_api_port: int = Field(default=8444, ge=0, le=65535)
    """HTTPS port of the Snapshot API (0: pick a free one)."""
    snapshot_api_service_port: int = Field(default=8444, ge=1, le=65535)
    """Port of the operator Service that the APIService names."""
    snapshot_api_manage_apiservice: bool = True
    """Create and update the APIService v1alpha1.repositories.stash.appscode.com. False
    when the Helm chart owns it: the operator then only writes its caBundle."""
    snapshot_api_endpoint: str | None = None
    """An address of this host the apiserver can reach (not loopback). Set for a run
    outside the cluster: the operator then publishes its own Service (without selector)
    and EndpointSlice leading there, and removes them and the APIService on exit."""
    restic: str = "restic"
    """The restic binary the operator runs (the Snapshot API; env STASH_RESTIC)."""

    manage_agent_roles: bool = True
    """Install the agent ClusterRoles at each leader start. False when the Helm chart
    owns them (the operator then has no right to change them)."""

    # --- controllers, cron engine and leader election (stash.operator)
    watch_namespace: str | None = None
    """Watch one namespace only (None: the whole cluster)."""
    leader_elect: bool = True
    lease_name: str = "stash-operator"
    """The coordination.k8s.io Lease (in `namespace`) replicas compete for."""
    lease_duration: float = Field(default=15.0, gt=0)
    renew_deadline: float = Field(default=10.0, gt=0)
    retry_period: float = Field(default=2.0, gt=0)
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz (0: pick a free one)."""
    metrics_host: str = "0.0.0.0"
    default_timezone: str = "UTC"
    """Time zone of schedules without a CRON_TZ= prefix."""
    missed_schedule_grace: float = Field(default=0.0, ge=0)
    """Seconds: a tick missed while no leader ran is run once if younger than this
    (0: missed ticks are skipped)."""
    executor_heartbeat_timeout: float = Field(default=60.0, gt=0)
    """Seconds: a host whose backup executor's heartbeat Lease the operator has seen
    unchanged for this long is marked Failed (the agent died mid-backup), so the
    session ends."""
    volume_snapshot_error_grace: float = Field(default=60.0, ge=0)
    """Seconds: a VolumeSnapshot younger than this whose `status.error` is set is still
    waited for (the snapshot-controller records errors it retries there too); older, the
    error fails its host."""
    executor_start_timeout: float = Field(default=600.0, gt=0)
    """Seconds: a backup or restore Job whose pod cannot start this long (it cannot be
    created, scheduled, or its image pulled) fails its host with the reason; a Job that
    failed fails its host at once."""
    wipe_out_wait: float = Field(default=120.0, gt=0)
    """Seconds after a wipe-out Repository's deletion began that the wipe-out waits for
    the Repository's other users to go; then the data is kept."""
    wipe_out_recheck: float = Field(default=5.0, gt=0)
    """Seconds between looks for those users while waiting."""
    wipe_out_timeout: float = Field(default=300.0, gt=0)
    """Seconds a wipe-out may take; what is left after that is kept."""
    integrity_check_interval: float = Field(default=86400.0, ge=0)
    """Seconds between two `restic check` runs of one Repository (the post-backup action
    `VerifyRepositoryIntegrity`). Once the Repository records a backup, a session runs
    the check when none ran for this long or its integrity is not known to be good; a
    session always runs it after a failed one; the other sessions record the last
    check's result (docs/compatibility.md). 0: every session runs it, as Stash does."""
    default_session_timeout: float = Field(default=86400.0, gt=0)
    """Seconds: the deadline of a BackupSession or RestoreSession whose invoker sets no
    `spec.timeOut`, so every session reaches a final phase."""
    workers: int = Field(default=4, ge=1)
    """Concurrent reconciles per controller."""
    resync_period: float = Field(default=300.0, ge=0)

    @property
    def image_ref(self) -> str:
        """The agent image, `<registry>/<image>:<tag>` (no registry part when empty)."""
        name = f"{self.docker_registry}/{self.image}" if self.docker_registry else self.image
        return f"{name}:{self.image_tag}"

    @property
    def webhook_url_base(self) -> str | None:
        """`https://<host>:<port>` when the webhook is reached directly (out of cluster);
        None when the apiserver reaches it through the operator Service."""
        if self.webhook_host in _WILDCARD_HOSTS:
            return None
        host = self.webhook_host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"https://{host}:{self.webhook_port}"

    def service_dns_names(self) -> list[str]:
        """Every name the operator Service is dialled by, for the serving certificate."""
        svc, ns = self.service_name, self.namespace
        return [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.{self.cluster_domain}"]
