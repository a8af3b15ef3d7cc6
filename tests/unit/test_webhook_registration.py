"""What the webhook registers with the apiserver, and the committed webhooks/ files."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from stash.cli.main import main
from stash.settings import OperatorSettings
from stash.webhook.registration import configurations, render_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_stash_env(monkeypatch: pytest.MonkeyPatch) -> None:

    for key in list(os.environ):
        if key.startswith("STASH_"):
            monkeypatch.delenv(key)


def hooks(config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert config is not None
    return {h["name"]: h for h in config["webhooks"]}


def test_committed_webhook_files_match_the_generator() -> None:
    mutating, validating = configurations(OperatorSettings())
    assert mutating is not None and validating is not None
    assert (ROOT / "webhooks" / "mutating.yaml").read_text() == render_yaml(mutating), (
        "webhooks/ is stale: run `stash webhook --render-to webhooks`"
    )
    assert (ROOT / "webhooks" / "validating.yaml").read_text() == render_yaml(validating)


def test_mutation_never_blocks_and_validation_fails_closed() -> None:
    mutating, validating = configurations(OperatorSettings())
    for hook in hooks(mutating).values():
        assert hook["failurePolicy"] == "Ignore"
        assert hook["reinvocationPolicy"] == "Never"
        assert hook["sideEffects"] == "None" and hook["matchPolicy"] == "Equivalent"
        assert hook["timeoutSeconds"] <= 5
    for hook in hooks(validating).values():
        assert hook["failurePolicy"] == "Fail"
        assert "object.spec != oldObject.spec" in hook["matchConditions"][0]["expression"]
        assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]  # never DELETE


def test_workloads_and_sessions_are_mutated_and_every_kind_validated() -> None:
    mutating, validating = configurations(OperatorSettings())
    resources = {h["rules"][0]["resources"][0]: h for h in hooks(mutating).values()}
    assert set(resources) == {
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "replicationcontrollers",
        "deploymentconfigs",
        "restoresessions",
        "backupsessions",
        # the author record (stash.contract.authority)
        "backupconfigurations",
        "backupbatches",
        "restorebatches",
    }
    assert resources["backupsessions"]["rules"][0]["operations"] == ["CREATE"]
    validated = {h["rules"][0]["resources"][0]: h for h in hooks(validating).values()}
    assert "repositories" in validated and validated["tasks"]["rules"][0]["scope"] == "Cluster"
    assert validated["repositories"]["rules"][0]["apiVersions"] == ["v1alpha1"]


def test_system_operator_and_opted_out_namespaces_are_skipped() -> None:
    mutating, _ = configurations(OperatorSettings(namespace="backup-system"))
    hook = hooks(mutating)["deployment.admission.stash.appscode.com"]
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["backup-system", "kube-system"],
    } in expressions
    assert {
        "key": "stash.appscode.com/webhook",
        "operator": "NotIn",
        "values": ["disabled"],
    } in expressions
    assert hook["objectSelector"]["matchExpressions"][0]["key"] == "stash.appscode.com/webhook"


def test_an_object_label_cannot_opt_out_of_validation() -> None:
    # The author of a BackupConfiguration could otherwise skip the rules that protect
    # other teams (usage policy, who may target what); namespaces still opt out, and a
    # namespace's labels are the cluster admin's.
    _, validating = configurations(OperatorSettings())
    for hook in hooks(validating).values():
        assert "objectSelector" not in hook
        selector = hook["namespaceSelector"]["matchExpressions"]
        assert {
            "key": "stash.appscode.com/webhook",
            "operator": "NotIn",
            "values": ["disabled"],
        } in selector
        # a metadata-only update that changes the author record is still judged
        assert "stash.appscode.com/author" in hook["matchConditions"][0]["expression"]


def test_local_runs_register_urls_with_the_ca_bundle() -> None:
    settings = OperatorSettings(webhook_host="127.0.0.1", webhook_port=9443)
    _, validating = configurations(settings, b"CA", url_base=settings.webhook_url_base)
    hook = hooks(validating)["backupconfiguration.admission.stash.appscode.com"]
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate/backupconfigurations",
        "caBundle": base64.b64encode(b"CA").decode(),
    }
    in_cluster = hooks(configurations(OperatorSettings())[0])[
        "deployment.admission.stash.appscode.com"
    ]
    assert in_cluster["clientConfig"] == {
        "service": {
            "namespace": "stash",
            "name": "stash-operator",
            "path": "/mutate/deployments",
            "port": 443,
        }
    }


def test_pod_mode_mutates_pods_instead_of_workload_templates() -> None:
    mutating, _ = configurations(OperatorSettings(injection_mode="pod"))
    resources = {h["rules"][0]["resources"][0] for h in hooks(mutating).values()}
    assert resources == {
        "pods",
        "restoresessions",
        "backupsessions",
        "backupconfigurations",
        "backupbatches",
        "restorebatches",
    }


def test_disabled_webhooks_are_not_rendered() -> None:
    settings = OperatorSettings(enable_mutating_webhook=False, enable_validating_webhook=False)
    assert configurations(settings) == (None, None)


def test_cli_renders_both_configurations(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["webhook", "--render", "--namespace", "ops"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    assert docs[0]["webhooks"][0]["clientConfig"]["service"]["namespace"] == "ops"
    assert main(["webhook", "--render-to", str(tmp_path), "--disable-mutating-webhook"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["validating.yaml"]


def test_an_operator_watching_one_namespace_is_called_for_that_namespace_only() -> None:
    mutating, validating = configurations(OperatorSettings(watch_namespace="team-a"))
    for config in (mutating, validating):
        assert config is not None
        for hook in config["webhooks"]:
            expressions = hook["namespaceSelector"]["matchExpressions"]
            assert {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a"],
            } in expressions
