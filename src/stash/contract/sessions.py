"""Pure rules about sessions: names, labels, durations, deadlines, history, host counts.

Everything here is a function of its arguments (stash-api.md §1.4, §5.2, §5.4, §5.8);
the reconcilers and the cron engine call these so each rule lives in one place.

Label values are at most 63 characters while object names may be 253: every name that
becomes a label value goes through `label_value` (unchanged when it fits, else a stable
prefix and hash), and every selector on such a label is built by the same function
(`invoker_selector`, `heartbeat_selector`), so a long name selects what it labelled.
Code reads names from specs and owner references, never back from a label.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stash.api import GROUP

LABEL_INVOKER_TYPE = f"{GROUP}/invoker-type"
LABEL_INVOKER_NAME = f"{GROUP}/invoker-name"
LABEL_TARGET_KIND = f"{GROUP}/target-kind"
LABEL_TARGET_NAME = f"{GROUP}/target-name"
LABEL_TARGET_NAMESPACE = f"{GROUP}/target-namespace"
LABEL_LEGACY_BACKUP_CONFIGURATION = f"{GROUP}/backup-configuration"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
INVOKER_FINALIZER = GROUP
REPOSITORY_FINALIZER = "stash"
#: Labels of an executor's heartbeat Lease (`stash.agent.leases.Heartbeat`): its session
#: and host, as label values; the annotation holds the host name in full.
HEARTBEAT_LABEL_SESSION = f"{GROUP}/backup-session"
HEARTBEAT_LABEL_HOST = f"{GROUP}/hostname"
HEARTBEAT_HOST_ANNOTATION = f"{GROUP}/hostname"
#: Annotation of a heartbeat Lease: the snapshots its host's executors have written in
#: this session so far (a JSON list of §1.4 snapshot entries), recorded as restic
#: reports each one, long before the host's stats entry (post-backup work comes
#: first). An executor that takes the heartbeat over reuses them instead of backing
#: the path up again; a heartbeat failure names them.
HEARTBEAT_SNAPSHOTS = f"{GROUP}/snapshots"

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_LABEL = re.compile(r"[^-A-Za-z0-9_.]+")
_MAX_LABEL = 63


def label_value(text: str) -> str:
    """`text` as a valid label value: unchanged when it is one (≤63 characters of
    `[-A-Za-z0-9_.]`, alphanumeric at both ends); else its first characters (invalid
    ones replaced by `-`) and 10 hex digits of its SHA-256, 63 characters at most. The
    same text always gives the same value, and two texts sharing their first 52
    characters give two values."""
    if len(text) <= _MAX_LABEL and _LABEL_VALUE.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    head = _NOT_LABEL.sub("-", text)[: _MAX_LABEL - 11]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{digest}" if head else digest


def invoker_selector(invoker_kind: str, invoker_name: str) -> str:
    """The label selector of an invoker's sessions (the labels `session_labels` sets)."""
    return (
        f"{LABEL_INVOKER_TYPE}={label_value(invoker_kind)},"
        f"{LABEL_INVOKER_NAME}={label_value(invoker_name)}"
    )


def heartbeat_snapshots(annotations: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The snapshot entries recorded on a heartbeat Lease (HEARTBEAT_SNAPSHOTS); entries
    without a name and a path, or an unreadable annotation, are left out."""
    raw = (annotations or {}).get(HEARTBEAT_SNAPSHOTS)
    try:
        entries = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("name") and e.get("path")]


def written_note(entries: Sequence[Mapping[str, Any]], before: str = "") -> str:
    """How a failed host's error names the snapshots it wrote anyway (recorded on its
    heartbeat): `; <before>it had written snapshot <id> (<path>), ..., left in the
    repository`, or "" when there are none."""
    if not entries:
        return ""
    names = ", ".join(f"snapshot {e.get('name')} ({e.get('path')})" for e in entries)
    return f"; {before}it had written {names}, left in the repository"


def heartbeat_labels(session: str, hostname: str) -> dict[str, str]:
    """The labels of a host's heartbeat Lease in `session`."""
    return {
        HEARTBEAT_LABEL_SESSION: label_value(session),
        HEARTBEAT_LABEL_HOST: label_value(hostname),
    }


def heartbeat_selector(session: str) -> str:
    """The label selector of the heartbeat Leases of `session`."""
    return f"{HEARTBEAT_LABEL_SESSION}={label_value(session)}"


def session_name(invoker_name: str, fire_time: dt.datetime) -> str:
    """`<invoker>-<unix-seconds>` (§1.4); the same fire time always gives the same name,
    which makes a tick replayed after a leader change idempotent."""
    return f"{invoker_name}-{int(fire_time.timestamp())}"


