"""Pure parts of the local control plane: kubeconfig, stand-in kubelet status, pod IPs."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stash_dev.controlplane import render_kubeconfig
from stash_dev.kubelet_status import running_status
from stash_dev.pki import FRONT_PROXY_CLIENT, write_cluster_pki
from stash_dev.podips import LOOPBACK, PodIPs, PoolExhausted, node_address, routed_locally


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


def test_job_pods_wait_at_their_own_pod_ip_on_the_node() -> None:
    pod = {
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "j"}]},
        "spec": {"containers": [{"name": "step", "image": "stash"}]},
    }
    status = running_status(pod, "10.244.0.9", "192.0.2.2")["status"]
    assert status["phase"] == "Pending"
    assert status["podIP"] == "10.244.0.9" and status["podIPs"] == [{"ip": "10.244.0.9"}]
    assert status["hostIP"] == "192.0.2.2"


def test_pod_ips_are_distinct_and_kept_for_a_pods_life() -> None:
    ips = PodIPs("10.244.0.0/16")
    first, second = ips.assign("a"), ips.assign("b")
    assert (first, second) == ("10.244.0.1", "10.244.0.2")
    assert ips.assign("a") == first  # stable
    ips.release("a")
    assert ips.get("a") is None
    assert ips.assign("c") == "10.244.0.3"  # a freed address is not handed out at once


def test_pod_ips_skip_reserved_and_broadcast_like_addresses() -> None:
    ips = PodIPs("10.244.0.0/16", reserved=["10.244.0.2"])
    got = [ips.assign(str(i)) for i in range(300)]
    assert len(set(got)) == 300
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.244.0.0/16") for ip in got)
    assert "10.244.0.2" not in got
    assert not any(ip.endswith((".0", ".255")) for ip in got)
    assert got[253] == "10.244.1.1"


def test_pod_ips_adopt_what_was_reported_and_forget_pods_no_longer_listed() -> None:
    ips = PodIPs("10.244.0.0/16")
    assert ips.adopt("old", "10.244.0.5")
    assert not ips.adopt("other", "10.244.0.5")  # taken
    assert not ips.adopt("elsewhere", "192.0.2.7")  # not the pool's
    assert ips.assign("new") != "10.244.0.5"
    ips.retain(["new"])
    assert ips.get("old") is None and ips.get("new") is not None
    assert len(ips) == 1


def test_a_full_pool_says_so() -> None:
    ips = PodIPs("10.244.0.0/24")
    for i in range(254):
        ips.assign(str(i))
    with pytest.raises(PoolExhausted):
        ips.assign("one-too-many")


def test_the_node_address_is_one_endpoint_slices_accept() -> None:
    addr = ipaddress.ip_address(node_address())
    # The apiserver refuses loopback, link-local and unspecified endpoint IPs; the
    # fallback (a host with no other address) is loopback, and says so by its value.
    assert addr == ipaddress.ip_address(LOOPBACK) or not (
        addr.is_loopback or addr.is_link_local or addr.is_unspecified
    )


def test_a_range_nothing_routes_here_is_not_local() -> None:
    assert not routed_locally("198.51.100.0/24", timeout=0.2)  # TEST-NET-2
    assert routed_locally("127.0.0.0/8")


def test_cluster_pki_has_a_front_proxy_client_its_own_ca_signed(tmp_path: Path) -> None:
    write_cluster_pki(tmp_path, dt.datetime.now(dt.UTC))
    client = x509.load_pem_x509_certificate((tmp_path / "front-proxy-client.crt").read_bytes())
    front_ca = x509.load_pem_x509_certificate((tmp_path / "front-proxy-ca.crt").read_bytes())
    cluster_ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    client.verify_directly_issued_by(front_ca)
    assert client.issuer != cluster_ca.subject  # a separate trust root, as upstream has it
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == FRONT_PROXY_CLIENT
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for key in ("front-proxy-client.key", "apiserver.key", "sa.key", "ca.key"):
        assert (tmp_path / key).stat().st_mode & 0o077 == 0
