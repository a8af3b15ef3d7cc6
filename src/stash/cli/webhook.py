"""`stash webhook`: run the admission webhook alone, or print its registrations.

`stash webhook --kubeconfig K --webhook-host 127.0.0.1 --webhook-port N` serves HTTPS on
that address with its own CA and registers Mutating/ValidatingWebhookConfigurations
whose URLs point at it (removed again on exit). In a cluster (no --kubeconfig, the
default host) it registers the operator Service instead and keeps its certificate in a
Secret. `--render` / `--render-to DIR` print or write the registrations (what
`webhooks/` holds) without touching a cluster.

Not for: the webhook itself (`stash.webhook`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stash.cli.process import add_log_flags, run_until_signalled, setup_logging

if TYPE_CHECKING:  # imported when used: pydantic-settings costs the agent's start-up
    from stash.settings import OperatorSettings

_FLAGS = {
    # flag -> OperatorSettings field
    "namespace": "namespace",
    "service_name": "service_name",
    "webhook_host": "webhook_host",
    "webhook_port": "webhook_port",
    "config_name": "webhook_config_name",
    "injection_mode": "injection_mode",
    "docker_registry": "docker_registry",
    "image": "image",
    "image_tag": "image_tag",
    "image_pull_secrets": "image_pull_secrets",
    "pushgateway_url": "pushgateway_url",
}


def register(sub: Any) -> None:
    """Add the `webhook` sub-command to the `stash` parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "webhook", help="run the admission webhook alone (or print its registrations)"
    )
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster)")
    p.add_argument("--namespace", help="the operator's namespace (env STASH_NAMESPACE)")
    p.add_argument("--service-name", help="the operator Service (env STASH_SERVICE_NAME)")
    p.add_argument(
        "--webhook-host",
        help="bind address; a specific one (e.g. 127.0.0.1) registers https://HOST:PORT URLs",
    )
    p.add_argument("--webhook-port", type=int, help="port (0 picks a free one)")
    p.add_argument("--config-name", help="name of both webhook configurations")
    p.add_argument("--injection-mode", choices=["workload", "pod"])
    p.add_argument("--docker-registry", help="agent image registry")
    p.add_argument("--image", help="agent image name")
    p.add_argument("--image-tag", help="agent image tag")
    p.add_argument(
        "--image-pull-secret",
        dest="image_pull_secrets",
        action="append",
        help="image pull secret for injected pods (repeatable)",
    )
    p.add_argument("--pushgateway-url")
    p.add_argument("--disable-mutating-webhook", action="store_true")
    p.add_argument("--disable-validating-webhook", action="store_true")
    add_log_flags(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--render", action="store_true", help="print the registrations and exit")
    out.add_argument("--render-to", type=Path, metavar="DIR", help="write them into DIR")
    p.set_defaults(handler=run)


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    """OperatorSettings from the environment, overridden by the flags that were given."""
    from stash.settings import OperatorSettings

    overrides: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in _FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.disable_mutating_webhook:
        overrides["enable_mutating_webhook"] = False
    if args.disable_validating_webhook:
        overrides["enable_validating_webhook"] = False
    return OperatorSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, or render the registrations."""
    from pydantic import ValidationError

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(
            f"stash webhook: invalid setting: {exc.errors(include_url=False)[0]['msg']}",
            file=sys.stderr,
        )
        return 2
    if args.render or args.render_to:
        return _render(settings, args.render_to)
    setup_logging(args)
    return run_until_signalled(lambda: _serve(settings, args.kubeconfig))


def _render(settings: OperatorSettings, out_dir: Path | None) -> int:
    from stash.webhook.registration import configurations, render_yaml

    mutating, validating = configurations(settings)
    docs = {"mutating.yaml": mutating, "validating.yaml": validating}
    if out_dir is None:
        sys.stdout.write("---\n".join(render_yaml(d) for d in docs.values() if d is not None))
        return 0
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, doc in docs.items():
            if doc is not None:
                (out_dir / name).write_text(render_yaml(doc), encoding="utf-8")
                print(out_dir / name)
    except OSError as exc:
        print(f"stash webhook: cannot write to {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: OperatorSettings, kubeconfig: Path | None) -> None:
    from stash.kube.client import Kube
    from stash.webhook.server import serve_webhook

    kube = await Kube.connect(kubeconfig)
    try:
        await serve_webhook(settings, kube)
    finally:
        await kube.close()