def session_labels(
    invoker_kind: str,
    invoker_name: str,
    invoker_labels: Mapping[str, str] | None,
    target: Mapping[str, Any] | None,
    invoker_namespace: str,
) -> dict[str, str]:
    """The labels every BackupSession carries (§1.4): invoker labels first, ours win.
    Names become label values through `label_value`."""
    labels = dict(invoker_labels or {})
    labels.update(
        {
            LABEL_INVOKER_TYPE: label_value(invoker_kind),
            LABEL_INVOKER_NAME: label_value(invoker_name),
            LABEL_COMPONENT: "stash-backup",
            LABEL_MANAGED_BY: GROUP,
        }
    )
    if target:
        if target.get("kind"):
            labels[LABEL_TARGET_KIND] = label_value(str(target["kind"]))
        if target.get("name"):
            labels[LABEL_TARGET_NAME] = label_value(str(target["name"]))
        namespace = str(target.get("namespace") or invoker_namespace)
        labels[LABEL_TARGET_NAMESPACE] = label_value(namespace)
    return labels


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration string (`1m3s`, `12.3s`, `2h0m5s`), as status shows it."""
    if seconds < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    whole = round(seconds)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s"


def history_to_delete(
    sessions: Iterable[Mapping[str, Any]], limit: int, completing: str | None = None
) -> list[str]:
    """Names of sessions to delete so `limit` remain (§5.8).

    Newest first; the first `limit` stay; older ones are deleted only when final; the
    newest Succeeded/Failed session always stays unless `limit` <= 0. `completing` is
    the session whose completion triggers the cleanup: it counts as finished (it is,
    a moment later), so with limit 1 the previous result is not kept beside it.
    """
    ordered = sorted(
        sessions,
        key=lambda o: (
            str(o.get("metadata", {}).get("creationTimestamp", "")),
            str(o.get("metadata", {}).get("name", "")),
        ),
        reverse=True,
    )
    keep_last_final: str | None = None
    if limit > 0:
        for o in ordered:
            done = o["metadata"]["name"] == completing
            if done or (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                keep_last_final = o["metadata"]["name"]
                break
    out = []
    for o in ordered[max(limit, 0) :]:
        name = o["metadata"]["name"]
        phase = (o.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Skipped") and name != keep_last_final:
            out.append(name)
    return out


def total_hosts(target_kind: str, workload: Mapping[str, Any] | None) -> int:
    """How many hosts back up a target with the Restic driver (§5.4)."""
    if workload is None:
        return 1
    if target_kind == "StatefulSet":
        replicas = (workload.get("spec") or {}).get("replicas")
        return int(1 if replicas is None else replicas)
    if target_kind == "DaemonSet":
        return int((workload.get("status") or {}).get("desiredNumberScheduled") or 0)
    return 1


def hosts_observed(target_kind: str, workload: Mapping[str, Any] | None) -> bool:
    """Whether `total_hosts` can be trusted yet: a DaemonSet's host count is its
    controller's `status.desiredNumberScheduled`, absent (read as 0) until the
    controller first observed it; a restore that counted 0 hosts then would end at once
    with no host restored."""
    if target_kind != "DaemonSet" or workload is None:
        return True
    return (workload.get("status") or {}).get("observedGeneration") is not None


def new_backup_session(
    invoker: Mapping[str, Any], when: dt.datetime, retry_left: int | None = None
) -> dict[str, Any]:
    """The BackupSession a tick, a retry or `kubectl stash trigger` creates (§5.2, §5.3):
    name `<invoker>-<unix>`, the §1.4 labels, a controller ownerReference to the invoker
    and `spec.retryLeft` (= retryConfig.maxRetry for a fresh session)."""
    meta = invoker["metadata"]
    spec = invoker.get("spec") or {}
    kind = str(invoker.get("kind", "BackupConfiguration"))
    target = (spec.get("target") or {}).get("ref")
    if target is None and spec.get("members"):
        target = ((spec["members"][0] or {}).get("target") or {}).get("ref")
    if retry_left is None:
        retry_left = int((spec.get("retryConfig") or {}).get("maxRetry") or 0)
    return {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": "BackupSession",
        "metadata": {
            "name": session_name(meta["name"], when),
            "namespace": meta["namespace"],
            "labels": session_labels(
                kind, meta["name"], meta.get("labels"), target, meta["namespace"]
            ),
            "ownerReferences": [
                {
                    "apiVersion": str(invoker.get("apiVersion", f"{GROUP}/v1beta1")),
                    "kind": kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "invoker": {"apiGroup": GROUP, "kind": kind, "name": meta["name"]},
            "retryLeft": retry_left,
        },
    }
