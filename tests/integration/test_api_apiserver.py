"""The generated CRDs against a real kube-apiserver: it accepts every fixture, stores
everything our models write (no field pruned), and rejects the bad input our models
reject, naming the same field."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from kubernetes_asyncio import client

from stash.api import KINDS, KindInfo
from tests.unit.api_fixtures import fixture_docs
from tests.unit.test_api_roundtrip import BAD_INPUT, _set

pytestmark = pytest.mark.cluster

# Fields the CRDs default (as upstream's +kubebuilder:default); the apiserver adds them.
DEFAULTED = {"driver", "executionPolicy", "executionOrder", "from"}


def _body(doc: dict[str, Any], info: KindInfo, namespace: str) -> dict[str, Any]:
    meta = doc["metadata"]
    body = copy.deepcopy(doc)
    body["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    if info.scope == "Namespaced":
        body["metadata"]["namespace"] = namespace
    else:
        # Cluster-scoped names are shared by every test (and the operator creates the
        # built-in pvc-backup Function/Task): make ours unique to this test.
        body["metadata"]["name"] = f"{meta['name']}-{namespace[-6:]}"
    body.pop("status", None)  # ignored on create: status is a subresource
    return body


async def _create(
    api: client.CustomObjectsApi, info: KindInfo, namespace: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Create server-side with dryRun=All: fully validated, defaulted, pruned, not stored."""
    if info.scope == "Namespaced":
        result = await api.create_namespaced_custom_object(
            info.group, info.version, namespace, info.plural, body, dry_run="All"
        )
    else:
        result = await api.create_cluster_custom_object(
            info.group, info.version, info.plural, body, dry_run="All"
        )
    assert isinstance(result, dict)
    return result


def _strip_defaults(stored: Any, sent: Any, path: str = "") -> Any:
    """`stored` minus the keys the apiserver defaulted (asserting nothing else was added)."""
    if isinstance(stored, dict) and isinstance(sent, dict):
        extra = set(stored) - set(sent)
        assert extra <= DEFAULTED, f"{path}: apiserver added {extra}"
        return {
            k: _strip_defaults(v, sent[k], f"{path}.{k}") for k, v in stored.items() if k in sent
        }
    if isinstance(stored, list) and isinstance(sent, list):
        pairs = enumerate(zip(stored, sent, strict=True))
        return [_strip_defaults(a, b, f"{path}[{i}]") for i, (a, b) in pairs]
    return stored


async def test_apiserver_stores_every_fixture_unpruned_and_models_read_it(
    kube: client.ApiClient, stash_crds: list[str], namespace: str
) -> None:
    api = client.CustomObjectsApi(kube)
    for name, doc in fixture_docs():
        info = KINDS[doc["kind"]]
        body = _body(doc, info, namespace)
        try:
            stored = await _create(api, info, namespace, body)
        except client.ApiException as exc:
            pytest.fail(f"{name}: apiserver rejected it: {exc.body}")
        assert _strip_defaults(stored.get("spec"), body.get("spec")) == body.get("spec"), name
        # Our models read the defaulted object and write back exactly what was stored.
        assert info.model.model_validate(stored).to_wire()["spec"] == stored["spec"], name


def _api_path(path: str) -> str:
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)


SPEC_BAD_INPUT = [case for case in BAD_INPUT if case[1].startswith("spec.")]


@pytest.mark.parametrize(
    ("name", "path", "value"), SPEC_BAD_INPUT, ids=[p for _, p, _ in SPEC_BAD_INPUT]
)
async def test_apiserver_rejects_what_models_reject_naming_the_field(
    kube: client.ApiClient, stash_crds: list[str], namespace: str, name: str, path: str, value: Any
) -> None:
    doc = copy.deepcopy(dict(fixture_docs())[name])
    _set(doc, path, value)
    info = KINDS[doc["kind"]]
    with pytest.raises(client.ApiException) as caught:
        await _create(client.CustomObjectsApi(kube), info, namespace, _body(doc, info, namespace))
    assert caught.value.status == 422
    assert _api_path(path) in caught.value.body
