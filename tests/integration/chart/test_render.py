"""`helm lint` and `helm template` of charts/stash with the pinned helm: what gets
installed, that it matches the code it is generated from, that the operator is
configured as the values say, least privilege and Pod Security `restricted`."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

import pytest

from stash.cli import operator as operator_cli
from stash.cli.main import build_parser
from stash.contract.rbac import agent_cluster_roles
from stash.notifications import NotificationConfig
from stash.settings import OperatorSettings
from stash.snapshotapi.server import NAME, apiservice
from stash.webhook.registration import configurations
from tests.support.chart_tools import CHART, ROOT, Rendered, helm, render
from tests.support.pod_security import restricted_violations

JSON = dict[str, Any]
MONITORING = "monitoring.coreos.com/v1"
RELEASE_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}


@pytest.fixture(autouse=True)
def _helm(helm_bin: str) -> None:
    """Every test here needs helm."""


def _container(r: Rendered) -> JSON:
    deploy = r.one("Deployment")
    containers: list[JSON] = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(r: Rendered) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(r).get("env") or []}


def test_helm_lint_strict_passes() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    done = helm("lint", "--strict", str(CHART), "--set", "monitoring.prometheusRule.enabled=true")
    assert done.returncode == 0, done.stdout + done.stderr


def test_defaults_install_the_operator_its_rbac_and_webhooks() -> None:
    r = render()
    assert r.kinds() == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "APIService",
    }
    deploy = r.one("Deployment", "stash-operator")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert (
        anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (deploy["spec"]["selector"]["matchLabels"])
    )
    c = _container(r)
    assert "--leader-elect" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


def test_one_replica_gets_no_disruption_budget() -> None:
    assert "PodDisruptionBudget" not in render("replicaCount=1").kinds()


def test_an_optional_network_policy_limits_the_webhook_to_the_apiserver(tmp_path: Any) -> None:
    assert "NetworkPolicy" not in render().kinds()  # off by default
    values = tmp_path / "np.yaml"
    values.write_text(
        "networkPolicy:\n"
        "  enabled: true\n"
        "  webhookFrom: [{ipBlock: {cidr: 10.0.0.0/24}}]\n"
        "  metricsFrom: [{namespaceSelector: {matchLabels: {team: monitoring}}}]\n"
    )
    r = render(values_files=[values])
    policy = r.one("NetworkPolicy", "stash-operator")["spec"]
    assert (
        policy["podSelector"]["matchLabels"]
        == (r.one("Deployment")["spec"]["selector"]["matchLabels"])
    )
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {port["port"]: rule for rule in policy["ingress"] for port in rule["ports"]}
    assert set(by_port) == {"webhook", "snapshot-api", "metrics"}  # the container ports' names
    assert by_port["snapshot-api"] is by_port["webhook"]  # the aggregator is the apiserver
    assert by_port["webhook"]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    assert by_port["metrics"]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "team": "monitoring"
    }
    # enabled without webhookFrom would let every source in: refused with the reason
    done = helm("template", "stash", str(CHART), "--set", "networkPolicy.enabled=true")
    assert done.returncode != 0 and "networkPolicy.webhookFrom must list" in done.stderr


def test_service_reaches_the_webhook_and_metrics_ports() -> None:
    r = render("webhook.port=9443", "metrics.port=9090")
    svc = r.one("Service", "stash-operator")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert svc["spec"]["selector"] == r.one("Deployment")["spec"]["selector"]["matchLabels"]
    container_ports = {p["name"]: p["containerPort"] for p in _container(r)["ports"]}
    assert container_ports == {"webhook": 9443, "metrics": 9090, "snapshot-api": 8444}
    assert ports["https-webhook"]["targetPort"] == "webhook"
    assert ports["metrics"] == {
        "name": "metrics",
        "port": 9090,
        "targetPort": "metrics",
        "protocol": "TCP",
    }
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in r.one(kind)["webhooks"]:
            service = hook["clientConfig"]["service"]
            assert (service["name"], service["namespace"]) == ("stash-operator", "stash")
            assert service["port"] == ports["https-webhook"]["port"]


def test_the_snapshot_api_is_registered_served_and_bound_to_the_aggregator_roles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = render("snapshotApi.port=9444", release="rel", namespace="ops")
    api = r.one("APIService", NAME)
    code = apiservice("ops", "rel-stash-operator", 9444, b"")
    assert api["spec"] == {k: v for k, v in code["spec"].items() if k != "caBundle"}
    svc_ports = {p["name"]: p for p in r.one("Service", "rel-stash-operator")["spec"]["ports"]}
    assert svc_ports["https-snapshots"]["port"] == 9444
    assert svc_ports["https-snapshots"]["targetPort"] == "snapshot-api"
    container_ports = {p["name"]: p["containerPort"] for p in _container(r)["ports"]}
    assert container_ports["snapshot-api"] == 9444
    settings = _operator_settings(r, monkeypatch)
    assert settings.serve_snapshot_api is True
    assert (settings.snapshot_api_port, settings.snapshot_api_service_port) == (9444, 9444)
    assert settings.snapshot_api_manage_apiservice is False  # the chart owns it
    assert settings.service_name == api["spec"]["service"]["name"]
    delegator = r.one("ClusterRoleBinding", "rel-stash-operator-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = r.one("RoleBinding", "rel-stash-operator-authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    account = [{"kind": "ServiceAccount", "name": "rel-stash-operator", "namespace": "ops"}]
    assert delegator["subjects"] == reader["subjects"] == account
    rules = [
        rule
        for rule in _rules(r, "ClusterRole", "rel-stash-operator")
        if rule["resources"] == ["apiservices"]
    ]
    assert rules == [
        {
            "apiGroups": ["apiregistration.k8s.io"],
            "resources": ["apiservices"],
            "resourceNames": [NAME],
            "verbs": ["get", "update"],
        }
    ]


def test_the_snapshot_api_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    r = render("snapshotApi.enabled=false")
    assert "APIService" not in r.kinds()
    assert [b["metadata"]["name"] for b in r.of_kind("ClusterRoleBinding")] == ["stash-operator"]
    assert [b["metadata"]["name"] for b in r.of_kind("RoleBinding")] == ["stash-operator"]
    names = {p["name"] for p in r.one("Service")["spec"]["ports"]}
    assert names == {"https-webhook", "metrics"}
    assert all(
        "apiservices" not in rule["resources"]
        for rule in _rules(r, "ClusterRole", "stash-operator")
    )
    assert _operator_settings(r, monkeypatch).serve_snapshot_api is False


def test_the_snapshot_apis_ca_comes_like_the_webhooks() -> None:
    injected = render(
        "webhook.certificates.mode=secret",
        "webhook.certificates.secretName=tls",
        "webhook.certificates.certManager.certificate=stash-webhook",
    )
    api = injected.one("APIService")
    assert api["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "stash/stash-webhook"
    }
    assert "caBundle" not in api["spec"]
    given = render(
        "webhook.certificates.mode=secret",
        "webhook.certificates.secretName=tls",
        "webhook.certificates.caBundle=Q0EK",
    )
    assert given.one("APIService")["spec"]["caBundle"] == "Q0EK"
    # the operator writes no caBundle then: it needs no right on the APIService
    for r in (injected, given):
        assert all(
            "apiservices" not in rule["resources"]
            for rule in _rules(r, "ClusterRole", "stash-operator")
        )


# ---------------------------------------------------------------- the same as the code


def test_agent_cluster_roles_are_the_codes() -> None:
    r = render()
    names = {role["metadata"]["name"] for role in agent_cluster_roles()}
    rendered = [d for d in r.of_kind("ClusterRole") if d["metadata"]["name"] in names]
    assert rendered == agent_cluster_roles()


def _without_release_labels(config: JSON) -> JSON:
    labels = {k: v for k, v in config["metadata"]["labels"].items() if k not in RELEASE_LABELS}
    return {**config, "metadata": {**config["metadata"], "labels": labels}}


@pytest.mark.parametrize(
    ("values", "mutating_policy", "validating_policy"),
    [((), "Ignore", "Fail"), (("webhook.mutating.failurePolicy=Fail",), "Fail", "Fail")],
)
def test_webhook_configurations_are_the_codes(
    values: tuple[str, ...], mutating_policy: str, validating_policy: str
) -> None:
    r = render(*values, release="rel", namespace="ops")
    settings = OperatorSettings(namespace="ops", service_name="rel-stash-operator")
    mutating, validating = configurations(settings)
    assert mutating is not None and validating is not None
    for hook in mutating["webhooks"]:
        hook["failurePolicy"] = mutating_policy
    for hook in validating["webhooks"]:
        hook["failurePolicy"] = validating_policy
    assert _without_release_labels(r.one("MutatingWebhookConfiguration")) == mutating
    assert _without_release_labels(r.one("ValidatingWebhookConfiguration")) == validating


def test_cert_manager_certificates_are_mounted_and_their_ca_injected() -> None:
    r = render(
        "webhook.certificates.mode=secret",
        "webhook.certificates.secretName=stash-webhook-cert",
        "webhook.certificates.certManager.certificate=stash-webhook",
    )
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = r.one(kind)["metadata"]["annotations"]
        assert annotations == {"cert-manager.io/inject-ca-from": "stash/stash-webhook"}
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"] == {"secretName": "stash-webhook-cert"}
    mounts = {m["name"]: m for m in _container(r)["volumeMounts"]}
    assert mounts["webhook-tls"]["readOnly"] is True
    role = r.one("Role")
    assert all("secrets" not in rule["resources"] for rule in role["rules"])
    no_role = render(
        "webhook.certificates.mode=secret",
        "webhook.certificates.secretName=tls",
        "replicaCount=1",
        "leaderElection.enabled=false",
    )
    assert "Role" not in no_role.kinds()
    # only the Snapshot API's binding to the authentication reader, in kube-system
    assert [b["metadata"]["namespace"] for b in no_role.of_kind("RoleBinding")] == ["kube-system"]


def test_a_given_ca_bundle_goes_into_every_webhook() -> None:
    r = render(
        "webhook.certificates.mode=secret",
        "webhook.certificates.secretName=tls",
        "webhook.certificates.caBundle=Q0EK",
    )
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = r.one(kind)
        assert "annotations" not in config["metadata"]
        assert {h["clientConfig"]["caBundle"] for h in config["webhooks"]} == {"Q0EK"}


# ---------------------------------------------------------------- the operator's configuration


def _operator_settings(r: Rendered, monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """What `stash operator` makes of the Deployment's args and env."""
    c = _container(r)
    assert c["args"][0] == "operator"
    parser = build_parser()
    options = {s for action in _operator_parser(parser)._actions for s in action.option_strings}
    for arg in c["args"][1:]:
        flag = arg.split("=", 1)[0]
        assert flag in options, f"`stash operator` has no option {flag}"
    for name in _env(r):
        field = name.removeprefix("STASH_").lower()
        assert name.startswith("STASH_") and field in OperatorSettings.model_fields, name
    for var in [v for v in os.environ if v.startswith("STASH_")]:
        monkeypatch.delenv(var)
    for name, value in _env(r).items():
        monkeypatch.setenv(name, value)
    args = parser.parse_args(c["args"])
    return operator_cli.settings_from(args)


