"""What the operator grants an agent, and what it checks before it grants anything.

What it is for: every RoleBinding and Role the operator makes for an invoker goes through
here, so the rules of docs/webhooks.md ("Who may make the operator act") and docs/rbac.md
hold in one place:

* `ensure_binding` — an agent ClusterRole bound to a ServiceAccount in its namespace;
* `agent_account` — the ServiceAccount a Job runs as: `stash-agent` (created), or the
  one `runtimeSettings.pod.serviceAccountName` names, which is bound only when the
  invoker's author record (`stash.contract.authority.ANN_AUTHOR`, written at admission)
  names a user the apiserver says may create pods in the namespace — "may use that
  ServiceAccount". No record (the webhook was down, or the object predates it) or a
  refusal: nothing is bound, the caller reports it (condition) and an Event says why;
* `grant_repository_access` / `revoke_repository_access` — for every invoker (in its own
  namespace, or in another one whose usage policy allows it): a Role in the Repository's
  namespace allowing `get` of exactly that Repository and its storage Secret (and the
  Repository's status for backups), bound to the agent's ServiceAccount; owned by the
  Repository, so it goes with it, and deleted with the invoker. The agent ClusterRoles
  hold no Secret or Repository rule, so a workload's ServiceAccount reads no other Secret.

Not for: Jobs (`provisioning`) or the agent ClusterRoles themselves (`stash.contract.rbac`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from typing import Any

from stash.api import GROUP, BackupConfiguration, Repository, RestoreSession
from stash.api.common import Handler, RuntimeSettings
from stash.contract.authority import (
    AGENT_SERVICE_ACCOUNT,
    ANN_AUTHOR,
    Access,
    Author,
    job_service_account,
)
from stash.contract.rbac import HOOK_EXEC_ROLE
from stash.contract.sessions import label_value
from stash.contract.usage import usage_refusal
from stash.controllers.context import ControllerContext
from stash.kube.access import review_access
from stash.kube.client import JSON, Conflict, KubeError
from stash.kube.events import WARNING
from stash.kube.resources import ROLEBINDINGS, ROLES, SERVICEACCOUNTS

__all__ = [
    "agent_account",
    "authorize_service_account",
    "ensure_binding",
    "grant_repository_access",
    "repository_grant",
    "revoke_repository_access",
]

#: The server-side-apply field manager of what the operator applies.
FIELD_MANAGER = "stash-operator"
_RBAC_API = "rbac.authorization.k8s.io/v1"

Invoker = BackupConfiguration | RestoreSession


async def ensure_binding(ctx: ControllerContext, ns: str, sa: str, cluster_role: str) -> None:
    """RoleBinding `<cluster_role>-<sa>` in `ns` granting `cluster_role` to ServiceAccount `sa`."""
    body = {
        "apiVersion": _RBAC_API,
        "kind": "RoleBinding",
        "metadata": {
            "name": f"{cluster_role}-{sa}"[:253],
            "labels": {"app.kubernetes.io/managed-by": GROUP},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }
    with contextlib.suppress(Conflict):
        await ctx.kube.create(ROLEBINDINGS, body, ns)


def _reference(invoker: Invoker) -> JSON:
    """Enough of the invoker for an Event about it."""
    meta = invoker.metadata
    return {
        "apiVersion": invoker.api_version,
        "kind": invoker.kind,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
    }


async def authorize_service_account(
    ctx: ControllerContext, invoker: Invoker, sa: str
) -> str | None:
    """Why the operator may not bind a role to ServiceAccount `sa` for `invoker` (None: it
    may). `stash-agent` is the operator's own; any other needs the recorded author to be
    allowed to create pods in the namespace (re-asked now, so a revoked right counts)."""
    if sa == AGENT_SERVICE_ACCOUNT:
        return None
    ns, name = str(invoker.metadata.namespace), str(invoker.metadata.name)
    where = f"{invoker.kind} {ns}/{name}"
    author = Author.parse(invoker.metadata.annotations)
    if author is None:
        return (
            f'{where} names ServiceAccount "{sa}" but has no record of who did (annotation '
            f"{ANN_AUTHOR}, written by the admission webhook): no role is bound to it; "
            "change its spec or re-create it while the webhook runs"
        )
    access = Access("create", "", "pods", ns)
    decision = await review_access(ctx.kube, author.subject(), access.attributes())
    if decision.allowed:
        return None
    return (
        f'user "{author.username}", who last changed {where}, may not {access.describe()}, '
        f'so no role is bound to ServiceAccount "{sa}" for them'
    )


async def agent_account(
    ctx: ControllerContext, invoker: Invoker, runtime: RuntimeSettings | None, role: str
) -> tuple[str, str | None]:
    """The Job's ServiceAccount and, when it may not be used, why (nothing bound then)."""
    ns = str(invoker.metadata.namespace)
    sa = job_service_account(runtime)
    problem = await authorize_service_account(ctx, invoker, sa)
    if problem is not None:
        await ctx.recorder.emit(
            _reference(invoker), WARNING, "ServiceAccountNotAuthorized", problem
        )
        return sa, problem
    if sa == AGENT_SERVICE_ACCOUNT:
        with contextlib.suppress(Conflict):
            await ctx.kube.create(SERVICEACCOUNTS, {"metadata": {"name": sa}}, ns)
    await ensure_binding(ctx, ns, sa, role)
    return sa, None


def _short(full: str) -> str:
    """`full`, shortened with a hash past 253 characters (an object name's limit)."""
    if len(full) <= 253:
        return full
    return f"{full[:240]}-{hashlib.sha256(full.encode()).hexdigest()[:12]}"


