"""Pure parts of the local control plane: kubeconfig, stand-in kubelet status."""

from __future__ import annotations

import base64
import json

from stash_dev.controlplane import render_kubeconfig
from stash_dev.kubelet import running_status


def test_kubeconfig_embeds_ca_and_token() -> None:
    cfg = json.loads(render_kubeconfig("https://127.0.0.1:6443", b"PEM", "tok"))
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"PEM"
    assert cfg["users"][0]["user"]["token"] == "tok"
    assert cfg["current-context"] == cfg["contexts"][0]["name"]


def test_running_status_reports_every_container_and_completed_init_containers() -> None:
    pod = {
        "spec": {
            "initContainers": [{"name": "stash-init", "image": "stash"}],
            "containers": [{"name": "app", "image": "a"}, {"name": "stash", "image": "s"}],
        }
    }
    status = running_status(pod)["status"]
    assert status["phase"] == "Running"
    assert [c["name"] for c in status["containerStatuses"]] == ["app", "stash"]
    assert all("running" in c["state"] for c in status["containerStatuses"])
    init = status["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "ContainersReady"}