def _operator_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices["operator"]
            return sub
    raise AssertionError("no `operator` sub-command")


def test_operator_is_configured_as_the_defaults_say(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _operator_settings(render(release="rel", namespace="ops"), monkeypatch)
    assert settings.namespace == "ops"
    assert settings.watch_namespace is None
    assert settings.leader_elect is True
    assert settings.lease_name == "rel-stash-operator"
    assert settings.service_name == "rel-stash-operator"
    assert settings.webhook_tls_secret == "rel-stash-operator-webhook-tls"
    assert (settings.metrics_port, settings.webhook_port) == (8080, 8443)
    assert settings.webhook_url_base is None  # reached through the Service
    assert settings.image_ref == "stash:0.1.0"
    assert settings.image_pull_secrets == []
    assert settings.pushgateway_url is None
    assert settings.default_timezone == "UTC"


def test_operator_is_configured_as_the_values_say(monkeypatch: pytest.MonkeyPatch) -> None:
    r = render(
        "watchNamespace=apps",
        "replicaCount=1",
        "leaderElection.enabled=false",
        "image.registry=registry.example.com",
        "image.repository=backup/stash",
        "image.tag=1.2.3",
        "imagePullSecrets[0].name=regcred",
        "pushgateway.url=http://pgw.monitoring.svc:9091",
        "schedules.defaultTimezone=Europe/Berlin",
        "schedules.missedScheduleGrace=90",
    )
    settings = _operator_settings(r, monkeypatch)
    assert settings.watch_namespace == "apps"
    assert settings.leader_elect is False
    assert settings.image_ref == "registry.example.com/backup/stash:1.2.3"
    assert _container(r)["image"] == settings.image_ref  # the agent runs the operator's image
    assert settings.image_pull_secrets == ["regcred"]
    assert r.one("Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "regcred"}
    ]
    assert settings.pushgateway_url == "http://pgw.monitoring.svc:9091"
    assert settings.default_timezone == "Europe/Berlin"
    assert settings.missed_schedule_grace == 90
    assert all("leases" not in rule["resources"] for rule in r.one("Role")["rules"])


def test_notifiers_come_from_values_or_an_existing_secret(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Secret" not in render().kinds()
    assert _operator_settings(render(), monkeypatch).notifiers_secret is None
    values = tmp_path / "notify.yaml"
    values.write_text(
        "notifications:\n"
        "  staleCheckInterval: 30\n"
        "  config:\n"
        "    notifiers: [{name: ops, type: slack, url: 'https://hooks.slack.com/services/X'}]\n"
        "    staleAfter: 2h\n"
    )
    r = render(values_files=[values], release="rel")
    secret = r.one("Secret", "rel-stash-operator-notifications")
    config = NotificationConfig.parse(secret["stringData"]["notifiers.yaml"])
    assert [n.name for n in config.notifiers] == ["ops"] and config.stale_after == 7200
    settings = _operator_settings(r, monkeypatch)
    assert settings.notifiers_secret == "rel-stash-operator-notifications"
    assert settings.stale_check_interval == 30
    own = render("notifications.existingSecret=my-notifiers")
    assert "Secret" not in own.kinds()
    assert _operator_settings(own, monkeypatch).notifiers_secret == "my-notifiers"


# ---------------------------------------------------------------- bad values


BAD_VALUES = [
    ("replicaCount=two", "at '/replicaCount': got string, want integer"),
    ("logFormat=xml", "at '/logFormat': value must be one of 'json', 'text'"),
    (
        "webhook.mutating.failurePolicy=Sometimes",
        "at '/webhook/mutating/failurePolicy': value must be one of 'Ignore', 'Fail'",
    ),
    ("webhook.certificates.mode=secret", "at '/webhook/certificates/secretName'"),
    ("leaderElection.enabled=false", "at '/replicaCount': maximum: got 2, want 1"),
    ("replicaCounts=3", "additional properties 'replicaCounts' not allowed"),
    ("pushgateway.url=pgw:9091", "'pgw:9091' does not match pattern"),
]


@pytest.mark.parametrize(("value", "message"), BAD_VALUES, ids=[v for v, _ in BAD_VALUES])
def test_a_wrong_value_fails_with_the_schemas_message(value: str, message: str) -> None:
    done = helm("template", "stash", str(CHART), "--set", value)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


# ---------------------------------------------------------------- monitoring


def test_monitoring_objects_need_their_value_and_their_api() -> None:
    on = (
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.grafanaDashboard.enabled=true",
    )
    without_api = render(*on)
    assert not {"ServiceMonitor", "PrometheusRule"} & without_api.kinds()
    assert (
        not {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
        & render(api_versions=[MONITORING]).kinds()
    )
    r = render(*on, api_versions=[MONITORING])
    monitor = r.one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == r.one("Service")["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    rules = r.one("PrometheusRule")["spec"]["groups"]
    assert sum(len(g["rules"]) for g in rules) >= 7
    dashboard = r.one("ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["stash.json"])["uid"] == "stash-backups"


def test_alert_rules_follow_the_values() -> None:
    def alerts(*values: str) -> set[str]:
        r = render("monitoring.prometheusRule.enabled=true", *values, api_versions=[MONITORING])
        groups = r.one("PrometheusRule")["spec"]["groups"]
        return {rule["alert"] for g in groups for rule in g["rules"]}

    assert "StashOperatorNoLeader" in alerts()
    assert "StashOperatorNoLeader" not in alerts("replicaCount=1", "leaderElection.enabled=false")
    assert "StashWebhookErrors" not in alerts(
        "monitoring.prometheusRule.disabled={StashWebhookErrors}"
    )


# ---------------------------------------------------------------- least privilege


def _rules(r: Rendered, kind: str, name: str) -> list[JSON]:
    rules: list[JSON] = r.one(kind, name).get("rules") or []
    return rules


def _doc_table(heading: str) -> set[tuple[str, str, str]]:
    text = (ROOT / "docs" / "rbac.md").read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            group, resource = cells[0].strip("`").strip('"'), cells[1].strip("`")
            for verb in cells[2].split(","):
                rows.add((group, resource, verb.strip()))
    return rows


def _triples(rules: list[JSON]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_rbac_is_what_docs_rbac_md_lists() -> None:
    r = render()
    assert _triples(_rules(r, "ClusterRole", "stash-operator")) == _doc_table(
        "Operator ClusterRole"
    )
    assert _triples(_rules(r, "Role", "stash-operator")) == _doc_table("Operator Role")


def test_operator_rbac_is_least_privilege() -> None:
    r = render()
    cluster = _rules(r, "ClusterRole", "stash-operator")
    for rule in cluster + _rules(r, "Role", "stash-operator"):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(field) or []), rule
        assert not {"escalate", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
    secrets = [rule for rule in cluster if "secrets" in rule["resources"]]
    assert {v for rule in secrets for v in rule["verbs"]} == {"get", "list", "watch"}
    assert "Why `secrets` list and watch, cluster-wide" in (ROOT / "docs" / "rbac.md").read_text()
    agent_names = sorted(role["metadata"]["name"] for role in agent_cluster_roles())
    for rule in cluster:
        if rule["resources"] == ["clusterroles"]:
            assert sorted(rule["resourceNames"]) == agent_names
            assert set(rule["verbs"]) <= {"get", "bind"}
        if any(res.endswith("webhookconfigurations") for res in rule["resources"]):
            names = {r.one(k)["metadata"]["name"] for k in _WEBHOOK_KINDS}
            assert set(rule["resourceNames"]) == names
            assert set(rule["verbs"]) <= {"get", "update"}
    binding = r.one("ClusterRoleBinding", "stash-operator")
    assert binding["subjects"] == r.one("RoleBinding", "stash-operator")["subjects"]


_WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def test_namespaced_writes_are_limited_to_the_operators_own_objects() -> None:
    r = render(release="rel", namespace="ops")
    env = _env(r)
    named = {
        rule["resources"][0]: set(rule["resourceNames"])
        for rule in _rules(r, "Role", "rel-stash-operator")
        if rule.get("resourceNames")
    }
    assert named == {
        "leases": {env["STASH_LEASE_NAME"]},
        "secrets": {env["STASH_WEBHOOK_TLS_SECRET"]},
    }
    assert r.one("Role")["metadata"]["namespace"] == "ops"


# ---------------------------------------------------------------- Pod Security


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("webhook.certificates.mode=secret", "webhook.certificates.secretName=tls"),
        ("replicaCount=1", "leaderElection.enabled=false", "watchNamespace=x"),
    ],
)
def test_every_pod_meets_pod_security_restricted(values: tuple[str, ...]) -> None:
    r = render(*values)
    pods = [d["spec"]["template"]["spec"] for d in r.docs if "template" in (d.get("spec") or {})]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []
        c = pod["containers"][0]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsUser"] != 0


def test_pod_security_check_finds_what_restricted_refuses() -> None:
    r = render("securityContext.allowPrivilegeEscalation=true", "podSecurityContext=null")
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    problems = restricted_violations(pod)
    assert any("allowPrivilegeEscalation" in p for p in problems)


def test_notes_and_readme_name_only_existing_targets() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "BackupConfiguration" in notes and "/metrics" in notes
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"`make ([a-z-]+)`", readme):
        assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.MULTILINE), target


def test_values_file_documents_every_top_level_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values_text = (CHART / "values.yaml").read_text()
    for key in schema["properties"]:
        if key != "global":
            assert re.search(rf"^{key}:", values_text, re.MULTILINE), key
