"""What a restore agent reads and writes in its invoker: a RestoreSession, or its member
of a RestoreBatch (stash-api.md §1.5, §1.6).

What it is for: `RestoreInvoker`, the one place that knows where a host's restore is
recorded — `status.stats` of a RestoreSession, `status.members[i].stats` of the
RestoreBatch member whose target is the agent's (`contract.batches.
restore_member_index`) — and how the invoker reads as a RestoreSession (for a member,
`contract.batches.restore_members`: its target, rules and alias with the batch's
repository). Everything here is pure over the live object; `stash.agent.restore` does
the I/O.

Not for: restoring (`stash.agent.restore`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from stash.agent.stats import TargetKey, restore_host_entry, with_restore_host_stats
from stash.api import RestoreBatch, RestoreSession
from stash.api.batch import RestoreBatchStatus
from stash.api.restoresession import HostRestoreStats
from stash.contract import phases as P
from stash.contract.batches import restore_member_index, restore_members
from stash.contract.resources import RESTOREBATCHES, RESTORESESSIONS
from stash.kube.client import JSON, Resource

__all__ = ["RestoreInvoker"]


@dataclass(frozen=True)
class RestoreInvoker:
    """The agent's restore invoker: its kind, name and the target the agent serves."""

    kind: str
    name: str
    target: TargetKey

    @property
    def batch(self) -> bool:
        """A RestoreBatch (else a RestoreSession)."""
        return self.kind == "RestoreBatch"

    @property
    def resource(self) -> Resource:
        """Where the invoker is read and its status written."""
        return RESTOREBATCHES if self.batch else RESTORESESSIONS

    def _member(self, live: JSON) -> tuple[RestoreSession, int] | str:
        try:
            batch = RestoreBatch.model_validate(live)
        except ValidationError as exc:
            return f"RestoreBatch {self.name} does not parse: {exc.errors()[0]['msg']}"
        members = restore_members(batch)
        t = self.target
        index = restore_member_index(members, t.kind, t.name, t.namespace)
        if index is None:
            return f"RestoreBatch {self.name} has no member for {t.kind} {t.namespace}/{t.name}"
        return members[index], index

    def view(self, live: JSON) -> RestoreSession | str:
        """The invoker as a RestoreSession (a batch: this agent's member), or why not."""
        if not self.batch:
            try:
                return RestoreSession.model_validate(live)
            except ValidationError as exc:
                return f"RestoreSession {self.name} does not parse: {exc.errors()[0]['msg']}"
        found = self._member(live)
        return found if isinstance(found, str) else found[0]

    def ready(self, live: JSON) -> bool | str:
        """True once the operator initiated this agent's part (totalHosts) or it is over;
        a string when it never will be (Invalid, or no member for this target)."""
        status = live.get("status") or {}
        if status.get("phase") == "Invalid":
            problems = "; ".join(
                str(c.get("message"))
                for c in status.get("conditions") or []
                if c.get("status") == "False"
            )
            return f"{self.kind} {self.name} is Invalid: {problems}"
        if status.get("phase") in P.FINAL_RESTORE_PHASES:
            return True
        if not self.batch:
            return status.get("totalHosts") is not None
        found = self._member(live)
        if isinstance(found, str):
            return found
        members = status.get("members") or []
        index = found[1]
        return index < len(members) and members[index].get("totalHosts") is not None

    def final(self, live: JSON) -> bool:
        """The invoker's phase is final: nothing more is recorded."""
        return (live.get("status") or {}).get("phase") in P.FINAL_RESTORE_PHASES

    def entry(self, live: JSON, hostname: str) -> HostRestoreStats | None:
        """The host's recorded result, if it has one."""
        if not self.batch:
            return restore_host_entry(live, hostname)
        found = self._member(live)
        if isinstance(found, str):
            return None
        status = RestoreBatchStatus.model_validate(live.get("status") or {})
        members = status.members or []
        if found[1] >= len(members):
            return None
        return next((s for s in members[found[1]].stats or [] if s.hostname == hostname), None)

    def with_entry(self, live: JSON, host: HostRestoreStats) -> JSON | None:
        """The live status with the host's entry upserted (None: nothing to write)."""
        if not self.batch:
            return with_restore_host_stats(live, host)
        if self.final(live):
            return None
        found = self._member(live)
        status = RestoreBatchStatus.model_validate(live.get("status") or {})
        members = status.members or []
        if isinstance(found, str) or found[1] >= len(members):
            return None
        member = members[found[1]]
        member.stats = [*(s for s in member.stats or [] if s.hostname != host.hostname), host]
        member.phase = P.restore_member_phase(member)
        return status.to_wire()
