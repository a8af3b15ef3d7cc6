"""The chaos loop: one run = a session with one fault injected at a random moment, the
fault undone, the run's invariants checked, and a clean follow-up session that must
succeed. Also the operator kill rounds the webhook probe watches.

Every random choice comes from one seeded `random.Random`, so a seed replays the same
sequence of choices (timings on a shared machine still vary).

Not for: building the world (`tests.chaos.world`) or the faults themselves.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp

from stash.contract.phases import FINAL_RESTORE_PHASES, FINAL_SESSION_PHASES
from stash.contract.resources import BACKUPSESSIONS, RESTORESESSIONS
from stash.kube.client import JSON, KubeError, Resource
from tests.chaos import invariants
from tests.chaos.faults import Cluster, Fault, catalogue, fits
from tests.chaos.jobworld import JobWorld
from tests.chaos.report import Report
from tests.chaos.world import SessionNames, SidecarWorld, World, random_payload

#: Faults whose hit may still leave a snapshot no session reports (see
#: `Chaos._judge_phantoms`): an agent killed in the moment between restic writing a
#: snapshot and the agent recording it on the heartbeat (the next executor backs the
#: path up again), and a restic killed at its very end when the agent then cannot list
#: the session's tagged snapshot to name it. Fixed since the first full run (#11): a
#: killed update-status names its host's recorded snapshots, an apiserver restart no
#: longer fails a live executor, and a sidecar whose report failed reports the same
#: backup again; so an apiserver restart is no excuse for an orphan any more.
KNOWN_ORPHAN_FAULTS = frozenset({"kill-agent", "kill-restic"})


class Chaos:
    """Runs faulted sessions against the worlds and fills the report."""

    def __init__(
        self,
        cluster: Cluster,
        worlds: list[World],
        report: Report,
        session_timeout: float,
    ) -> None:
        self.c = cluster
        self.worlds = worlds
        self.report = report
        self.session_timeout = session_timeout
        self.names = SessionNames()
        only = os.environ.get("STASH_CHAOS_FAULTS")  # a comma-separated subset, to replay
        self.faults = [(f, w) for f, w in catalogue() if not only or f.name in only.split(",")]
        worlds_only = os.environ.get("STASH_CHAOS_WORLDS")
        self.fault_worlds = [
            w for w in worlds if not worlds_only or w.key in worlds_only.split(",")
        ]
        self._restores = 0
        self.orphans: dict[str, set[str]] = {w.key: set() for w in worlds}

    async def warm_up(self) -> None:
        """One clean backup per world before any fault (restores need a snapshot)."""
        for world in self.worlds:
            kind, name = await self._start(world, restore=False)
            session = await self._final(kind, name)
            phase = ((session or {}).get("status") or {}).get("phase")
            assert phase == "Succeeded", f"the first backup of {world.key} failed: {session}"

    # ----------------------------------------------------------------- one run
    async def run(self, index: int) -> None:
        """One faulted session, its checks and its follow-up."""
        rng = self.c.rng
        world = rng.choice(self.fault_worlds)
        restore = isinstance(world, JobWorld) and rng.random() < 0.35
        options = [(f, w) for f, w in self.faults if fits(f, world, restore)]
        if not options:  # a replay's subset may not fit a restore
            restore = False
            options = [(f, w) for f, w in self.faults if fits(f, world, restore)]
        fault = rng.choices([f for f, _ in options], weights=[w for _, w in options])[0]
        entry: dict[str, Any] = {"run": index, "world": world.key, "fault": fault.name}
        entry["operation"] = "restore" if restore else "backup"
        self.report.runs += 1
        await self._healthy()
        started = time.monotonic()
        hit = False
        session: JSON | None = None
        try:
            await fault.prepare(self.c, world)
            kind, name = await self._start(world, restore)
            entry["session"] = name
            await self._sleep_or_final(kind, name, rng.uniform(0.0, fault.window))
            hit = await fault.inject(self.c, world)
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            await fault.recover(self.c, world)
            session = await self._final(kind, name)
        finally:
            settle = await fault.settle(self.c, world, session)
        entry["hit"] = hit
        (self.report.injections if hit else self.report.misses)[fault.name] += 1
        phase = str((session or {}).get("status", {}).get("phase")) if session else "stuck"
        self.report.outcomes[phase] += 1
        entry["phase"] = phase
        entry["status"] = _brief(session)
        problems = list(settle)
        problems += await self._fault_checks(fault, world, session)
        problems += await self._follow_up(world, restore, entry)
        entry["seconds"] = round(time.monotonic() - started, 1)
        entry["violations"] = problems
        self.report.violations += [
            f"run {index} ({fault.name}, {world.key}): {p}" for p in problems
        ]
        self.report.log.append(entry)

    async def _fault_checks(self, fault: Fault, world: World, session: JSON | None) -> list[str]:
        problems = []
        if session is None:
            problems.append("stuck: the faulted session never became final")
        elif isinstance(world, JobWorld) and session.get("kind") == "RestoreSession":
            problems += await invariants.restore_gave_back(self.c.kube, world, session)
        return problems

    async def _follow_up(self, world: World, restore: bool, entry: dict[str, Any]) -> list[str]:
        """The next session must succeed; then the repository must be sound."""
        await self._healthy()
        kind, name = await self._start(world, restore)
        session = await self._final(kind, name)
        phase = str((session or {}).get("status", {}).get("phase")) if session else "stuck"
        self.report.follow_ups[phase] += 1
        entry["follow_up"] = {"session": name, "phase": phase, "status": _brief(session)}
        problems = []
        if phase != "Succeeded":
            detail = (session or {}).get("status")
            problems.append(f"the next session {name} did not succeed: {phase}: {detail}")
        elif restore:
            assert isinstance(world, JobWorld) and session is not None
            problems += await invariants.restore_gave_back(self.c.kube, world, session)
        problems += await invariants.overdue_sessions(
            self.c.kube, self.c.namespace, self.session_timeout
        )
        for w in self.worlds:
            lost, phantoms = await invariants.snapshots_match_sessions(self.c.kube, w)
            problems += lost
            problems += self._judge_phantoms(w, phantoms - self.orphans[w.key], world, entry)
        problems += await invariants.repository_clean(world)
        return problems

    def _judge_phantoms(
        self, w: World, new: set[str], faulted: World, entry: dict[str, Any]
    ) -> list[str]:
        """A new snapshot no session reports. After a hit of one of KNOWN_ORPHAN_FAULTS
        it is counted and noted as a known orphan, unless STASH_CHAOS_STRICT is set
        (`make chaos`: the acceptance run of issue #11). Anything else is a violation."""
        self.orphans[w.key] |= new
        if not new:
            return []
        strict = bool(os.environ.get("STASH_CHAOS_STRICT"))
        known = entry["fault"] in KNOWN_ORPHAN_FAULTS and entry.get("hit")
        if not strict and known and w is faulted:
            self.report.orphans += len(new)
            entry["orphans"] = sorted(new)
            return []
        return [f"phantom: snapshot {sid} in {w.key} belongs to no session" for sid in sorted(new)]

    # ----------------------------------------------------------------- sessions
    async def _start(self, world: World, restore: bool) -> tuple[Resource, str]:
        if restore:
            assert isinstance(world, JobWorld)
            self._restores += 1
            return RESTORESESSIONS, await world.restore(self.c.kube, self._restores)
        if isinstance(world, SidecarWorld):
            random_payload(world)
        return BACKUPSESSIONS, await world.trigger(self.c.kube, self.names)

    async def _phase(self, kind: Resource, name: str) -> tuple[JSON | None, bool]:
        final = FINAL_RESTORE_PHASES if kind is RESTORESESSIONS else FINAL_SESSION_PHASES
        try:
            obj = await self.c.kube.get(kind, name, self.c.namespace)
        except (KubeError, OSError, aiohttp.ClientError, TimeoutError):
            return None, False
        return obj, (obj.get("status") or {}).get("phase") in final

    async def _sleep_or_final(self, kind: Resource, name: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if (await self._phase(kind, name))[1]:
                return
            await asyncio.sleep(0.2)

    async def _final(self, kind: Resource, name: str) -> JSON | None:
        """The session once final; None when it is still not final well past its deadline."""
        end = time.monotonic() + self.session_timeout + invariants.DEADLINE_GRACE + 15
        while time.monotonic() < end:
            obj, final = await self._phase(kind, name)
            if final:
                return obj
            await asyncio.sleep(0.5)
        return None

    async def _healthy(self) -> None:
        """Both operator replicas up, storage answering, every sidecar running."""
        await self.c.replicas_ready()
        if self.c.rest.proc is None or self.c.rest.proc.poll() is not None:
            await asyncio.to_thread(self.c.rest.restart)
        for w in self.worlds:
            if isinstance(w, SidecarWorld) and not w.agents():
                code = w.agent.exit_code if w.agent else None
                if code is not None and code not in (137, -9):
                    self.report.notes.append(f"sidecar of {w.key} exited {code} by itself")
                await w.restart_agent()

    # ----------------------------------------------------------------- operator rounds
    async def operator_rounds(self, rounds: int) -> None:
        """Kill the leader, a follower or both, and start them again, `rounds` times
        (the webhook probe runs meanwhile)."""
        rng = self.c.rng
        for _ in range(rounds):
            await self.c.replicas_ready()
            lead = await self.c.leader()
            choice = rng.choice(["leader", "follower", "both"])
            victims = {
                "leader": [lead] if lead else [],
                "follower": [r for r in self.c.replicas if r is not lead][:1],
                "both": list(self.c.replicas),
            }[choice]
            for v in victims:
                if v is not None:
                    v.kill()
                    self.report.injections[f"operator-round-{choice}"] += 1
            await asyncio.sleep(rng.uniform(0.5, 5.0))
            self.report.operator_kill_rounds += 1
        await self.c.replicas_ready()


def _brief(session: JSON | None) -> dict[str, Any]:
    """What the report keeps of a session: hosts' phases, errors and snapshots, and the
    conditions that are not True."""
    status = (session or {}).get("status") or {}
    hosts = [
        {k: h.get(k) for k in ("hostname", "phase", "error")}
        | {"snapshots": [s.get("name") for s in h.get("snapshots") or []]}
        for t in status.get("targets") or []
        for h in t.get("stats") or []
    ]
    hosts += [
        {k: h.get(k) for k in ("hostname", "phase", "error")} for h in status.get("stats") or []
    ]
    conditions = {
        c["type"]: f"{c.get('reason')}: {c.get('message')}"
        for c in status.get("conditions") or []
        if c.get("status") != "True"
    }
    return {"hosts": hosts, "conditions": conditions}
