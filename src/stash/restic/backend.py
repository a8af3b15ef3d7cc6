"""Repository backend + storage secret -> what restic needs to reach the repository.

What it is for: the pure mapping of stash-api.md §2.1-2.2 — a Repository's `Backend`
and the data of its storage Secret become a `ResticTarget`: the repository URL,
the environment restic reads (RESTIC_PASSWORD, cloud keys), extra global flags
(`--option gs.connections=N`, `--insecure-tls`, `--cacert FILE`) and files to write
(the CA certificate, the GCS service-account key) described as paths relative to a
scratch directory plus their content. `write_target_files()` is the thin I/O step.

Not for: running restic, or validating the Repository object (stash.validation does).

Decisions:
* Only the keys each backend documents are copied from the secret into the
  environment, never the whole secret: a stray `LD_PRELOAD` or `RESTIC_*` key in a
  secret must not reach the restic process.
* s3: the endpoint is used as given. restic reads `s3:host/bucket` as HTTPS and
  `s3:http://host/bucket` as plain HTTP, so an endpoint without a scheme already means
  https and adding `https://` ourselves would change nothing; trailing slashes are
  dropped so `s3:https://host//bucket` cannot happen.
* prefixes lose leading and trailing slashes; an empty prefix means the bucket root.
* REST credentials go into the URL's userinfo, percent-quoted (restic decodes them),
  and replace any userinfo already in `spec.backend.rest.url`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from stash.restic.errors import InvalidBackend, MissingSecretKey

if TYPE_CHECKING:
    from stash.api.repository import Backend

__all__ = [
    "ResticTarget",
    "SecretData",
    "TargetFile",
    "restic_target",
    "write_target_files",
]

SecretData = Mapping[str, bytes] | Mapping[str, str]
"""A Secret's data: decoded bytes (from `.data`) or strings (from `.stringData`)."""

CA_FILE = "credentials/ca.crt"
GCS_KEY_FILE = "credentials/gcs-service-account.json"

_SWIFT_KEYS = (
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "OS_AUTH_URL",
    "OS_REGION_NAME",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_TENANT_ID",
    "OS_TENANT_NAME",
    "OS_USER_DOMAIN_NAME",
    "OS_PROJECT_NAME",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_STORAGE_URL",
    "OS_AUTH_TOKEN",
)
_SWIFT_ANCHORS = ("ST_AUTH", "OS_AUTH_URL", "OS_STORAGE_URL")


@dataclass(frozen=True)
class TargetFile:
    """A file restic needs, relative to the scratch directory; secret content."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o600


@dataclass(frozen=True)
class ResticTarget:
    """Everything restic needs to reach one repository.

    `env` holds secrets and `repository` may hold REST credentials, so neither is in
    the repr; log `display` (credentials replaced by `***`) instead.
    """

    provider: str
    repository: str = field(repr=False)
    display: str
    env: Mapping[str, str] = field(repr=False)
    options: tuple[str, ...] = ()
    files: tuple[TargetFile, ...] = field(default=(), repr=False)
    secret_name: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values never to print (password, keys, REST password): `errors.redact` uses them."""

    @property
    def local_path(self) -> str | None:
        """The repository directory for a local backend, else None."""
        return self.repository if self.provider == "local" else None


class _Secret:
    """Typed access to a storage secret's data, with errors naming the secret."""

    def __init__(self, data: SecretData, name: str, provider: str) -> None:
        self._data: Mapping[str, bytes | str] = data
        self.name = name or "<storage secret>"
        self.provider = provider
        self.used: list[str] = []

    def get(self, key: str) -> str | None:
        raw = self._data.get(key)
        if raw is None:
            return None
        if isinstance(raw, bytes):
            try:
                value = raw.decode()
            except UnicodeDecodeError:
                raise InvalidBackend(
                    f'key {key} of secret "{self.name}" is not UTF-8 text'
                ) from None
        else:
            value = raw
        if "\0" in value:
            raise InvalidBackend(f'key {key} of secret "{self.name}" contains a NUL byte')
        if value:
            self.used.append(value)
        return value

    def raw(self, key: str) -> bytes | None:
        raw = self._data.get(key)
        if raw is None:
            return None
        return raw if isinstance(raw, bytes) else raw.encode()

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            raise MissingSecretKey(key, self.name, self.provider)
        return value


