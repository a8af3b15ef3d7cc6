"""`stash operator`: run the controllers, the cron engine, the webhook, the Snapshot API
and /metrics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stash.cli.process import add_log_flags, run_until_signalled, setup_logging

if TYPE_CHECKING:  # imported when used: pydantic-settings costs the agent's start-up
    from stash.settings import OperatorSettings


def register(sub: Any) -> None:
    """Add the `operator` sub-command."""
    p: argparse.ArgumentParser = sub.add_parser("operator", help="run the operator")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster config)")
    p.add_argument("--namespace", dest="watch_namespace", help="watch one namespace only")
    p.add_argument("--operator-namespace", dest="namespace", help="namespace of the Lease")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--metrics-port", type=int)
    p.add_argument(
        "--webhook",
        dest="serve_webhook",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the admission webhook in this process (default: yes)",
    )
    p.add_argument(
        "--webhook-host", help="bind address; a specific one registers url clientConfigs"
    )
    p.add_argument("--webhook-port", type=int)
    p.add_argument(
        "--webhook-cert-dir",
        help="serve tls.crt/tls.key from this directory (cert-manager) instead of our own CA",
    )
    p.add_argument(
        "--webhook-manage-configurations",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create/update the webhook configurations (no: the chart owns them; only their "
        "caBundle is written)",
    )
    p.add_argument(
        "--snapshot-api",
        dest="serve_snapshot_api",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve `kubectl get snapshots` (repositories.stash.appscode.com) in this "
        "process (default: yes)",
    )
    p.add_argument("--snapshot-api-port", type=int)
    p.add_argument(
        "--snapshot-api-manage-apiservice",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create/update the APIService (no: the chart owns it; only its caBundle is written)",
    )
    p.add_argument("--image", help="agent image name")
    p.add_argument("--default-timezone", help="zone of schedules without CRON_TZ=")
    p.add_argument("--missed-schedule-grace", type=float, help="seconds; 0 skips missed ticks")
    add_log_flags(p)
    p.set_defaults(handler=run)


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    """Environment (STASH_*) settings overridden by the flags that were given."""
    from stash.settings import OperatorSettings

    names = (
        "watch_namespace",
        "namespace",
        "leader_elect",
        "metrics_port",
        "serve_webhook",
        "webhook_host",
        "webhook_port",
        "webhook_cert_dir",
        "webhook_manage_configurations",
        "serve_snapshot_api",
        "snapshot_api_port",
        "snapshot_api_manage_apiservice",
        "image",
        "default_timezone",
        "missed_schedule_grace",
    )
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return OperatorSettings(**given)


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    from stash.kube.client import Kube
    from stash.operator import Operator

    setup_logging(args)
    settings = settings_from(args)

    async def main() -> None:
        kube = await Kube.connect(args.kubeconfig)
        try:
            await Operator(kube, settings).run()
        finally:
            await kube.close()

    return run_until_signalled(main)
