"""`stash operator`: run the controllers, the cron engine, the webhook, the Snapshot API
and /metrics.

An operator that cannot start says why in one log line and exits 1 (the pod restarts
with back-off, as any controller's): a kubeconfig that does not load, an apiserver that
does not answer or refuses its credentials, a port it cannot bind. No traceback: those
are a platform team's configuration to fix, not a bug.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stash.cli.process import add_log_flags, run_until_signalled, setup_logging

if TYPE_CHECKING:  # imported when used: pydantic-settings costs the agent's start-up
    from stash.settings import OperatorSettings

log = logging.getLogger("stash.operator")


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
    import aiohttp

    from stash.kube.client import Kube, KubeError
    from stash.operator import Operator

    setup_logging(args)
    settings = settings_from(args)

    async def main() -> int:
        where = str(args.kubeconfig) if args.kubeconfig else "the in-cluster configuration"
        try:
            kube = await Kube.connect(args.kubeconfig)
        except Exception as exc:  # any way a configuration fails to load: say which
            log.error("cannot load %s: %s", where, _said(exc))
            return 1
        try:
            await Operator(kube, settings).run()
        except (aiohttp.ClientError, KubeError) as exc:
            log.error(
                "cannot start: talking to the apiserver at %s failed: %s (check %s: "
                "its server address and credentials, and the operator's RBAC)",
                kube.host,
                _said(exc),
                where,
            )
            return 1
        except OSError as exc:
            log.error("the operator cannot start: %s", _said(exc))
            return 1
        finally:
            await kube.close()
        return 0

    return run_until_signalled(main)


def _said(exc: BaseException) -> str:
    """An exception as one line: its type when its text alone would not say much."""
    text = str(exc).strip() or repr(exc)
    return text if isinstance(exc, OSError) else f"{type(exc).__name__}: {text}"