def _grant_name(invoker_kind: str, namespace: str, name: str) -> str:
    """`stash-<backup|restore>-<namespace>-<name>`: the invoker's Role."""
    verb = "restore" if invoker_kind.startswith("Restore") else "backup"
    return _short(f"stash-{verb}-{namespace}-{name}")


def _invoker_labels(invoker_kind: str, namespace: str, name: str) -> dict[str, str]:
    """Labels that find every grant object of one invoker (its Role and RoleBindings)."""
    return {
        "app.kubernetes.io/managed-by": GROUP,
        "stash.appscode.com/invoker-kind": invoker_kind,
        "stash.appscode.com/invoker-namespace": namespace,
        "stash.appscode.com/invoker-name": label_value(name),
    }


def repository_grant(
    invoker_kind: str,
    namespace: str,
    name: str,
    repository: Repository,
    sa: str,
    role_uid: str | None = None,
) -> tuple[JSON, JSON]:
    """(Role, RoleBinding) in the Repository's namespace letting ServiceAccount `sa` of
    `namespace` read that Repository and its storage Secret — nothing else — and, for a
    backup, write the Repository's status (pure). The Role is the invoker's; the
    RoleBinding is per ServiceAccount (`<role>-<sa>`), since the members of a batch may
    run as different accounts (a Job's and a workload's) and one binding's subjects are
    replaced, not merged, on apply; given the Role's uid, the binding is owned by the Role
    (deleted with it), else by the Repository."""
    repo_ns, repo_name = str(repository.metadata.namespace), str(repository.metadata.name)
    backend = repository.spec.backend if repository.spec else None
    secret = (backend.storage_secret_name if backend else None) or ""
    rules: list[JSON] = [
        {
            "apiGroups": [GROUP],
            "resources": ["repositories"],
            "resourceNames": [repo_name],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get"]},
    ]
    if not invoker_kind.startswith("Restore"):
        rules.insert(
            1,
            {
                "apiGroups": [GROUP],
                "resources": ["repositories/status"],
                "resourceNames": [repo_name],
                "verbs": ["update"],
            },
        )
    meta: JSON = {
        "name": _grant_name(invoker_kind, namespace, name),
        "namespace": repo_ns,
        "labels": _invoker_labels(invoker_kind, namespace, name),
        "ownerReferences": [
            {
                "apiVersion": repository.api_version,
                "kind": "Repository",
                "name": repo_name,
                "uid": str(repository.metadata.uid or ""),
            }
        ],
    }
    role = {"apiVersion": _RBAC_API, "kind": "Role", "metadata": dict(meta), "rules": rules}
    binding_meta = {**meta, "name": _short(f"{meta['name']}-{sa}")}
    if role_uid:
        owner = {"apiVersion": _RBAC_API, "kind": "Role", "name": meta["name"], "uid": role_uid}
        binding_meta["ownerReferences"] = [owner]
    binding = {
        "apiVersion": _RBAC_API,
        "kind": "RoleBinding",
        "metadata": binding_meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    }
    return role, binding


def uses_exec_hooks(invoker: Invoker) -> bool:
    """Whether one of the invoker's hooks runs a command in a container (`exec`)."""
    hooks = invoker.spec.hooks if invoker.spec else None
    if hooks is None:
        return False
    handlers = (getattr(hooks, field) for field in type(hooks).model_fields)
    return any(isinstance(h, Handler) and h.exec is not None for h in handlers)


async def grant_repository_access(ctx: ControllerContext, invoker: Invoker, sa: str) -> str | None:
    """Let ServiceAccount `sa` read the invoker's Repository and its storage Secret (and
    nothing else) when its usage policy allows the invoker's namespace; why not, if not.
    An invoker whose hooks exec into a container also gets `stash-hook-exec` bound to
    `sa` (the agent runs them; no other agent may exec)."""
    ns = str(invoker.metadata.namespace)
    if uses_exec_hooks(invoker):
        await ensure_binding(ctx, ns, sa, HOOK_EXEC_ROLE)
    ref = invoker.spec.repository if invoker.spec else None
    if ref is None or not ref.name:
        return None
    repository = ctx.repository(ref, ns)
    if repository is None or not repository.metadata.uid:
        return f"Repository {ref.namespace or ns}/{ref.name} was not found"
    refusal = usage_refusal(repository, ns, ctx.namespace_labels(ns))
    if refusal is not None:
        return refusal
    role, _ = repository_grant(invoker.kind, ns, str(invoker.metadata.name), repository, sa)
    try:
        applied = await ctx.kube.apply(ROLES, role, field_manager=FIELD_MANAGER, force=True)
        role_uid = str(applied["metadata"]["uid"])
        _, binding = repository_grant(
            invoker.kind, ns, str(invoker.metadata.name), repository, sa, role_uid
        )
        await ctx.kube.apply(ROLEBINDINGS, binding, field_manager=FIELD_MANAGER, force=True)
    except KubeError as exc:
        return (
            f"granting ServiceAccount {ns}/{sa} read access to Repository "
            f"{repository.metadata.namespace}/{ref.name}: {exc.message or exc}"
        )
    return None


async def revoke_repository_access(ctx: ControllerContext, obj: Mapping[str, Any]) -> None:
    """Delete the grant of an invoker (raw object) that is going away."""
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    repo = (obj.get("spec") or {}).get("repository") or {}
    repo_ns = repo.get("namespace") or ns
    if not repo.get("name"):
        return
    kind, name = str(obj.get("kind") or ""), str(meta.get("name") or "")
    # Its RoleBindings (one per ServiceAccount) are owned by the Role: the garbage
    # collector deletes them with it.
    await ctx.kube.delete(ROLES, _grant_name(kind, ns, name), repo_ns)
