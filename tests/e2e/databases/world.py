"""What the database tests share: the objects a user writes (Repository on rest-server,
the database Secret, the AppBinding, BackupConfiguration, RestoreSession), running the
Job the operator creates with the pod runner, and the watchers that look for a password
where it must never be (process argument lists, logs, Events, statuses)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash.contract.resources import (
    APPBINDINGS,
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, KubeError, Resource
from stash.kube.resources import JOBS, PODS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import PASSWORD, agent_env
from tests.support.cluster import eventually
from tests.support.storage import RestServer

EVENTS = Resource("", "v1", "events", "Event")


@dataclass
class World:
    """One test's namespace with a Repository and the agent's container settings."""

    kube: Kube
    runner: PodRunner
    ns: str
    restic_bin: str
    rest: RestServer
    path_prefix: str = ""
    logs: list[str] = field(default_factory=list)

    @property
    def repo_url(self) -> str:
        """The restic repository URL of the test's Repository."""
        return f"rest:{self.rest.url}/{self.ns}"

    def runtime(self) -> JSON:
        """runtimeSettings: the agent's PATH (no image here) and root (our venv is under
        /root, which the job model's default uid cannot read)."""
        env = agent_env(self.restic_bin)
        if self.path_prefix:
            env = [
                {**e, "value": f"{self.path_prefix}:{e['value']}"} if e["name"] == "PATH" else e
                for e in env
            ]
        return {"container": {"env": env}, "pod": {"securityContext": {"runAsUser": 0}}}

    async def setup(self, secret: dict[str, str], binding: JSON) -> None:
        """Repository + storage Secret, the database Secret `db-auth`, the AppBinding `db`."""
        await self.kube.create(
            SECRETS,
            {"metadata": {"name": "repo-secret"}, "stringData": {"RESTIC_PASSWORD": PASSWORD}},
            self.ns,
        )
        await self.kube.create(
            REPOSITORIES,
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "db-repo"},
                "spec": {
                    "backend": {
                        "storageSecretName": "repo-secret",
                        "rest": {"url": f"{self.rest.url}/{self.ns}"},
                    }
                },
            },
            self.ns,
        )
        await self.kube.create(
            SECRETS, {"metadata": {"name": "db-auth"}, "stringData": secret}, self.ns
        )
        await self.kube.create(
            APPBINDINGS,
            {
                "apiVersion": "appcatalog.appscode.com/v1alpha1",
                "kind": "AppBinding",
                "metadata": {"name": "db"},
                "spec": {**binding, "secret": {"name": "db-auth"}},
            },
            self.ns,
        )

    async def backup(self, task: JSON | None) -> JSON:
        """A BackupConfiguration of the AppBinding, one session, its Job run; the final
        BackupSession."""
        await self.configure_backup(task)
        return await self.another_backup()

    async def configure_backup(self, task: JSON | None) -> None:
        """The BackupConfiguration `db-backup` of the AppBinding, once Ready."""
        spec: JSON = {
            "schedule": "0 * * * *",
            "repository": {"name": "db-repo"},
            "target": {
                "ref": {
                    "apiVersion": "appcatalog.appscode.com/v1alpha1",
                    "kind": "AppBinding",
                    "name": "db",
                }
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "runtimeSettings": self.runtime(),
        }
        if task is not None:
            spec["task"] = task
        await self.kube.create(
            BACKUPCONFIGURATIONS,
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "db-backup"},
                "spec": spec,
            },
            self.ns,
        )

        async def ready() -> JSON | None:
            bc = await self.kube.get(BACKUPCONFIGURATIONS, "db-backup", self.ns)
            return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

        await eventually(ready, timeout=30, what="BackupConfiguration Ready")

    async def another_backup(self) -> JSON:
        """One more session of the test's BackupConfiguration, its Job run; the final
        BackupSession."""
        bc = await self.kube.get(BACKUPCONFIGURATIONS, "db-backup", self.ns)
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        session = await create_backup_session(
            self.kube, {**bc, "kind": "BackupConfiguration"}, when
        )
        await self.run_job(f"stash-backup-{session}-0")

        async def final() -> JSON | None:
            s = await self.kube.get(BACKUPSESSIONS, session, self.ns)
            phase = (s.get("status") or {}).get("phase")
            return s if phase in ("Succeeded", "Failed") else None

        return await eventually(final, timeout=60, what=f"BackupSession {session} final")

    async def restore(self, task: JSON | None) -> JSON:
        """A RestoreSession of the AppBinding, its Job run; the final RestoreSession."""
        spec: JSON = {
            "repository": {"name": "db-repo"},
            "target": {
                "ref": {
                    "apiVersion": "appcatalog.appscode.com/v1alpha1",
                    "kind": "AppBinding",
                    "name": "db",
                }
            },
            "runtimeSettings": self.runtime(),
        }
        if task is not None:
            spec["task"] = task
        await self.kube.create(
            RESTORESESSIONS,
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "RestoreSession",
                "metadata": {"name": "db-restore"},
                "spec": spec,
            },
            self.ns,
        )
        await self.run_job("stash-restore-db-restore-0")

        async def final() -> JSON | None:
            rs = await self.kube.get(RESTORESESSIONS, "db-restore", self.ns)
            phase = (rs.get("status") or {}).get("phase")
            return rs if phase in ("Succeeded", "Failed") else None

        return await eventually(final, timeout=60, what="RestoreSession final")

    async def run_job(self, job: str) -> None:
        """Run the Job's pod with the pod runner; keep every container's log."""

        async def created() -> bool:
            try:
                await self.kube.get(JOBS, job, self.ns)
            except KubeError:
                return False
            return True

        await eventually(created, timeout=30, what=f"Job {job}")

        async def scheduled() -> JSON | None:
            pods = (await self.kube.list(PODS, self.ns, label_selector=f"job-name={job}"))["items"]
            return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

        pod = await eventually(scheduled, timeout=60, what=f"Job {job}'s pod scheduled")
        for container in await self.runner.run_pod(pod, report_status=True):
            code = await container.wait(timeout=300)
            self.logs.append(f"== {container.container} exit {code}\n{container.logs()}")

    async def published(self) -> str:
        """Everything a user can read about this test's work: the Jobs, sessions and
        Events as JSON, and the containers' logs."""
        docs: list[Any] = []
        for res in (JOBS, PODS, BACKUPSESSIONS, RESTORESESSIONS, BACKUPCONFIGURATIONS, EVENTS):
            docs.append((await self.kube.list(res, self.ns))["items"])
        return json.dumps(docs) + "\n".join(self.logs)

    async def login_refused(self, task: JSON, wrong: str, who: str, said: str) -> str:
        """Back up with `wrong` as the Secret's password: the session is Failed saying it
        cannot log in to `who` (the server's own words `said`) and which Secret to fix;
        `wrong` is in no process's argv, Event or status; no snapshot is left. Returns
        what was published (Events and statuses) for further checks."""
        with ArgvWatch(wrong) as argv:
            done = await self.backup(task)
        assert done["status"]["phase"] == "Failed"
        (host,) = done["status"]["targets"][0]["stats"]
        assert f"cannot log in to {who} at 127.0.0.1" in host["error"], host
        assert said in host["error"], host
        assert f"Secret {self.ns}/db-auth" in host["error"], host
        assert argv.samples > 10 and argv.found == []
        published = await self.published()
        assert wrong not in published
        assert self.snapshots() == []
        return published

    def snapshots(self, url: str = "") -> list[JSON]:
        """The snapshots of the repository (`url`, default the test's), as restic lists them."""
        repo = url or self.repo_url
        env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": repo}
        out = subprocess.run(
            [self.restic_bin, "snapshots", "--json", "--no-cache"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        docs: list[JSON] = json.loads(out.stdout or "[]")
        return docs


class ArgvWatch:
    """Samples every process's argument list (/proc/*/cmdline) while it runs and keeps
    those that contain one of `needles`."""

    def __init__(self, *needles: str) -> None:
        self.needles = [n.encode() for n in needles if n]
        self.found: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    raw = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if any(n in raw for n in self.needles):
                    self.found.append(raw.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            self._stop.wait(0.02)
