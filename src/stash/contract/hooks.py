"""Pure rules of hooks (stash-api.md §6.3, §6.4) shared by the agent and the operator.

What it is for: which condition records which hook (`HOOK_CONDITIONS`, global ones in
`GLOBAL_HOOK_CONDITIONS`), whether a post hook runs under its `executionPolicy`
(`post_hook_decision`), how long a hook may take (`hook_timeout`), the data a template
is rendered over (`summary_data`), the bounded output kept in a host's status
(`bounded_output`), and `HookResult`, what running one hook gave.

Not for: running hooks (`stash.hooks`) or the template language (`hooktemplate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stash.api.common import Handler, HookExecution

__all__ = [
    "DEFAULT_HOOK_TIMEOUT",
    "GLOBAL_HOOK_CONDITIONS",
    "HOOK_CONDITIONS",
    "OUTPUT_LIMIT",
    "HookName",
    "HookResult",
    "bounded_output",
    "hook_action",
    "hook_timeout",
    "post_hook_decision",
    "summary_data",
]

HookName = Literal["preBackup", "postBackup", "preRestore", "postRestore"]

#: The target (backup) or session (restore) condition that records each hook.
HOOK_CONDITIONS: dict[HookName, str] = {
    "preBackup": "PreBackupHookExecutionSucceeded",
    "postBackup": "PostBackupHookExecutionSucceeded",
    "preRestore": "PreRestoreHookExecutionSucceeded",
    "postRestore": "PostRestoreHookExecutionSucceeded",
}
#: The session (batch) condition that records each global hook.
GLOBAL_HOOK_CONDITIONS: dict[HookName, str] = {
    "preBackup": "GlobalPreBackupHookSucceeded",
    "postBackup": "GlobalPostBackupHookSucceeded",
    "preRestore": "GlobalPreRestoreHookSucceeded",
    "postRestore": "GlobalPostRestoreHookSucceeded",
}
DEFAULT_HOOK_TIMEOUT = 30.0
#: Characters of a hook's output kept in the status and its Event (the end is kept).
OUTPUT_LIMIT = 1024


@dataclass(frozen=True)
class HookResult:
    """One hook's outcome: success, a message a person can act on, its output."""

    name: HookName
    ok: bool
    message: str
    output: str = ""
    skipped: bool = False

    def execution(self) -> HookExecution:
        """The entry recorded in the host's `hooks`."""
        phase: Literal["Succeeded", "Failed", "Skipped"] = (
            "Skipped" if self.skipped else "Succeeded" if self.ok else "Failed"
        )
        return HookExecution(
            name=self.name,
            phase=phase,
            message=self.message,
            output=bounded_output(self.output) or None,
        )


def bounded_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """`text` stripped, at most `limit` characters: the end is kept, a marker says so."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "[…] " + text[-(limit - 4) :]


def hook_action(handler: Handler) -> str:
    """`httpGet`, `httpPost`, `tcpSocket` or `exec`: what the hook does (for messages)."""
    if handler.http_get is not None:
        return "httpGet"
    if handler.http_post is not None:
        return "httpPost"
    if handler.tcp_socket is not None:
        return "tcpSocket"
    return "exec"


def hook_timeout(handler: Handler) -> float:
    """The hook's `timeoutSeconds`, else `DEFAULT_HOOK_TIMEOUT`."""
    if handler.timeout_seconds is not None and handler.timeout_seconds > 0:
        return float(handler.timeout_seconds)
    return DEFAULT_HOOK_TIMEOUT


def post_hook_decision(
    name: HookName, policy: str | None, phase: str, retry_left: int | None
) -> str | None:
    """None when a post hook runs on a target whose summary phase is `phase`; else the
    "Skipping ..." message recorded instead (§6.3). Unset policy = Always."""
    policy = policy or "Always"
    if policy == "Always":
        return None
    if policy == "OnSuccess" and phase == "Succeeded":
        return None
    if policy == "OnFailure" and phase == "Failed":
        return None
    if policy == "OnFinalRetryFailure" and phase == "Failed" and not retry_left:
        return None
    why = f"the phase is {phase}"
    if policy == "OnFinalRetryFailure" and phase == "Failed":
        why = f"{retry_left} retry(ies) left"
    return f"Skipping executing {name} hook: executionPolicy is {policy} and {why}"


def summary_data(
    *,
    name: str,
    namespace: str,
    invoker: tuple[str, str, str],
    target: tuple[str, str, str, str],
    phase: str,
    duration: str = "",
    error: str = "",
    hosts: Sequence[Any] = (),
    retry_left: int = 0,
) -> dict[str, Any]:
    """The data of §6.4 a template sees: `.Name .Namespace .Invoker.{APIGroup,Kind,Name}
    .Target.{APIVersion,Kind,Name,Namespace} .Status.{Phase,Duration,Error} .Hosts
    .RetryLeft` (strings empty, never missing, as upstream's struct)."""
    group, kind, inv_name = invoker
    api_version, t_kind, t_name, t_ns = target
    return {
        "Name": name,
        "Namespace": namespace,
        "Invoker": {"APIGroup": group, "Kind": kind, "Name": inv_name},
        "Target": {"APIVersion": api_version, "Kind": t_kind, "Name": t_name, "Namespace": t_ns},
        "Status": {"Phase": phase, "Duration": duration, "Error": error},
        "Hosts": list(hosts),
        "RetryLeft": retry_left,
    }
