"""When the webhook's CA and serving certificate are issued, kept and rotated."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from stash.settings import OperatorSettings
from stash.webhook.certs import CertBundle, plan, rotation_due, sans_of
from stash.webhook.server import _names

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
NAMES = ["stash-operator", "stash-operator.stash", "stash-operator.stash.svc"]


def not_after(pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def signed_by(cert: bytes, ca: bytes) -> bool:
    try:
        x509.load_pem_x509_certificate(cert).verify_directly_issued_by(
            x509.load_pem_x509_certificate(ca)
        )
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_fresh_bundle_covers_every_name_and_chains_to_its_ca() -> None:
    bundle = plan(None, NAMES, ["127.0.0.1"], NOW)
    assert sans_of(bundle.cert) == (frozenset(NAMES), frozenset({"127.0.0.1"}))
    assert bundle.ca_bundle == bundle.ca_cert
    assert not_after(bundle.ca_cert) - NOW == dt.timedelta(days=3650)
    assert not_after(bundle.cert) - NOW == dt.timedelta(days=365)
    assert signed_by(bundle.cert, bundle.ca_cert)


def test_nothing_changes_before_two_thirds_of_the_lifetime() -> None:
    bundle = plan(None, NAMES, [], NOW)
    assert plan(bundle, NAMES, [], NOW + 200 * DAY) is bundle
    assert not rotation_due(bundle.cert, NOW + 243 * DAY)
    assert rotation_due(bundle.cert, NOW + 244 * DAY)


def test_serving_certificate_is_renewed_at_two_thirds_with_the_same_ca() -> None:
    bundle = plan(None, NAMES, [], NOW)
    later = NOW + 250 * DAY
    renewed = plan(bundle, NAMES, [], later)
    assert renewed.ca_cert == bundle.ca_cert and renewed.cert != bundle.cert
    assert renewed.previous_ca == b""
    assert not_after(renewed.cert) - later == dt.timedelta(days=365)


def test_changed_names_get_a_new_certificate() -> None:
    bundle = plan(None, NAMES, [], NOW)
    renewed = plan(bundle, [*NAMES, "stash-operator.stash.svc.cluster.local"], [], NOW)
    assert renewed.cert != bundle.cert and renewed.ca_cert == bundle.ca_cert


def test_ca_rotation_keeps_the_old_ca_trusted_until_it_expires() -> None:
    bundle = plan(None, NAMES, [], NOW)
    at = NOW + 2500 * DAY  # past 2/3 of ten years
    rotated = plan(bundle, NAMES, [], at)
    assert rotated.ca_cert != bundle.ca_cert
    assert rotated.previous_ca == bundle.ca_cert
    assert rotated.ca_bundle == rotated.ca_cert + bundle.ca_cert
    assert signed_by(rotated.cert, rotated.ca_cert)
    assert not signed_by(rotated.cert, bundle.ca_cert)
    # once the old CA has expired it leaves the bundle
    expired = plan(rotated, NAMES, [], NOW + 3651 * DAY)
    assert expired.previous_ca == b""


def test_serving_certificate_never_outlives_its_ca() -> None:
    bundle = plan(None, NAMES, [], NOW, ca_lifetime=100 * DAY, cert_lifetime=365 * DAY)
    assert not_after(bundle.cert) <= not_after(bundle.ca_cert)


def test_unreadable_certificate_is_replaced() -> None:
    bundle = plan(None, NAMES, [], NOW)
    broken = CertBundle(bundle.ca_cert, bundle.ca_key, b"garbage", bundle.key)
    assert plan(broken, NAMES, [], NOW).cert.startswith(b"-----BEGIN CERTIFICATE-----")


def test_certificate_names_follow_the_settings() -> None:
    in_cluster = OperatorSettings(namespace="backup", service_name="stash")
    assert _names(in_cluster) == (
        ["stash", "stash.backup", "stash.backup.svc", "stash.backup.svc.cluster.local"],
        [],
    )
    local = in_cluster.model_copy(update={"webhook_host": "127.0.0.1"})
    assert _names(local)[1] == ["127.0.0.1"]
