"""Who may make the operator act: the author record, and what an author must be allowed.

What it is for: the rules both the admission webhook and the operator apply so that the
operator, which holds cluster-wide powers, never acts for a user beyond what that user
may do themselves (docs/webhooks.md, "Who may make the operator act"):

* `ANN_AUTHOR` — the annotation on an invoker (BackupConfiguration, RestoreSession and
  the batches) naming the user who last changed what the operator acts on
  (`authority_view`). The mutating webhook writes it from the AdmissionRequest's
  `userInfo`; the validating webhook refuses a value naming anyone else
  (`author_problem`); the operator reads it (`Author.parse`) and asks the apiserver again
  before it binds a role to a ServiceAccount the invoker names.
* `Access` — one permission a user must hold (a SubjectAccessReview's resourceAttributes),
  and `invoker_access` / `repository_access`, the permissions an author needs for what
  their object makes the operator do: patch the workload it injects into, create pods in
  the namespace for a Job, create PVCs for a restore's claim templates, read the Secret
  whose credentials a wipe-out uses.

Not for: asking the apiserver (`stash.kube.access`) or deciding what to do with the
answer (the webhook refuses, the operator reports a condition).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stash.api import BackupBatch, BackupConfiguration, Repository, RestoreBatch, RestoreSession
from stash.api.common import RuntimeSettings
from stash.contract.workloads import WORKLOADS, execution_model
from stash.kube.access import ResourceAttributes, Subject

__all__ = [
    "AGENT_SERVICE_ACCOUNT",
    "ANN_AUTHOR",
    "Access",
    "Author",
    "Invoker",
    "author_problem",
    "authority_changed",
    "authority_view",
    "invoker_access",
    "job_service_account",
    "repository_access",
    "with_author",
]

ANN_AUTHOR = "stash.appscode.com/author"
"""Invoker annotation: the user (JSON of `Author`) who last changed what the operator acts
on. Written by the mutating webhook; any other value is refused by the validating one."""

AGENT_SERVICE_ACCOUNT = "stash-agent"
"""The ServiceAccount the operator creates for Jobs when an invoker names none."""

# Spec fields only the operator and the scheduler act on: changing them (pausing, a new
# schedule, retention) changes nobody's authority, so the author record stays.
_NOT_AUTHORITY = frozenset(
    {"schedule", "paused", "retentionPolicy", "backupHistoryLimit", "timeOut", "retryConfig"}
)


@dataclass(frozen=True)
class Author:
    """A user as the apiserver authenticated them (AdmissionRequest `userInfo`)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_user_info(cls, info: Mapping[str, Any] | None) -> Author | None:
        """The author in an AdmissionRequest's `userInfo` (None without a username)."""
        if not isinstance(info, Mapping) or not isinstance(info.get("username"), str):
            return None
        groups = info.get("groups")
        extra = info.get("extra")
        return cls(
            username=info["username"],
            uid=str(info.get("uid") or ""),
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
            extra={
                str(k): tuple(str(x) for x in v)
                for k, v in (extra.items() if isinstance(extra, Mapping) else ())
                if isinstance(v, list)
            },
        )

    @classmethod
    def parse(cls, annotations: Mapping[str, str] | None) -> Author | None:
        """The author recorded in `ANN_AUTHOR` (None: absent or not ours)."""
        text = (annotations or {}).get(ANN_AUTHOR)
        if not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        return cls.from_user_info(doc if isinstance(doc, dict) else None)

    def subject(self) -> Subject:
        """This author as a SubjectAccessReview's subject."""
        return Subject(self.username, self.uid, self.groups, self.extra)

    def annotation(self) -> str:
        """The canonical `ANN_AUTHOR` value (one spelling, so equal authors compare equal)."""
        doc: dict[str, Any] = {"username": self.username}
        if self.uid:
            doc["uid"] = self.uid
        if self.groups:
            doc["groups"] = list(self.groups)
        if self.extra:
            doc["extra"] = {k: list(v) for k, v in sorted(self.extra.items())}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def authority_view(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of an invoker's spec (wire form) that says what the operator does for its
    author: everything but schedule, pause, retention, history, timeout and retries."""
    return {k: v for k, v in (spec or {}).items() if k not in _NOT_AUTHORITY}


def authority_changed(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether a CREATE, or an UPDATE from `old`, changes the authority view."""
    if old is None:
        return True
    return authority_view(obj.get("spec")) != authority_view(old.get("spec"))


def with_author(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, requester: Author | None
) -> dict[str, Any]:
    """`obj` with `ANN_AUTHOR` as the mutating webhook leaves it: the requester when the
    authority view changed (CREATE included) — or, for an object that has no record yet
    (admitted before there was one), when its spec changed at all — else the stored
    record (or none)."""
    stored = (((old or {}).get("metadata") or {}).get("annotations") or {}).get(ANN_AUTHOR)
    unrecorded_change = old is not None and stored is None and obj.get("spec") != old.get("spec")
    value = stored
    if authority_changed(obj, old) or unrecorded_change:
        value = requester.annotation() if requester else None
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANN_AUTHOR}
    if value is not None:
        annotations[ANN_AUTHOR] = value
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {**obj, "metadata": meta}


