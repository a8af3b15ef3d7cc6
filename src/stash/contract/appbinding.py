"""How an AppBinding target becomes a database connection for a Job (stash-api.md §9).

What it is for: the rules both sides of the job model share —

* `resolve_endpoint()`: `spec.clientConfig.url` (wins), else `clientConfig.service`
  (`<name>.<namespace>.svc:<port>`, with its `scheme`, `path` and `query`) -> `Endpoint`;
  the database is the path's first segment (`postgres://db:5432/shop` -> `shop`).
* `app_variables()`: the `TARGET_APP_TYPE|VERSION|GROUP|RESOURCE` variables a Task sees.
* `addon_task()`: the Task an AppBinding asks for in `spec.parameters.stash.addon`
  (`backupTask`/`restoreTask` `{name, params}`); an invoker's `task.name` wins and its
  `task.params` are merged over these (the operator does that).
* `connection_env()`: the env the operator gives every step of the Job — the endpoint as
  `STASH_DB_*` values and the credentials as `secretKeyRef`s into `spec.secret` (keys
  `username`/`password`, legacy `POSTGRES_USER`/`POSTGRES_PASSWORD`, or a whole DSN in
  `url`) and into `spec.tlsSecret` (`ca.crt`, `tls.crt`, `tls.key`; or
  `clientConfig.caBundle`), so a password is never in a Function, an argument list or a
  status, and the agent needs no access to Secrets; `credentials_from_env()` and
  `tls_from_env()` are the agent's side.

Not for: reading objects (the operator) or running dump tools (`stash.agent.databases`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from stash.api.appbinding import AppBinding

__all__ = [
    "ENV_HOST",
    "ENV_NAME",
    "ENV_PORT",
    "ENV_QUERY",
    "ENV_SCHEME",
    "SECRET_ENV",
    "TLS_ENV",
    "Credentials",
    "Endpoint",
    "TlsMaterial",
    "addon_task",
    "app_variables",
    "connection_env",
    "credentials_from_env",
    "resolve_endpoint",
    "tls_from_env",
]

ENV_SCHEME = "STASH_DB_SCHEME"
ENV_HOST = "STASH_DB_HOST"
ENV_PORT = "STASH_DB_PORT"
ENV_NAME = "STASH_DB_NAME"
ENV_QUERY = "STASH_DB_QUERY"
#: env variable -> the key of the AppBinding's Secret it is read from (all optional).
SECRET_ENV: dict[str, str] = {
    "STASH_DB_USERNAME": "username",
    "STASH_DB_PASSWORD": "password",
    "STASH_DB_LEGACY_USER": "POSTGRES_USER",
    "STASH_DB_LEGACY_PASSWORD": "POSTGRES_PASSWORD",
    "STASH_DB_URL": "url",
}


#: env variable -> the key of the AppBinding's `spec.tlsSecret` it is read from.
TLS_ENV: dict[str, str] = {
    "STASH_DB_TLS_CA": "ca.crt",
    "STASH_DB_TLS_CERT": "tls.crt",
    "STASH_DB_TLS_KEY": "tls.key",
}
ENV_CA_BUNDLE = "STASH_DB_CA_BUNDLE"


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """PEM texts for the client's TLS (the CA to verify the server; a client certificate)."""

    ca: str = ""
    cert: str = ""
    key: str = ""

    def __repr__(self) -> str:
        return f"TlsMaterial(ca={bool(self.ca)}, cert={bool(self.cert)}, key=<{bool(self.key)}>)"


@dataclass(frozen=True)
class Endpoint:
    """Where a database listens."""

    scheme: str
    host: str
    port: int | None
    database: str = ""
    query: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, repr=False)
class Credentials:
    """Who to log in as (the repr never shows the password)."""

    username: str = ""
    password: str = field(default="")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<{len(self.password)} chars>)"