def _prefix(prefix: str | None) -> str:
    return (prefix or "").strip("/")


def _with_prefix(base: str, prefix: str | None) -> str:
    p = _prefix(prefix)
    return f"{base}/{p}" if p else base


def _connections(option: str, value: int | None) -> tuple[str, ...]:
    if value is None or value == 0:
        return ()
    if value < 0:
        raise InvalidBackend(f"maxConnections must not be negative, got {value}")
    return ("--option", f"{option}={value}")


def _rest_url(url: str, user: str | None, password: str | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidBackend(f"spec.backend.rest.url must be an http(s) URL, got {url!r}")
    if not user:
        return url
    host = parts.netloc.rpartition("@")[2]
    userinfo = quote(user, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _display(repository: str) -> str:
    if not repository.startswith("rest:"):
        return repository
    parts = urlsplit(repository[len("rest:") :])
    if "@" not in parts.netloc:
        return repository
    user, _, host = parts.netloc.rpartition("@")
    shown = user.split(":", 1)[0] + (":***" if ":" in user else "")
    return "rest:" + urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


@dataclass
class _Parts:
    """What a provider adds to a target while it is being built."""

    secret: _Secret
    scratch: PurePath
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    files: list[TargetFile] = field(default_factory=list)

    def copy(self, *keys: str) -> None:
        """Pass each of `keys` that the secret has on to restic's environment."""
        for key in keys:
            value = self.secret.get(key)
            if value:
                self.env[key] = value


def _local(backend: Backend, p: _Parts) -> str:
    assert backend.local is not None
    if not backend.local.mount_path:
        raise InvalidBackend("spec.backend.local.mountPath is required")
    return backend.local.mount_path


def _s3(backend: Backend, p: _Parts) -> str:
    spec, s = backend.s3, p.secret
    assert spec is not None
    if not spec.endpoint or not spec.bucket:
        raise InvalidBackend("spec.backend.s3 needs both endpoint and bucket")
    # Both keys or neither: neither lets restic use IRSA / instance credentials.
    key_id, key = s.get("AWS_ACCESS_KEY_ID"), s.get("AWS_SECRET_ACCESS_KEY")
    if key_id and not key:
        raise MissingSecretKey("AWS_SECRET_ACCESS_KEY", s.name, s.provider)
    if key and not key_id:
        raise MissingSecretKey("AWS_ACCESS_KEY_ID", s.name, s.provider)
    p.copy("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    if spec.region:
        p.env["AWS_DEFAULT_REGION"] = spec.region
    if spec.insecure_tls:
        p.options.append("--insecure-tls")
    return _with_prefix(f"s3:{spec.endpoint.rstrip('/')}/{spec.bucket}", spec.prefix)


def _gcs(backend: Backend, p: _Parts) -> str:
    gcs, s = backend.gcs, p.secret
    assert gcs is not None
    if not gcs.bucket:
        raise InvalidBackend("spec.backend.gcs.bucket is required")
    p.env["GOOGLE_PROJECT_ID"] = s.require("GOOGLE_PROJECT_ID")
    s.require("GOOGLE_SERVICE_ACCOUNT_JSON_KEY")
    p.files.append(TargetFile(GCS_KEY_FILE, s.raw("GOOGLE_SERVICE_ACCOUNT_JSON_KEY") or b""))
    p.env["GOOGLE_APPLICATION_CREDENTIALS"] = str(p.scratch / GCS_KEY_FILE)
    p.options.extend(_connections("gs.connections", gcs.max_connections))
    return f"gs:{gcs.bucket}:/{_prefix(gcs.prefix)}"


def _azure(backend: Backend, p: _Parts) -> str:
    az, s = backend.azure, p.secret
    assert az is not None
    if not az.container:
        raise InvalidBackend("spec.backend.azure.container is required")
    p.env["AZURE_ACCOUNT_NAME"] = s.require("AZURE_ACCOUNT_NAME")
    if not s.get("AZURE_ACCOUNT_SAS"):
        s.require("AZURE_ACCOUNT_KEY")
    p.copy("AZURE_ACCOUNT_KEY", "AZURE_ACCOUNT_SAS", "AZURE_ENDPOINT_SUFFIX")
    p.options.extend(_connections("azure.connections", az.max_connections))
    return f"azure:{az.container}:/{_prefix(az.prefix)}"


def _swift(backend: Backend, p: _Parts) -> str:
    sw = backend.swift
    assert sw is not None
    if not sw.container:
        raise InvalidBackend("spec.backend.swift.container is required")
    p.copy(*_SWIFT_KEYS)
    if not any(k in p.env for k in _SWIFT_ANCHORS):
        raise MissingSecretKey(" or ".join(_SWIFT_ANCHORS), p.secret.name, p.secret.provider)
    return f"swift:{sw.container}:/{_prefix(sw.prefix)}"


def _b2(backend: Backend, p: _Parts) -> str:
    b2, s = backend.b2, p.secret
    assert b2 is not None
    if not b2.bucket:
        raise InvalidBackend("spec.backend.b2.bucket is required")
    p.env["B2_ACCOUNT_ID"] = s.require("B2_ACCOUNT_ID")
    p.env["B2_ACCOUNT_KEY"] = s.require("B2_ACCOUNT_KEY")
    p.options.extend(_connections("b2.connections", b2.max_connections))
    return f"b2:{b2.bucket}:/{_prefix(b2.prefix)}"


def _rest(backend: Backend, p: _Parts) -> str:
    rest, s = backend.rest, p.secret
    assert rest is not None
    if not rest.url:
        raise InvalidBackend("spec.backend.rest.url is required")
    user, password = s.get("REST_SERVER_USERNAME"), s.get("REST_SERVER_PASSWORD")
    if password and not user:
        raise MissingSecretKey("REST_SERVER_USERNAME", s.name, s.provider)
    return "rest:" + _rest_url(rest.url, user, password)


_PROVIDERS: dict[str, Callable[[Backend, _Parts], str]] = {
    "local": _local,
    "s3": _s3,
    "gcs": _gcs,
    "azure": _azure,
    "swift": _swift,
    "b2": _b2,
    "rest": _rest,
}


def restic_target(
    backend: Backend,
    secret: SecretData,
    *,
    scratch_dir: str | PurePath,
    secret_name: str | None = None,
) -> ResticTarget:
    """Build the `ResticTarget` for `backend` with the storage secret's `secret` data.

    `scratch_dir` is where `write_target_files` will put the target's files; paths in
    flags and env point there. `secret_name` (default `backend.storage_secret_name`)
    only names the secret in errors. Raises `MissingSecretKey` for a required key the
    secret lacks and `InvalidBackend` for a spec restic cannot use.
    """
    provider = backend.provider()
    if not provider:
        raise InvalidBackend("spec.backend sets no provider (local, s3, gcs, ...)")
    build = _PROVIDERS.get(provider)
    if build is None:  # pragma: no cover - provider() returned a name we do not know
        raise InvalidBackend(f"unsupported backend provider {provider!r}")
    name = secret_name if secret_name is not None else (backend.storage_secret_name or "")
    parts = _Parts(_Secret(secret, name, provider), PurePath(scratch_dir))
    parts.env["RESTIC_PASSWORD"] = parts.secret.require("RESTIC_PASSWORD")
    repository = build(backend, parts)
    if provider != "local":
        ca = parts.secret.raw("CA_CERT_DATA")
        if ca:
            parts.files.append(TargetFile(CA_FILE, ca))
            parts.options.extend(("--cacert", str(parts.scratch / CA_FILE)))
    parts.env["RESTIC_REPOSITORY"] = repository
    return ResticTarget(
        provider=provider,
        repository=repository,
        display=_display(repository),
        env=parts.env,
        options=tuple(parts.options),
        files=tuple(parts.files),
        secret_name=name,
        secrets=tuple(dict.fromkeys(parts.secret.used)),
    )


def write_target_files(target: ResticTarget, scratch_dir: str | PurePath) -> list[Path]:
    """Write the target's files under `scratch_dir` (mode 0600, dirs 0700); return paths."""
    written: list[Path] = []
    for f in target.files:
        path = Path(scratch_dir) / f.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(f.content)
        os.chmod(path, f.mode)
        written.append(path)
    return written
