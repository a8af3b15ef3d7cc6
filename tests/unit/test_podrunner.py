"""The pod runner's pure rules: `$(VAR)` expansion, env, downward API, phases, identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stash_dev.podrunner import PodRunnerError, trampoline
from stash_dev.podrunner.environment import (
    container_env,
    field_value,
    parse_quantity,
    resource_value,
    service_env,
)
from stash_dev.podrunner.expansion import expand
from stash_dev.podrunner.runner import _image_name
from stash_dev.podrunner.serviceaccount import (
    TOKEN_MOUNT_PATH,
    automount,
    with_token_volume,
)
from stash_dev.podrunner.status import pod_phase

ENV = {"A": "1", "NAME": "web", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x-$(NAME)-y", "x-web-y"),
        ("$(EMPTY)|", "|"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$$$$(A)", "$$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$()", "$()"),
        ("$(A", "$(A"),
        ("$A ${A} $", "$A ${A} $"),
        ("$(A)$(NAME)", "1web"),
        ("no refs", "no refs"),
    ],
)
def test_expansion_follows_the_kubelet_rules(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


POD: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "u-1",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": 'say "hi"'},
    },
    "spec": {
        "nodeName": "node-1",
        "serviceAccountName": "agent",
        "containers": [
            {"name": "app", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}},
        ],
    },
    "status": {"podIP": "10.1.2.3"},
}


def test_downward_api_fields() -> None:
    assert field_value(POD, "metadata.name") == "web-0"
    assert field_value(POD, "metadata.labels['tier']") == "front"
    assert field_value(POD, "metadata.labels['absent']") == ""
    assert field_value(POD, "metadata.annotations") == 'note="say \\"hi\\""'
    assert field_value(POD, "metadata.labels") == 'app="web"\ntier="front"'
    assert field_value(POD, "spec.serviceAccountName") == "agent"
    assert field_value(POD, "status.podIP") == "10.1.2.3"
    assert field_value(POD, "status.hostIP") == "127.0.0.1"  # not reported yet: loopback
    with pytest.raises(PodRunnerError, match="unsupported downward API fieldPath"):
        field_value(POD, "spec.containers")


def test_resource_field_refs_divide_and_round_up() -> None:
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("250m") * 4 == 1
    assert parse_quantity("2e3") == 2000
    assert resource_value(POD, "app", {"resource": "limits.cpu"}) == "2"
    assert resource_value(POD, "app", {"resource": "limits.cpu", "divisor": "1m"}) == "1500"
    assert resource_value(POD, "app", {"resource": "limits.memory", "divisor": "1Mi"}) == "1024"
    assert resource_value(POD, "app", {"resource": "requests.memory"}) == "0"
    assert int(resource_value(POD, "app", {"resource": "limits.ephemeral-storage"})) > 0
    with pytest.raises(PodRunnerError, match="invalid resource quantity"):
        parse_quantity("lots")


class _Objects:
    """Stands in for PodObjects: fixed Secrets and ConfigMaps, optional honoured."""

    namespace = "shop"

    def __init__(self) -> None:
        self.secrets = {"db": {"password": b"pw", "user": b"admin"}}
        self.maps = {"cfg": {"MODE": b"fast", "bad=name": b"x"}}

    async def secret(self, name: str, optional: bool = False) -> dict[str, bytes] | None:
        return self._read(self.secrets, name, optional)

    async def config_map(self, name: str, optional: bool = False) -> dict[str, bytes] | None:
        return self._read(self.maps, name, optional)

    @staticmethod
    def _read(
        store: dict[str, dict[str, bytes]], name: str, optional: bool
    ) -> dict[str, bytes] | None:
        if name in store:
            return store[name]
        if optional:
            return None
        raise PodRunnerError(f"{name} not found")


async def test_env_layers_envfrom_then_env_in_order() -> None:
    container = {
        "name": "app",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "missing", "optional": True}},
        ],
        "env": [
            {"name": "CFG_MODE", "value": "slow-$(CFG_MODE)"},
            {
                "name": "URL",
                "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)",
            },
            {"name": "LATER", "value": "$(DEFINED_AFTER)"},
            {"name": "DEFINED_AFTER", "value": "x"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope", "optional": True}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "BLANK"},
        ],
    }
    env = await container_env(POD, container, _Objects(), service_env("127.0.0.1", 6443))  # type: ignore[arg-type]
    assert env["CFG_MODE"] == "slow-fast"
    assert "CFG_bad=name" not in env
    assert env["URL"] == "https://127.0.0.1:6443"
    assert env["LATER"] == "$(DEFINED_AFTER)"
    assert env["PW"] == "pw"
    assert "OPT" not in env
    assert env["POD"] == "web-0"
    assert env["BLANK"] == ""


async def test_a_missing_required_key_names_object_and_key() -> None:
    container = {
        "name": "app",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}],
    }
    with pytest.raises(PodRunnerError, match=r"ConfigMap shop/cfg has no key 'NOPE'"):
        await container_env(POD, container, _Objects(), {})  # type: ignore[arg-type]


def _status(*states: dict[str, Any], inits: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "phase": "Running",
        "containerStatuses": [{"name": f"c{i}", "state": s} for i, s in enumerate(states)],
        "initContainerStatuses": [{"name": f"i{i}", "state": s} for i, s in enumerate(inits)],
    }


def _spec(policy: str, n: int = 2, inits: int = 0) -> dict[str, Any]:
    return {
        "restartPolicy": policy,
        "containers": [{"name": f"c{i}"} for i in range(n)],
        "initContainers": [{"name": f"i{i}"} for i in range(inits)],
    }


OK = {"terminated": {"exitCode": 0}}
FAIL = {"terminated": {"exitCode": 2}}
RUN = {"running": {}}


@pytest.mark.parametrize(
    ("policy", "states", "phase"),
    [
        ("Never", (OK, OK), "Succeeded"),
        ("Never", (OK, FAIL), "Failed"),
        ("Never", (OK, RUN), "Running"),
        ("OnFailure", (OK, OK), "Succeeded"),
        ("OnFailure", (OK, FAIL), "Running"),
        ("Always", (OK, OK), "Running"),
    ],
)
def test_pod_phase_follows_restart_policy(
    policy: str, states: tuple[dict[str, Any], ...], phase: str
) -> None:
    assert pod_phase(_spec(policy), _status(*states)) == phase


def test_a_failed_init_container_fails_a_never_restarting_pod() -> None:
    spec = _spec("Never", inits=1)
    assert pod_phase(spec, {"phase": "Pending", **_status(inits=(FAIL,))}) == "Failed"
    pending = {"phase": "Pending", "initContainerStatuses": [{"name": "i0", "state": RUN}]}
    assert pod_phase(spec, pending) == "Pending"


def test_token_volume_is_added_like_the_admission_plugin() -> None:
    pod = {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
        },
    }
    out = with_token_volume(pod)
    assert "volumes" not in pod["spec"], "the input pod is not changed"
    [volume] = out["spec"]["volumes"]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {
        c["name"]: [m["name"] for m in c.get("volumeMounts", [])]
        for c in out["spec"]["initContainers"] + out["spec"]["containers"]
    }
    assert mounts == {"init": [volume["name"]], "app": ["data", volume["name"]], "own": ["mine"]}
    assert with_token_volume(out) == out


def test_automount_pod_setting_wins_over_the_service_account() -> None:
    assert automount({"spec": {}}, {}) is True
    assert automount({"spec": {}}, {"automountServiceAccountToken": False}) is False
    pod_on = {"spec": {"automountServiceAccountToken": True}}
    assert automount(pod_on, {"automountServiceAccountToken": False}) is True


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("stash", "stash"),
        ("stash:v1", "stash"),
        ("registry:5000/org/stash:v1", "registry:5000/org/stash"),
        ("org/stash@sha256:abc", "org/stash"),
    ],
)
def test_image_name_without_tag_or_digest(image: str, name: str) -> None:
    assert _image_name(image) == name


def test_trampoline_resolves_symlinks_inside_the_view(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "rel").symlink_to("../run")
    view = trampoline.View(str(tmp_path / "staging"))
    view.root = str(tmp_path)
    assert view.resolve("/var/run/secrets/x") == ("/run", ["secrets", "x"])
    assert view.resolve("/etc/rel") == ("/run", [])
    assert view.resolve("/etc/./rel/../var") == ("/var", [])
    assert view.host("/run") == str(tmp_path / "run")


def test_the_image_of_a_venv_command_is_its_venv_and_its_editable_sources() -> None:
    # a volume mounted over them (an emptyDir at /tmp, a checkout under /tmp) must not
    # hide the container's own program
    import os
    import sys
    from pathlib import Path

    from stash_dev.podrunner.image import image_roots

    roots = image_roots("stash", {"PATH": str(Path(sys.executable).parent)})
    src = str(Path(__file__).resolve().parents[2] / "src")
    assert str(Path(sys.prefix)) in roots
    assert src in roots
    assert image_roots("no-such-command", dict(os.environ)) == []
