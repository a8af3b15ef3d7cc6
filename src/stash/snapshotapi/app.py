"""The Snapshot API's HTTP side: who is asking, may they, and the answers.

What it is for: `make_app()` builds the aiohttp application the kube-apiserver's
aggregator proxies `repositories.stash.appscode.com/v1alpha1` to. A request counts only
when it comes over TLS with a client certificate the front-proxy CA signed (the TLS
context checks the signature, `Auth.allowed_names` the common name) and then names its
user and groups in the request headers (`X-Remote-User`, `X-Remote-Group` or the names
the apiserver publishes); each data request is authorized with a SubjectAccessReview for
that user on `snapshots` in the group. Discovery needs only the front proxy's
certificate. list iterates the namespace's Repositories (a `repository=` selector picks
them), runs `restic snapshots --no-lock` for each with its storage Secret and filters
by the `hostname=` selector; get finds one snapshot by name; delete runs
`restic forget --prune`. Local-backend repositories are refused, as upstream's
community edition does (their volume is not mounted in the operator).

Not for: TLS setup or registration (`server`).
"""

from __future__ import annotations

import base64
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from stash.api import Repository
from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Kube, KubeError, NotFound
from stash.kube.resources import SECRETS, SUBJECTACCESSREVIEWS
from stash.restic import RepositoryNotFound, Restic, ResticError, ResticOptions, restic_target
from stash.snapshotapi import objects as O

__all__ = ["Auth", "make_app"]

log = logging.getLogger(__name__)
_BASE = f"/apis/{O.GROUP}/{O.VERSION}"
_TABLE = "as=Table"


@dataclass(frozen=True)
class Auth:
    """What the apiserver published for request-header authentication."""

    allowed_names: tuple[str, ...] = ()
    user_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)


@dataclass
class _State:
    kube: Kube
    auth: Auth
    restic_binary: str
    user: dict[str, Any] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _client_cn(request: web.Request) -> str | None:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _caller(request: web.Request, auth: Auth) -> tuple[str, list[str]]:
    cn = _client_cn(request)
    if cn is None or (auth.allowed_names and cn not in auth.allowed_names):
        raise _Refused(401, "Unauthorized", "requests come through the kube-apiserver only")
    user = next((request.headers[h] for h in auth.user_headers if h in request.headers), "")
    if not user:
        raise _Refused(401, "Unauthorized", "no user in the request headers")
    groups = [g for h in auth.group_headers for g in request.headers.getall(h, [])]
    return user, groups


async def _authorize(state: _State, request: web.Request, verb: str, ns: str, name: str) -> None:
    user, groups = _caller(request, state.auth)
    attrs = {
        "group": O.GROUP,
        "version": O.VERSION,
        "resource": "snapshots",
        "verb": verb,
        "namespace": ns,
        **({"name": name} if name else {}),
    }
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attrs},
    }
    answer = await state.kube.create(SUBJECTACCESSREVIEWS, review)
    if not (answer.get("status") or {}).get("allowed"):
        raise _Refused(
            403, "Forbidden", f'user "{user}" cannot {verb} snapshots.{O.GROUP} in namespace "{ns}"'
        )


def _secret_data(secret: JSON) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


async def _with_restic(
    state: _State, repo_obj: JSON, work: Callable[[Restic], Awaitable[Any]]
) -> Any:
    ns = repo_obj["metadata"]["namespace"]
    name = repo_obj["metadata"]["name"]
    try:
        repo = Repository.model_validate(repo_obj)
    except ValidationError as exc:
        raise _Refused(400, "BadRequest", f"Repository {ns}/{name} does not parse: {exc}") from None
    backend = repo.spec.backend if repo.spec else None
    if backend is None or not backend.storage_secret_name:
        raise _Refused(400, "BadRequest", f"Repository {ns}/{name} has no storage secret")
    if backend.provider() == "local":
        raise _Refused(
            400,
            "BadRequest",
            f"Repository {ns}/{name} has a local backend, which is not mounted in the "
            "operator: use `kubectl stash snapshots`",
        )
    secret = await state.kube.get(SECRETS, backend.storage_secret_name, ns)
    scratch = Path(tempfile.mkdtemp(prefix="stash-snapshots-"))
    try:
        target = restic_target(backend, _secret_data(secret), scratch_dir=scratch)
        options = ResticOptions(
            binary=state.restic_binary,
            scratch_dir=str(scratch),
            no_cache=True,
            temp_dir=str(scratch),
            unreachable_timeout=20,
        )
        return await work(Restic(target, options))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _snapshots(state: _State, repo_obj: JSON) -> list[JSON]:
    meta = repo_obj["metadata"]

    async def listing(restic: Restic) -> list[JSON]:
        try:
            found = await restic.snapshots(no_lock=True)
        except RepositoryNotFound:
            return []  # not initialised yet: no snapshots
        return [
            O.snapshot_object(meta["name"], meta["namespace"], s, meta.get("labels")) for s in found
        ]

    result: list[JSON] = await _with_restic(state, repo_obj, listing)
    return result


