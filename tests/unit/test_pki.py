"""Certificates issued by `stash.pki` (the webhook's and the dev control plane's): every
name a client dials is a SAN, the chain verifies, and a leaf never outlives its CA."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from stash.pki import issue_ca, issue_serving_cert

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=365)


def test_serving_cert_has_ip_and_dns_sans_signed_by_ca() -> None:
    ca = issue_ca("test-ca", NOW, 10 * YEAR)
    pair = issue_serving_cert(ca, ["svc.ns.svc"], ["127.0.0.1"], NOW, YEAR)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))


def test_the_ca_signs_leaves_only() -> None:
    ca = x509.load_pem_x509_certificate(issue_ca("test-ca", NOW, YEAR).cert_pem)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0


def test_a_serving_cert_never_outlives_its_ca() -> None:
    ca = issue_ca("short-ca", NOW, dt.timedelta(days=30))
    pair = issue_serving_cert(ca, ["svc"], [], NOW, YEAR)
    leaf = x509.load_pem_x509_certificate(pair.cert_pem)
    root = x509.load_pem_x509_certificate(ca.cert_pem)
    assert leaf.not_valid_after_utc == root.not_valid_after_utc


def test_a_serving_cert_needs_a_name() -> None:
    ca = issue_ca("test-ca", NOW, YEAR)
    with pytest.raises(ValueError, match="at least one"):
        issue_serving_cert(ca, [], [], NOW, YEAR)
