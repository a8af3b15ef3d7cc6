"""Pure parts of the local control plane: certificates, kubeconfig, stand-in kubelet status."""

from __future__ import annotations

import base64
import ipaddress
import json

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from stash.devcluster import pki
from stash.devcluster.controlplane import render_kubeconfig
from stash.devcluster.kubelet import running_status


def test_serving_cert_has_ip_and_dns_sans_signed_by_ca() -> None:
    ca = pki.new_ca("test-ca")
    pair = pki.new_serving_cert(ca, "svc", ["svc.ns.svc"], ["127.0.0.1"])
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)


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