async def _list(state: _State, request: web.Request, ns: str) -> list[JSON]:
    try:
        terms = O.parse_selector(request.query.get("labelSelector"))
    except ValueError as exc:
        raise _Refused(400, "BadRequest", str(exc)) from None
    wanted = {v for k, op, v in terms if k == "repository" and op == "="}
    repos, _ = await state.kube.list_all(REPOSITORIES, ns or None)
    items: list[JSON] = []
    for repo in repos:
        if wanted and repo["metadata"]["name"] not in wanted:
            continue
        if "local" in ((repo.get("spec") or {}).get("backend") or {}):
            continue  # not served here (see the module docstring)
        items += [
            o for o in await _snapshots(state, repo) if O.matches(o["metadata"]["labels"], terms)
        ]
    return items


async def _find(state: _State, ns: str, name: str) -> tuple[JSON, JSON]:
    parts = O.split_name(name)
    if parts is None:
        raise _Refused(
            400, "BadRequest", f'"{name}" is not <repository>-<first 8 characters of a snapshot ID>'
        )
    try:
        repo = await state.kube.get(REPOSITORIES, parts[0], ns)
    except NotFound:
        raise _Refused(404, "NotFound", f'snapshots.{O.GROUP} "{name}" not found') from None
    for obj in await _snapshots(state, repo):
        if obj["metadata"]["name"] == name:
            return repo, obj
    raise _Refused(404, "NotFound", f'snapshots.{O.GROUP} "{name}" not found')


def make_app(kube: Kube, auth: Auth, restic_binary: str = "restic") -> web.Application:
    """The aiohttp application serving the Snapshot API (module docstring)."""
    state = _State(kube, auth, restic_binary)
    routes = web.RouteTableDef()

    @routes.get("/apis")
    async def group_list(request: web.Request) -> web.Response:
        return web.json_response(O.api_group_list())

    @routes.get(f"/apis/{O.GROUP}")
    async def group(request: web.Request) -> web.Response:
        return web.json_response(O.api_group())

    @routes.get(_BASE)
    async def resources(request: web.Request) -> web.Response:
        return web.json_response(O.api_resource_list())

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def listing(request: web.Request) -> web.Response:
        ns = request.match_info.get("ns", "")
        await _authorize(state, request, "list", ns, "")
        items = await _list(state, request, ns)
        if _TABLE in request.headers.get("Accept", ""):
            return web.json_response(O.table(items))
        return web.json_response(
            {"kind": "SnapshotList", "apiVersion": O.API_VERSION, "metadata": {}, "items": items}
        )

    async def one(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        verb = "delete" if request.method == "DELETE" else "get"
        await _authorize(state, request, verb, ns, name)
        repo, obj = await _find(state, ns, name)
        if verb == "delete":
            uid = obj["metadata"]["uid"]
            await _with_restic(state, repo, lambda r: r.forget_snapshots([uid], prune=True))
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "group": O.GROUP, "kind": "snapshots", "uid": uid},
                }
            )
        if _TABLE in request.headers.get("Accept", ""):
            return web.json_response(O.table([obj]))
        return web.json_response(obj)

    routes.get(f"{_BASE}/snapshots")(listing)
    routes.get(f"{_BASE}/namespaces/{{ns}}/snapshots")(listing)
    routes.get(f"{_BASE}/namespaces/{{ns}}/snapshots/{{name}}")(one)
    routes.delete(f"{_BASE}/namespaces/{{ns}}/snapshots/{{name}}")(one)

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except _Refused as exc:
            return web.json_response(O.status(exc.code, exc.reason, exc.message), status=exc.code)
        except (KubeError, ResticError) as exc:
            log.warning("snapshot API %s %s: %s", request.method, request.path, exc)
            return web.json_response(O.status(500, "InternalError", str(exc)), status=500)

    app = web.Application(middlewares=[errors])
    app.add_routes(routes)
    return app
