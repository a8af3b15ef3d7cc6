"""Backend spec + storage secret -> restic target, for every provider (stash-api.md §2)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from stash.api.repository import Backend
from stash.restic.backend import restic_target, write_target_files
from stash.restic.errors import InvalidBackend, MissingSecretKey

SCRATCH = "/stash-tmp"
PW = {"RESTIC_PASSWORD": b"correct horse"}


def backend(provider: str, **spec: Any) -> Backend:
    return Backend.model_validate({"storageSecretName": "repo-secret", provider: spec})


def test_local_repository_is_the_mount_path() -> None:
    t = restic_target(
        backend("local", mountPath="/safe/data", hostPath={"path": "/var/backups"}),
        PW,
        scratch_dir=SCRATCH,
    )
    assert t.repository == "/safe/data"
    assert t.local_path == "/safe/data"
    assert t.env == {"RESTIC_PASSWORD": "correct horse", "RESTIC_REPOSITORY": "/safe/data"}
    assert t.options == () and t.files == ()


@pytest.mark.parametrize(
    ("endpoint", "prefix", "url"),
    [
        ("http://127.0.0.1:9000", "demo", "s3:http://127.0.0.1:9000/bucket/demo"),
        ("http://127.0.0.1:9000/", "/a/b/", "s3:http://127.0.0.1:9000/bucket/a/b"),
        # No scheme: restic itself uses HTTPS for `s3:host/bucket`; we pass it as given.
        ("s3.amazonaws.com", None, "s3:s3.amazonaws.com/bucket"),
        ("https://minio.example.com", "", "s3:https://minio.example.com/bucket"),
    ],
)
def test_s3_url(endpoint: str, prefix: str | None, url: str) -> None:
    spec: dict[str, Any] = {"endpoint": endpoint, "bucket": "bucket"}
    if prefix is not None:
        spec["prefix"] = prefix
    t = restic_target(backend("s3", **spec), PW, scratch_dir=SCRATCH)
    assert t.repository == url
    assert t.env["RESTIC_REPOSITORY"] == url


def test_s3_keys_region_tls_and_ca_cert() -> None:
    secret = {
        **PW,
        "AWS_ACCESS_KEY_ID": b"AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": b"wJalrXUtnFEMI",
        "CA_CERT_DATA": b"-----BEGIN CERTIFICATE-----\n",
        "LD_PRELOAD": b"/evil.so",
        "RESTIC_REPOSITORY": b"/somewhere/else",
    }
    t = restic_target(
        backend(
            "s3", endpoint="https://s3.local", bucket="b", region="eu-west-1", insecureTLS=True
        ),
        secret,
        scratch_dir=SCRATCH,
    )
    assert t.env["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert t.env["AWS_SECRET_ACCESS_KEY"] == "wJalrXUtnFEMI"
    assert t.env["AWS_DEFAULT_REGION"] == "eu-west-1"
    # Only documented keys reach restic; the secret cannot redirect the repository.
    assert "LD_PRELOAD" not in t.env
    assert t.env["RESTIC_REPOSITORY"] == "s3:https://s3.local/b"
    assert "--insecure-tls" in t.options
    ca = t.options[t.options.index("--cacert") + 1]
    assert ca == f"{SCRATCH}/credentials/ca.crt"
    [f] = t.files
    assert f"{SCRATCH}/{f.path}" == ca and f.content.startswith(b"-----BEGIN")


def test_s3_without_keys_is_allowed_for_instance_roles() -> None:
    t = restic_target(backend("s3", endpoint="s3.amazonaws.com", bucket="b"), PW, scratch_dir="/s")
    assert "AWS_ACCESS_KEY_ID" not in t.env


@pytest.mark.parametrize("present", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_s3_half_a_key_pair_names_the_missing_key(present: str) -> None:
    missing = ({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} - {present}).pop()
    with pytest.raises(MissingSecretKey) as info:
        restic_target(
            backend("s3", endpoint="e", bucket="b"), {**PW, present: b"x"}, scratch_dir="/s"
        )
    assert info.value.key == missing
    assert missing in str(info.value) and "repo-secret" in str(info.value)


def test_gcs() -> None:
    secret = {
        **PW,
        "GOOGLE_PROJECT_ID": b"proj-1",
        "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": b'{"type": "service_account"}',
    }
    t = restic_target(
        backend("gcs", bucket="bkt", prefix="/team/app", maxConnections=4),
        secret,
        scratch_dir=SCRATCH,
    )
    assert t.repository == "gs:bkt:/team/app"
    assert t.env["GOOGLE_PROJECT_ID"] == "proj-1"
    key_path = t.env["GOOGLE_APPLICATION_CREDENTIALS"]
    [f] = t.files
    assert key_path == f"{SCRATCH}/{f.path}"
    assert f.content == b'{"type": "service_account"}'
    assert "GOOGLE_SERVICE_ACCOUNT_JSON_KEY" not in t.env
    assert t.options == ("--option", "gs.connections=4")


def test_gcs_without_prefix_is_bucket_root() -> None:
    secret = {**PW, "GOOGLE_PROJECT_ID": "p", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": "{}"}
    t = restic_target(backend("gcs", bucket="bkt"), secret, scratch_dir=SCRATCH)
    assert t.repository == "gs:bkt:/"
    assert t.options == ()


def test_gcs_needs_project_and_key() -> None:
    with pytest.raises(MissingSecretKey, match="GOOGLE_SERVICE_ACCOUNT_JSON_KEY"):
        restic_target(
            backend("gcs", bucket="b"), {**PW, "GOOGLE_PROJECT_ID": b"p"}, scratch_dir="/s"
        )
    with pytest.raises(MissingSecretKey, match="GOOGLE_PROJECT_ID"):
        restic_target(backend("gcs", bucket="b"), PW, scratch_dir="/s")


def test_azure() -> None:
    secret = {**PW, "AZURE_ACCOUNT_NAME": b"acct", "AZURE_ACCOUNT_KEY": b"k3y=="}
    t = restic_target(
        backend("azure", container="c", prefix="p", maxConnections=8), secret, scratch_dir="/s"
    )
    assert t.repository == "azure:c:/p"
    assert t.env["AZURE_ACCOUNT_NAME"] == "acct" and t.env["AZURE_ACCOUNT_KEY"] == "k3y=="
    assert t.options == ("--option", "azure.connections=8")
    with pytest.raises(MissingSecretKey, match="AZURE_ACCOUNT_KEY"):
        restic_target(
            backend("azure", container="c"), {**PW, "AZURE_ACCOUNT_NAME": b"a"}, scratch_dir="/s"
        )


def test_swift_copies_the_auth_set_present() -> None:
    secret = {**PW, "ST_AUTH": b"https://auth/v1.0", "ST_USER": b"u", "ST_KEY": b"k", "X": b"y"}
    t = restic_target(backend("swift", container="c", prefix="pre"), secret, scratch_dir="/s")
    assert t.repository == "swift:c:/pre"
    assert {k: v for k, v in t.env.items() if k.startswith("ST_")} == {
        "ST_AUTH": "https://auth/v1.0",
        "ST_USER": "u",
        "ST_KEY": "k",
    }
    assert "X" not in t.env


def test_swift_without_any_auth_is_an_error() -> None:
    with pytest.raises(MissingSecretKey, match="ST_AUTH or OS_AUTH_URL or OS_STORAGE_URL"):
        restic_target(backend("swift", container="c"), PW, scratch_dir="/s")


def test_b2() -> None:
    secret = {**PW, "B2_ACCOUNT_ID": b"id", "B2_ACCOUNT_KEY": b"key"}
    t = restic_target(
        backend("b2", bucket="bk", prefix="x", maxConnections=2), secret, scratch_dir="/s"
    )
    assert t.repository == "b2:bk:/x"
    assert t.env["B2_ACCOUNT_ID"] == "id" and t.env["B2_ACCOUNT_KEY"] == "key"
    assert t.options == ("--option", "b2.connections=2")
    with pytest.raises(MissingSecretKey, match="B2_ACCOUNT_KEY"):
        restic_target(backend("b2", bucket="bk"), {**PW, "B2_ACCOUNT_ID": b"i"}, scratch_dir="/s")


def test_rest_credentials_go_into_the_url_quoted() -> None:
    secret = {**PW, "REST_SERVER_USERNAME": b"alice", "REST_SERVER_PASSWORD": b"p@ss:w/rd %"}
    t = restic_target(backend("rest", url="http://rest.local:8000/repo"), secret, scratch_dir="/s")
    assert t.repository == "rest:http://alice:p%40ss%3Aw%2Frd%20%25@rest.local:8000/repo"
    assert "p@ss" not in t.display and "p%40ss" not in t.display
    assert t.display == "rest:http://alice:***@rest.local:8000/repo"
    assert "p%40ss" not in repr(t) and "correct horse" not in repr(t)


def test_rest_replaces_userinfo_in_spec_and_leaves_url_alone_without_user() -> None:
    secret = {**PW, "REST_SERVER_USERNAME": b"bob"}
    t = restic_target(backend("rest", url="https://old:pw@h/r/"), secret, scratch_dir="/s")
    assert t.repository == "rest:https://bob@h/r/"
    plain = restic_target(backend("rest", url="http://h:1/r"), PW, scratch_dir="/s")
    assert plain.repository == "rest:http://h:1/r"


def test_rest_password_without_user_is_an_error() -> None:
    with pytest.raises(MissingSecretKey, match="REST_SERVER_USERNAME"):
        restic_target(
            backend("rest", url="http://h/r"),
            {**PW, "REST_SERVER_PASSWORD": b"x"},
            scratch_dir="/s",
        )


@pytest.mark.parametrize("url", ["ftp://h/r", "h:8000/r", ""])
def test_rest_url_must_be_http(url: str) -> None:
    with pytest.raises(InvalidBackend):
        restic_target(backend("rest", url=url), PW, scratch_dir="/s")


def test_missing_password_names_key_and_secret() -> None:
    with pytest.raises(MissingSecretKey) as info:
        restic_target(backend("local", mountPath="/r"), {}, scratch_dir="/s")
    assert info.value.key == "RESTIC_PASSWORD"
    assert 'secret "repo-secret"' in str(info.value)


def test_string_secret_data_works_like_bytes() -> None:
    t = restic_target(backend("local", mountPath="/r"), {"RESTIC_PASSWORD": "pw"}, scratch_dir="/s")
    assert t.env["RESTIC_PASSWORD"] == "pw"


def test_non_utf8_secret_value_is_rejected() -> None:
    with pytest.raises(InvalidBackend, match="RESTIC_PASSWORD"):
        restic_target(
            backend("local", mountPath="/r"), {"RESTIC_PASSWORD": b"\xff\xfe"}, scratch_dir="/s"
        )


def test_no_provider_is_an_error() -> None:
    with pytest.raises(InvalidBackend, match="no provider"):
        restic_target(Backend(storage_secret_name="s"), PW, scratch_dir="/s")


def test_negative_connections_rejected() -> None:
    with pytest.raises(InvalidBackend, match="maxConnections"):
        restic_target(
            backend("b2", bucket="b", maxConnections=-1),
            {**PW, "B2_ACCOUNT_ID": b"i", "B2_ACCOUNT_KEY": b"k"},
            scratch_dir="/s",
        )


def test_secrets_lists_values_to_scrub() -> None:
    secret = {**PW, "REST_SERVER_USERNAME": b"alice", "REST_SERVER_PASSWORD": b"hunter22"}
    t = restic_target(backend("rest", url="http://h/r"), secret, scratch_dir="/s")
    assert {"correct horse", "hunter22"} <= set(t.secrets)


def test_write_target_files_private(tmp_path: Path) -> None:
    secret = {
        **PW,
        "GOOGLE_PROJECT_ID": b"p",
        "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": b"{}",
        "CA_CERT_DATA": b"CA",
    }
    t = restic_target(backend("gcs", bucket="b"), secret, scratch_dir=tmp_path)
    written = write_target_files(t, tmp_path)
    assert len(written) == 2
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(t.env["GOOGLE_APPLICATION_CREDENTIALS"]).read_bytes() == b"{}"
    ca = t.options[t.options.index("--cacert") + 1]
    assert Path(ca).read_bytes() == b"CA"