def _split(url: str) -> tuple[Endpoint, Credentials]:
    """An endpoint (and any credentials) from a DSN such as `postgres://u:p@h:5432/db?x=y`."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ValueError(
            f"clientConfig.url {parts.scheme + '://' if parts.scheme else ''}"
            f"{parts.hostname or ''}... is not a URL with a scheme and a host "
            "(e.g. postgres://db.demo.svc:5432/shop)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"clientConfig.url has an invalid port (host {parts.hostname})") from None
    endpoint = Endpoint(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        database=unquote(parts.path.strip("/").split("/")[0]) if parts.path else "",
        query=tuple(parse_qsl(parts.query)),
    )
    creds = Credentials(unquote(parts.username or ""), unquote(parts.password or ""))
    return endpoint, creds


def resolve_endpoint(binding: AppBinding, namespace: str) -> Endpoint:
    """The endpoint of `binding` (module docstring); ValueError says what is missing.
    Credentials inside `clientConfig.url` are refused: they belong in `spec.secret`."""
    spec = binding.spec
    config = spec.client_config if spec else None
    name = f"AppBinding {namespace}/{binding.metadata.name}"
    if config is None or not (config.url or config.service):
        raise ValueError(f"{name} has no spec.clientConfig.url or spec.clientConfig.service")
    if config.url:
        endpoint, creds = _split(config.url)
        if creds.username or creds.password:
            raise ValueError(
                f"{name}: spec.clientConfig.url carries credentials; put them in the "
                "Secret named by spec.secret (keys username and password) instead"
            )
        return endpoint
    service = config.service
    assert service is not None
    if not service.name:
        raise ValueError(f"{name}: spec.clientConfig.service has no name")
    path = (service.path or "").strip("/")
    return Endpoint(
        scheme=service.scheme or "",
        host=f"{service.name}.{service.namespace or namespace}.svc",
        port=int(service.port) if service.port else None,
        database=path.split("/")[0] if path else "",
        query=tuple(parse_qsl(service.query or "")),
    )


def app_variables(binding: AppBinding) -> dict[str, str]:
    """`TARGET_APP_TYPE|VERSION|GROUP|RESOURCE` (those with a value)."""
    spec = binding.spec
    app_type = (spec.type if spec else None) or ""
    group, _, resource = app_type.rpartition("/")
    values = {
        "TARGET_APP_TYPE": app_type,
        "TARGET_APP_VERSION": (spec.version if spec else None) or "",
        "TARGET_APP_GROUP": group,
        "TARGET_APP_RESOURCE": resource,
    }
    return {k: v for k, v in values.items() if v}


def addon_task(binding: AppBinding, which: str) -> tuple[str, dict[str, str]]:
    """The `backupTask` / `restoreTask` (`which` = backup / restore) the AppBinding's
    `spec.parameters.stash.addon` names: (name or "", params)."""
    params: Any = (binding.spec.parameters if binding.spec else None) or {}
    addon = ((params.get("stash") or {}).get("addon") or {}) if isinstance(params, dict) else {}
    task = addon.get(f"{which}Task") if isinstance(addon, dict) else None
    if not isinstance(task, dict):
        return "", {}
    values = {
        str(p["name"]): str(p.get("value", ""))
        for p in task.get("params") or []
        if isinstance(p, dict) and p.get("name")
    }
    return str(task.get("name") or ""), values


def connection_env(binding: AppBinding, endpoint: Endpoint) -> list[dict[str, Any]]:
    """The env of every step container of a Job whose target is `binding`."""
    query = "&".join(f"{k}={v}" for k, v in endpoint.query)
    env: list[dict[str, Any]] = [
        {"name": ENV_SCHEME, "value": endpoint.scheme},
        {"name": ENV_HOST, "value": endpoint.host},
        {"name": ENV_PORT, "value": str(endpoint.port or "")},
        {"name": ENV_NAME, "value": endpoint.database},
        {"name": ENV_QUERY, "value": query},
    ]
    config = binding.spec.client_config if binding.spec else None
    if config is not None and config.ca_bundle:
        env.append({"name": ENV_CA_BUNDLE, "value": config.ca_bundle})
    tls = binding.spec.tls_secret if binding.spec else None
    if tls is not None and tls.name:
        env += [
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": tls.name, "key": key, "optional": True}},
            }
            for var, key in TLS_ENV.items()
        ]
    secret = binding.spec.secret if binding.spec else None
    if secret is not None and secret.name:
        env += [
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key, "optional": True}},
            }
            for var, key in SECRET_ENV.items()
        ]
    return env


def credentials_from_env(environ: Mapping[str, str]) -> tuple[Endpoint, Credentials]:
    """The agent's view of `connection_env()`: endpoint and credentials (a DSN in the
    Secret's `url` key fills in what the others leave empty)."""
    port = environ.get(ENV_PORT, "")
    endpoint = Endpoint(
        scheme=environ.get(ENV_SCHEME, ""),
        host=environ.get(ENV_HOST, ""),
        port=int(port) if port.isdigit() else None,
        database=environ.get(ENV_NAME, ""),
        query=tuple(parse_qsl(environ.get(ENV_QUERY, ""))),
    )
    creds = Credentials(
        environ.get("STASH_DB_USERNAME") or environ.get("STASH_DB_LEGACY_USER") or "",
        environ.get("STASH_DB_PASSWORD") or environ.get("STASH_DB_LEGACY_PASSWORD") or "",
    )
    dsn = environ.get("STASH_DB_URL", "")
    if dsn:
        from_url, url_creds = _split(dsn)
        endpoint = Endpoint(
            scheme=endpoint.scheme or from_url.scheme,
            host=endpoint.host or from_url.host,
            port=endpoint.port or from_url.port,
            database=endpoint.database or from_url.database,
            query=endpoint.query or from_url.query,
        )
        creds = Credentials(
            creds.username or url_creds.username, creds.password or url_creds.password
        )
    return endpoint, creds


def tls_from_env(environ: Mapping[str, str]) -> TlsMaterial:
    """The agent's view of the TLS part of `connection_env()`: `tlsSecret`'s `ca.crt`
    (else `clientConfig.caBundle`, base64 PEM), `tls.crt` and `tls.key`."""
    ca = environ.get("STASH_DB_TLS_CA", "")
    bundle = environ.get(ENV_CA_BUNDLE, "")
    if not ca and bundle:
        try:
            ca = base64.b64decode(bundle, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            ca = bundle  # already PEM
    return TlsMaterial(
        ca, environ.get("STASH_DB_TLS_CERT", ""), environ.get("STASH_DB_TLS_KEY", "")
    )
