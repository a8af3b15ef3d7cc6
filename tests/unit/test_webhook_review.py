"""Malformed and fuzzed AdmissionReviews: always a well-formed answer or a 400 with a reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import ClientTimeout
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stash.api import BackupConfiguration
from stash.settings import OperatorSettings
from stash.webhook.app import MAX_BODY, make_app
from stash.webhook.lookup import StaticLookup
from stash.webhook.review import BadReview, parse_review

ROUTES = [
    "/mutate/deployments",
    "/mutate/statefulsets",
    "/mutate/pods",
    "/mutate/restoresessions",
    "/mutate/backupsessions",
    "/validate/backupconfigurations",
    "/validate/restoresessions",
    "/validate/repositories",
    "/validate/backupsessions",
]

Post = Callable[[str, bytes, str], tuple[int, Any]]


@pytest.fixture(scope="module")
def post() -> Iterator[Post]:
    """A synchronous poster over a real aiohttp server on its own loop (for hypothesis)."""
    loop = asyncio.new_event_loop()
    bc = BackupConfiguration.model_validate(
        {
            "metadata": {"name": "b", "namespace": "demo"},
            "spec": {
                "repository": {"name": "r"},
                "retentionPolicy": {"name": "k", "keepLast": 1},
                "target": {
                    "ref": {"kind": "Deployment", "name": "web"},
                    "paths": ["/d"],
                    "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                },
            },
        }
    )
    settings_ = OperatorSettings(injection_mode="workload")

    async def start() -> TestClient[Any, Any]:
        c: TestClient[Any, Any] = TestClient(TestServer(make_app(settings_, StaticLookup([bc]))))
        await c.start_server()
        return c

    client = loop.run_until_complete(start())

    async def send(path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        resp = await client.post(
            path,
            data=body,
            headers={"Content-Type": content_type},
            timeout=ClientTimeout(total=10),
        )
        text = await resp.text()
        return resp.status, json.loads(text)

    def post_sync(
        path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        return loop.run_until_complete(send(path, body, content_type))

    yield post_sync
    loop.run_until_complete(client.close())
    loop.close()


def assert_well_formed(status: int, data: Any, uid: Any = None) -> None:
    """200 with an AdmissionReview response for the request's uid, or 400 with a reason."""
    if status == 400:
        assert data["reason"] == "BadRequest" and data["message"]
        return
    assert status == 200, (status, data)
    assert data["apiVersion"] == "admission.k8s.io/v1" and data["kind"] == "AdmissionReview"
    response = data["response"]
    assert isinstance(response["allowed"], bool)
    if uid is not None:
        assert response["uid"] == uid
    if not response["allowed"]:
        assert response["status"]["message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
kube_keys = st.sampled_from(
    [
        "metadata",
        "spec",
        "template",
        "containers",
        "initContainers",
        "name",
        "kind",
        "apiVersion",
        "target",
        "ref",
        "rules",
        "volumes",
        "annotations",
        "labels",
        "ownerReferences",
        "invoker",
        "schedule",
        "backend",
        "local",
    ]
)
kubeish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(kube_keys, inner, max_size=5),
    max_leaves=30,
)


def request_strategy() -> st.SearchStrategy[dict[str, Any]]:
    kind = st.fixed_dictionaries(
        {
            "group": st.sampled_from(["", "apps", "stash.appscode.com"]),
            "version": st.sampled_from(["v1", "v1beta1", "v1alpha1"]),
            "kind": st.sampled_from(
                [
                    "Deployment",
                    "Pod",
                    "RestoreSession",
                    "BackupSession",
                    "BackupConfiguration",
                    "Repository",
                    "X",
                ]
            ),
        }
    )
    obj = st.one_of(
        kubeish,
        st.fixed_dictionaries(
            {
                "kind": st.sampled_from(
                    ["Deployment", "Pod", "BackupConfiguration", "RestoreSession"]
                )
            },
            optional={"metadata": kubeish, "spec": kubeish, "apiVersion": st.text(max_size=8)},
        ),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "uid": st.one_of(st.uuids().map(str), json_values),
            "kind": st.one_of(kind, json_values),
            "resource": st.one_of(
                st.just({"group": "apps", "version": "v1", "resource": "deployments"}), json_values
            ),
            "operation": st.one_of(
                st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]), json_values
            ),
            "namespace": st.one_of(st.just("demo"), json_values),
            "object": obj,
            "oldObject": obj,
            "dryRun": st.one_of(st.booleans(), json_values),
            "userInfo": json_values,
        },
    )


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(body=st.binary(max_size=200), route=st.sampled_from(ROUTES))
def test_random_bytes(post: Post, body: bytes, route: str) -> None:
    assert_well_formed(*post(route, body, "application/json"))


@FUZZ
@given(value=json_values, route=st.sampled_from(ROUTES))
def test_random_json(post: Post, value: Any, route: str) -> None:
    assert_well_formed(*post(route, json.dumps(value).encode(), "application/json"))


@FUZZ
@given(request=request_strategy(), route=st.sampled_from(ROUTES))
def test_random_admission_requests(post: Post, request: dict[str, Any], route: str) -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    status, data = post(route, json.dumps(review).encode(), "application/json")
    assert_well_formed(status, data, request.get("uid") if status == 200 else None)


def test_deeply_nested_json_is_a_bad_request(post: Post) -> None:
    status, data = post(ROUTES[0], b"[" * 100_000 + b"]" * 100_000, "application/json")
    assert status == 400 and "JSON" in data["message"]


def test_oversized_body_is_a_bad_request(post: Post) -> None:
    status, data = post(ROUTES[0], b" " * (MAX_BODY + 1), "application/json")
    assert status == 400 and "larger than" in data["message"]


def test_wrong_content_type_is_a_bad_request(post: Post) -> None:
    status, data = post(ROUTES[0], b"{}", "text/plain")
    assert status == 400 and "application/json" in data["message"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.pop("uid"), "request.uid is required"),
        (lambda r: r.update(uid=""), "request.uid must not be empty"),
        (lambda r: r.update(operation="PATCH"), "request.operation must be one of"),
        (lambda r: r.update(object=None), "request.object is required for CREATE"),
        (lambda r: r.update(kind="Deployment"), "request.kind must be a dict"),
        (lambda r: r.update(dryRun="yes"), "request.dryRun must be a bool"),
    ],
)
def test_strict_decoding_names_the_problem(
    mutate: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    request: dict[str, Any] = {
        "uid": "1",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "operation": "CREATE",
        "object": {"kind": "Deployment"},
    }
    mutate(request)
    body = json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    )
    with pytest.raises(BadReview, match=reason):
        parse_review(body.encode())


def test_v1beta1_reviews_are_refused() -> None:
    with pytest.raises(BadReview, match=r"admission\.k8s\.io/v1"):
        parse_review(
            b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}'
        )