def author_problem(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, requester: Author | None
) -> str | None:
    """Why the `ANN_AUTHOR` value of `obj` may not be stored (None: it may).

    Allowed: no record (the operator then binds nothing it would need the record for),
    the requester themselves, or — when the authority view did not change — the record
    the stored object already had.
    """
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_AUTHOR)
    if value is None:
        return None
    if requester is not None and value == requester.annotation():
        return None
    stored = ((old or {}).get("metadata") or {}).get("annotations") or {}
    if old is not None and not authority_changed(obj, old) and value == stored.get(ANN_AUTHOR):
        return None
    who = requester.username if requester else "the requesting user"
    return (
        f"is written by the admission webhook and must name the user who changed the spec "
        f'("{who}"); remove it, it is filled in for you'
    )


@dataclass(frozen=True)
class Access:
    """One permission a user must hold, as a SubjectAccessReview asks for it."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str = ""
    why: str = ""

    def attributes(self) -> ResourceAttributes:
        """This permission as a SubjectAccessReview's resourceAttributes."""
        return ResourceAttributes(self.verb, self.group, self.resource, self.namespace, self.name)

    def describe(self) -> str:
        """`patch deployments.apps "web" in namespace "demo"`."""
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        named = f' "{self.name}"' if self.name else ""
        return f'{self.verb} {res}{named} in namespace "{self.namespace}"'


@dataclass(frozen=True)
class _Unit:
    """One target of an invoker: what its access is judged on."""

    path: str
    driver: str | None
    task: str | None
    kind: str | None
    name: str | None
    namespace: str
    runtime: RuntimeSettings | None
    claim_templates: bool


Invoker = BackupConfiguration | RestoreSession | BackupBatch | RestoreBatch


def _units(invoker: Invoker) -> list[_Unit]:
    ns = str(invoker.metadata.namespace or "")
    spec = invoker.spec
    if spec is None:
        return []
    members: list[tuple[str, Any]] = [("spec", spec)]
    if isinstance(invoker, (BackupBatch, RestoreBatch)) and invoker.spec is not None:
        members = [(f"spec.members[{i}]", m) for i, m in enumerate(invoker.spec.members or [])]
    batch_runtime = getattr(spec, "runtime_settings", None)
    out = []
    for path, member in members:
        target = member.target
        ref = target.ref if target else None
        out.append(
            _Unit(
                path=path,
                driver=spec.driver,
                task=member.task.name if member.task else None,
                kind=ref.kind if ref else None,
                name=ref.name if ref else None,
                namespace=(ref.namespace if ref else None) or ns,
                runtime=member.runtime_settings or batch_runtime,
                claim_templates=bool(getattr(target, "volume_claim_templates", None)),
            )
        )
    return out


def job_service_account(runtime: RuntimeSettings | None) -> str:
    """The ServiceAccount a Job of these runtime settings runs as."""
    pod = runtime.pod if runtime else None
    return (pod.service_account_name if pod else None) or AGENT_SERVICE_ACCOUNT


def invoker_access(invoker: Invoker) -> list[tuple[str, Access]]:
    """(field path, Access) pairs the author of `invoker` must hold.

    * the agent injected into a workload: `patch` on that workload (the operator edits its
      pod template for them and binds the agent role to its ServiceAccount);
    * a Job: `create pods` in the invoker's namespace (the operator creates a pod for them
      that mounts the target and runs as the ServiceAccount the invoker names, or
      `stash-agent`) — in Kubernetes whoever may create pods may use any ServiceAccount
      of the namespace, so this is "may use that ServiceAccount";
    * a restore's `volumeClaimTemplates`: `create persistentvolumeclaims`.
    """
    ns = str(invoker.metadata.namespace or "")
    out: list[tuple[str, Access]] = []
    for unit in _units(invoker):
        model = execution_model(unit.driver, unit.task, unit.kind)
        if model == "workload" and unit.kind and unit.name:
            res = WORKLOADS[unit.kind]
            why = "the operator adds the Stash agent to its pods on your behalf"
            access = Access("patch", res.group, res.plural, unit.namespace, unit.name, why)
            out.append((f"{unit.path}.target.ref", access))
        elif model == "job":
            sa = job_service_account(unit.runtime)
            why = f'the operator creates a Job whose pod runs as ServiceAccount "{sa}"'
            where = (
                f"{unit.path}.runtimeSettings.pod.serviceAccountName"
                if sa != AGENT_SERVICE_ACCOUNT
                else f"{unit.path}.target"
            )
            out.append((where, Access("create", "", "pods", ns, "", why)))
        if unit.claim_templates:
            why = "the operator creates the claims of volumeClaimTemplates for you"
            access = Access("create", "", "persistentvolumeclaims", ns, "", why)
            out.append((f"{unit.path}.target.volumeClaimTemplates", access))
    return out


def repository_access(repo: Repository) -> list[tuple[str, Access]]:
    """(field path, Access) pairs the author of a Repository must hold: `get` on its
    storage Secret when `wipeOut` is set (the operator deletes the data with it)."""
    spec = repo.spec
    backend = spec.backend if spec else None
    if spec is None or not spec.wipe_out or backend is None or not backend.storage_secret_name:
        return []
    why = "wipeOut makes the operator delete the repository's data with its credentials"
    ns = str(repo.metadata.namespace or "")
    return [("spec.wipeOut", Access("get", "", "secrets", ns, backend.storage_secret_name, why))]
