"""Mutating- and ValidatingWebhookConfiguration: what is registered, and registering it.

What it is for: `configurations(settings, ca_bundle, ...)` builds both objects from one
table of routes; `render_yaml` prints them for `webhooks/` (and through it manifests/
and the chart); `register`, `missing`, `publish_ca_bundle` and `unregister` keep them in
a cluster.

The choices, explained once here and in docs/webhooks.md:

* failurePolicy — mutation `Ignore`: if the webhook is down a workload is admitted
  without the agent (the operator's workload reconciler repairs it later), never blocked.
  Validation `Fail`: a Stash object is only admitted after the rules ran; this touches
  Stash kinds only, and matchConditions skip metadata-only updates (finalizers, labels),
  so a stopped webhook can never keep an object from being deleted.
* matchPolicy `Equivalent`: a request through another version or group of the same
  resource is converted to the version registered (apps/v1, ...) and sent to us, so an
  older client or API alias cannot slip past; handlers only ever see one shape.
* reinvocationPolicy `Never`: injection is idempotent and does not depend on what later
  webhooks add; re-running after them would only undo their edits of our container
  (e.g. a policy engine adding resources) without being re-invoked ourselves.
* sideEffects `None` (we only read), timeoutSeconds short (5 s; handlers answer in a
  budget below it), admissionReviewVersions `[v1]`.
* namespaceSelector skips kube-system, the operator's namespace and namespaces labelled
  `stash.appscode.com/webhook: disabled` (a namespace's labels are the cluster admin's);
  the mutating objectSelector skips objects with that label. Validation has no
  objectSelector: an author may not opt their object out of the rules.

Not for: TLS and certificates (`certs`, `server`) or the decisions (`app`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import yaml

from stash.api import KINDS
from stash.contract.authority import ANN_AUTHOR
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.settings import OPT_OUT_LABEL, OperatorSettings
from stash.webhook.app import AUTHORED, mutate_path, validate_path

__all__ = [
    "MUTATING",
    "VALIDATING",
    "configurations",
    "missing",
    "publish_ca_bundle",
    "register",
    "render_yaml",
    "unregister",
]

#: The server-side-apply field manager of the webhook configurations.
FIELD_MANAGER = "stash-webhook"

MUTATING = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
VALIDATING = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)


def _author_of(obj: str) -> str:
    return (
        f"(has({obj}.metadata.annotations) && '{ANN_AUTHOR}' in {obj}.metadata.annotations "
        f"? {obj}.metadata.annotations['{ANN_AUTHOR}'] : '')"
    )


# Metadata-only updates (finalizers, labels, annotations) never reach validation, except
# one that changes the author record (stash.contract.authority), which must be judged.
SPEC_CHANGED = (
    "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec) "
    "|| object.spec != oldObject.spec || "
    f"{_author_of('object')} != {_author_of('oldObject')}"
)


@dataclass(frozen=True)
class _Route:
    name: str  # webhook name prefix (singular)
    group: str
    versions: tuple[str, ...]
    plural: str
    operations: tuple[str, ...]
    scope: str = "Namespaced"


_WORKLOADS = (
    _Route("deployment", "apps", ("v1",), "deployments", ("CREATE", "UPDATE")),
    _Route("statefulset", "apps", ("v1",), "statefulsets", ("CREATE", "UPDATE")),
    _Route("daemonset", "apps", ("v1",), "daemonsets", ("CREATE", "UPDATE")),
    _Route("replicaset", "apps", ("v1",), "replicasets", ("CREATE", "UPDATE")),
    _Route("replicationcontroller", "", ("v1",), "replicationcontrollers", ("CREATE", "UPDATE")),
    _Route(
        "deploymentconfig", "apps.openshift.io", ("v1",), "deploymentconfigs", ("CREATE", "UPDATE")
    ),
)
_POD = _Route("pod", "", ("v1",), "pods", ("CREATE",))
_SESSIONS = (
    _Route(
        "restoresession",
        "stash.appscode.com",
        ("v1beta1",),
        "restoresessions",
        ("CREATE", "UPDATE"),
    ),
    _Route("backupsession", "stash.appscode.com", ("v1beta1",), "backupsessions", ("CREATE",)),
    # the author record (stash.contract.authority) of the other invokers
    *(
        _Route(info.singular, info.group, (info.version,), info.plural, ("CREATE", "UPDATE"))
        for info in KINDS.values()
        if info.plural in AUTHORED
    ),
)
_VALIDATED = tuple(
    _Route(
        info.singular, info.group, (info.version,), info.plural, ("CREATE", "UPDATE"), info.scope
    )
    for info in KINDS.values()
)


def _namespace_selector(settings: OperatorSettings) -> JSON:
    expressions: list[JSON] = [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": sorted({"kube-system", settings.namespace}),
        },
        {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["disabled"]},
    ]
    if settings.watch_namespace:
        # An operator that watches one namespace answers for that namespace only.
        expressions.append(
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": [settings.watch_namespace],
            }
        )
    return {"matchExpressions": expressions}


def _client_config(
    settings: OperatorSettings, path: str, ca_bundle: bytes, url_base: str | None
) -> JSON:
    cfg: JSON
    if url_base:
        cfg = {"url": f"{url_base}{path}"}
    else:
        cfg = {
            "service": {
                "namespace": settings.namespace,
                "name": settings.service_name,
                "path": path,
                "port": settings.webhook_service_port,
            }
        }
    if ca_bundle:
        cfg["caBundle"] = base64.b64encode(ca_bundle).decode()
    return cfg


def _webhook(
    route: _Route,
    path: str,
    settings: OperatorSettings,
    ca_bundle: bytes,
    url_base: str | None,
    namespace_selector: JSON | None,
    *,
    mutating: bool,
) -> JSON:
    hook: JSON = {
        "name": f"{route.name}.admission.stash.appscode.com",
        "admissionReviewVersions": ["v1"],
        "clientConfig": _client_config(settings, path, ca_bundle, url_base),
        "rules": [
            {
                "apiGroups": [route.group],
                "apiVersions": list(route.versions),
                "resources": [route.plural],
                "operations": list(route.operations),
                "scope": route.scope,
            }
        ],
        "failurePolicy": "Ignore" if mutating else "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": settings.webhook_timeout_seconds,
        "namespaceSelector": namespace_selector or _namespace_selector(settings),
    }
    if mutating:
        # An object's own label opts it out of injection only; validation holds for every
        # object (its author could otherwise opt out of the rules that protect others).
        hook["objectSelector"] = {
            "matchExpressions": [
                {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["disabled"]}
            ]
        }
        hook["reinvocationPolicy"] = "Never"
    else:
        hook["matchConditions"] = [{"name": "spec-changed", "expression": SPEC_CHANGED}]
    return hook


def _meta(settings: OperatorSettings) -> JSON:
    return {
        "name": settings.webhook_config_name,
        "labels": {"app.kubernetes.io/name": "stash", "app.kubernetes.io/component": "webhook"},
    }


def configurations(
    settings: OperatorSettings,
    ca_bundle: bytes = b"",
    *,
    url_base: str | None = None,
    namespace_selector: JSON | None = None,
) -> tuple[JSON | None, JSON | None]:
    """(MutatingWebhookConfiguration, ValidatingWebhookConfiguration); None when disabled.

    `url_base` (`https://host:port`) registers URLs instead of the operator Service;
    `namespace_selector` replaces the default one (tests use it to confine a webhook to
    their own namespace).
    """
    mutating: JSON | None = None
    validating: JSON | None = None
    if settings.enable_mutating_webhook:
        routes = (_POD,) if settings.injection_mode == "pod" else _WORKLOADS
        hooks = [
            _webhook(
                r,
                mutate_path(r.plural),
                settings,
                ca_bundle,
                url_base,
                namespace_selector,
                mutating=True,
            )
            for r in (*routes, *_SESSIONS)
        ]
        mutating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": _meta(settings),
            "webhooks": hooks,
        }
    if settings.enable_validating_webhook:
        hooks = [
            _webhook(
                r,
                validate_path(r.plural),
                settings,
                ca_bundle,
                url_base,
                namespace_selector,
                mutating=False,
            )
            for r in _VALIDATED
        ]
        validating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta(settings),
            "webhooks": hooks,
        }
    return mutating, validating


_HEADER = """\
# Generated by `stash webhook --render-to webhooks/` from stash/webhook/registration.py;
# do not edit by hand (a unit test compares this file with the generator).
# caBundle is filled in by the operator, which runs its own CA (see docs/webhooks.md).
# failurePolicy: mutation Ignore (never block a workload; the operator repairs
# injection), validation Fail (Stash kinds only; metadata-only updates skipped by
# matchConditions, so deletion is never blocked). matchPolicy Equivalent (other versions
# are converted to the registered one and still reach us). reinvocationPolicy Never
# (injection is idempotent; re-running would undo later webhooks' edits of our container).
"""


def render_yaml(config: JSON) -> str:
    """One configuration as a commented YAML document."""
    return _HEADER + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


async def register(
    kube: Kube, mutating: JSON | None, validating: JSON | None, settings: OperatorSettings
) -> None:
    """Apply both configurations (ours: forced); delete the ones that are disabled."""
    for res, obj in ((MUTATING, mutating), (VALIDATING, validating)):
        if obj is None:
            await kube.delete(res, settings.webhook_config_name)
        else:
            await kube.apply(res, obj, field_manager=FIELD_MANAGER, force=True)


async def missing(kube: Kube, mutating: JSON | None, validating: JSON | None) -> list[str]:
    """The kinds of the configurations given (not None) that the cluster does not have."""
    gone = []
    for res, obj in ((MUTATING, mutating), (VALIDATING, validating)):
        if obj is None:
            continue
        try:
            await kube.get(res, obj["metadata"]["name"])
        except NotFound:
            gone.append(res.kind)
    return gone


async def publish_ca_bundle(kube: Kube, settings: OperatorSettings, ca_bundle: bytes) -> None:
    """Set every webhook's caBundle in both configurations (after a CA rotation)."""
    encoded = base64.b64encode(ca_bundle).decode()
    for res in (MUTATING, VALIDATING):
        try:
            current = await kube.get(res, settings.webhook_config_name)
        except NotFound:
            continue
        hooks = current.get("webhooks") or []
        if all((h.get("clientConfig") or {}).get("caBundle") == encoded for h in hooks):
            continue
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = encoded
        await kube.replace(res, current)


async def unregister(kube: Kube, settings: OperatorSettings) -> None:
    """Delete both configurations (a local run ending)."""
    for res in (MUTATING, VALIDATING):
        await kube.delete(res, settings.webhook_config_name)
