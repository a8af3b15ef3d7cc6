"""`kubectl stash trigger --wait | describe | debug | restore | cp | version | completion`
through the real kubectl, with the operator running where a test needs it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.cron import parse_schedule
from stash.kube.client import JSON, Kube, KubeError
from stash.kube.resources import DEPLOYMENTS, EVENTS, NAMESPACES, SECRETS
from stash.scheduler import to_apscheduler_trigger
from tests.integration.kubectl.conftest import Kubectl, World
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    create_world,
    deployment,
)
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


async def test_kubectl_finds_the_plugin_and_it_knows_its_versions(kubectl: Kubectl) -> None:
    listed = await kubectl("plugin", "list")
    assert "kubectl-stash" in listed.stdout, listed.stderr
    version = await kubectl.stash("default", "version", "-o", "json")
    assert version.returncode == 0, version.stderr
    info = json.loads(version.stdout)
    assert info["kubernetes"].startswith("v1.36.") and info["plugin"]
    script = await kubectl.stash("default", "completion", "bash")
    assert script.returncode == 0 and "complete -F _kubectl_stash kubectl-stash" in script.stdout
    checked = await asyncio.to_thread(
        subprocess.run, ["bash", "-n"], input=script.stdout, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    zsh = await kubectl.stash("default", "completion", "zsh")
    assert zsh.returncode == 0 and "bashcompinit" in zsh.stdout


async def _finish(kube: Kube, ns: str, phase: str) -> JSON:
    async def session() -> JSON | None:
        items = (await kube.list(BACKUPSESSIONS, ns))["items"]
        return items[0] if items else None

    found = await eventually(session, timeout=60, what="the triggered BackupSession")
    name = found["metadata"]["name"]
    # What the operator writes when the hosts are done (no agent runs in this test).
    await asyncio.sleep(1.5)
    status = {"phase": "Running", "targets": [{"phase": "Running", "totalHosts": 1}]}
    await kube.patch(BACKUPSESSIONS, name, {"status": status}, ns, subresource="status")
    await asyncio.sleep(2.5)
    await kube.patch(BACKUPSESSIONS, name, {"status": {"phase": phase}}, ns, subresource="status")
    return found


async def test_trigger_wait_follows_the_session_to_its_phase(
    kubectl: Kubectl, rawkube: Kube, namespace: str, stash_crds: list[str]
) -> None:
    await create_world(rawkube, namespace)
    dry = await kubectl.stash(namespace, "trigger", "bc", "--dry-run")
    assert dry.returncode == 0 and "(dry run)" in dry.stdout

    async def listed() -> tuple[list[JSON]] | None:
        try:  # just after the CRDs are (re)installed the apiserver answers 429 for a moment
            return (list((await rawkube.list(BACKUPSESSIONS, namespace))["items"]),)
        except KubeError:
            return None

    assert await eventually(listed, what="BackupSessions listed") == ([],)

    run = asyncio.create_task(kubectl.stash(namespace, "trigger", "bc", "--wait", "--timeout=90"))
    session = await _finish(rawkube, namespace, "Succeeded")
    done = await run
    name = session["metadata"]["name"]
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"BackupSession {namespace}/{name} Succeeded"
    assert f"{name}: Running, targets 0/1" in done.stderr  # the live progress line

    await rawkube.delete(BACKUPSESSIONS, name, namespace)
    run = asyncio.create_task(kubectl.stash(namespace, "trigger", "bc", "--wait", "--timeout=90"))
    await _finish(rawkube, namespace, "Failed")
    failed = await run
    assert failed.returncode == 1 and failed.stdout.strip().endswith("Failed")


async def test_describe_shows_the_cron_engines_next_three_fire_times(
    kubectl: Kubectl, rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    op = await run_operator()
    schedule = "CRON_TZ=America/New_York 15 2,14 * * 1-5"
    await create_world(rawkube, namespace, schedule=schedule)
    key = f"BackupConfiguration/{namespace}/bc"

    async def registered() -> dt.datetime | None:
        return op.engine.next_fire_time(key)

    first = await eventually(registered, what="the schedule in the cron engine")
    shown = await kubectl.stash(namespace, "describe", "bc", "bc", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    trigger = to_apscheduler_trigger(parse_schedule(schedule))
    engine_times = [first]
    for _ in range(2):
        engine_times.append(trigger.get_next_fire_time(engine_times[-1], engine_times[-1]))
    assert [dt.datetime.fromisoformat(t) for t in report["nextFireTimes"]] == engine_times
    assert report["timeZone"] == "America/New_York"
    assert all(t.endswith(("-05:00", "-04:00")) for t in report["nextFireTimes"])
    assert {c["type"] for c in report["conditions"]} >= {"RepositoryFound", "ValidationPassed"}
    assert report["repository"]["name"] == "repo"

    text = await kubectl.stash(namespace, "describe", "bc", "bc")
    assert text.returncode == 0 and "Next runs:" in text.stdout
    assert report["nextFireTimes"][0] in text.stdout


async def test_debug_reports_the_invoker_sessions_and_events(
    kubectl: Kubectl, rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)
    triggered = await kubectl.stash(namespace, "trigger", "bc")
    assert triggered.returncode == 0, triggered.stderr
    session = triggered.stdout.split()[1].split("/")[1]

    async def phase_event() -> bool:
        events = (await rawkube.list(EVENTS, namespace))["items"]
        return any(e["involvedObject"]["name"] == "bc" for e in events)

    await eventually(phase_event, what="an Event about bc")
    report = await kubectl.stash(namespace, "debug", "backup", "--backupconfig=bc", timeout=180)
    assert report.returncode == 0, report.stderr
    out = report.stdout
    assert f"===== BackupConfiguration {namespace}/bc" in out
    assert f"===== BackupSession {session}" in out
    assert "===== Events (" in out and "BackupConfiguration/bc" in out
    assert "===== operator" in out

    # a paused invoker: describe says so (no fire times); a dry run changes nothing
    dry = await kubectl.stash(namespace, "pause", "backup", "--backupconfig=bc", "--dry-run")
    assert dry.returncode == 0 and "(dry run" in dry.stdout
    assert not (await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace))["spec"].get("paused")
    paused = await kubectl.stash(namespace, "pause", "backup", "--backupconfig=bc")
    assert paused.returncode == 0, paused.stderr
    shown = await kubectl.stash(namespace, "describe", "bc", "bc", "-o", "yaml")
    assert shown.returncode == 0 and "paused: true" in shown.stdout
    assert "nextFireTimes" not in shown.stdout

    rs = await kubectl.stash(
        namespace, "restore", "rs", "--repository=repo", "--target=deployment/web"
    )
    assert rs.returncode == 0, rs.stderr
    restore = await kubectl.stash(namespace, "debug", "restore", "--restoresession=rs")
    assert restore.returncode == 0 and f"===== RestoreSession {namespace}/rs" in restore.stdout
    operator = await kubectl.stash(namespace, "debug", "operator")
    assert operator.returncode == 0 and "===== operator" in operator.stdout
    missing = await kubectl.stash(namespace, "debug", "restore", "--restoresession=nope")
    assert missing.returncode == 1 and 'no RestoreSession "nope"' in missing.stderr


async def test_restore_creates_a_restore_session_from_flags(
    kubectl: Kubectl, repo_world: World, rawkube: Kube, namespace: str
) -> None:
    [snap] = await repo_world.restic.snapshots()
    args = ["restore", "rs", "--repository=repo", "--target=deployment/web"]
    args += [f"--snapshot={snap.id}", "--volume-mount=data:/data", "--host=web-0"]
    dry = await kubectl.stash(namespace, *args, "--dry-run", "-o", "yaml")
    assert dry.returncode == 0 and "kind: RestoreSession" in dry.stdout, dry.stderr
    assert (await rawkube.list(RESTORESESSIONS, namespace))["items"] == []
    made = await kubectl.stash(namespace, *args)
    assert made.returncode == 0, made.stderr
    rs = await rawkube.get(RESTORESESSIONS, "rs", namespace)
    assert rs["spec"]["repository"] == {"name": "repo"}
    assert rs["spec"]["target"]["ref"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
    }
    assert rs["spec"]["target"]["rules"] == [{"snapshots": [snap.id], "sourceHost": "web-0"}]
    assert rs["spec"]["target"]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    again = await kubectl.stash(namespace, *args)
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.fixture
async def other_namespace(rawkube: Kube, namespace: str) -> AsyncIterator[str]:
    name = f"{namespace[:50]}-to-{uuid.uuid4().hex[:4]}"
    await rawkube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await rawkube.delete(NAMESPACES, name)


async def test_cp_makes_a_working_repository_and_backup_in_another_namespace(
    kubectl: Kubectl,
    repo_world: World,
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    other_namespace: str,
) -> None:
    await rawkube.create(
        BACKUPCONFIGURATIONS, backup_configuration(schedule="0 3 * * *"), namespace
    )
    dry = await kubectl.stash(
        namespace, "cp", "repository", "repo", f"--to-namespace={other_namespace}", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert (await rawkube.list(REPOSITORIES, other_namespace))["items"] == []
    for what in ("repository", "backupconfig"):
        done = await kubectl.stash(
            namespace,
            "cp",
            what,
            "repo" if what == "repository" else "bc",
            f"--to-namespace={other_namespace}",
        )
        assert done.returncode == 0, done.stderr
    assert (await rawkube.get(SECRETS, "repo-creds", other_namespace))["data"]
    await rawkube.create(DEPLOYMENTS, deployment(), other_namespace)
    op = await run_operator(watch_namespace=other_namespace)
    assert op is not None

    async def ready() -> bool:
        bc = await rawkube.get(BACKUPCONFIGURATIONS, "bc", other_namespace)
        return (bc.get("status") or {}).get("phase") == "Ready"

    await eventually(ready, timeout=60, what="the copied BackupConfiguration Ready")
    listed = await kubectl.stash(other_namespace, "snapshots", "repo", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [snap] = await repo_world.restic.snapshots()
    assert [i["metadata"]["uid"] for i in json.loads(listed.stdout)["items"]] == [snap.id]
    again = await kubectl.stash(
        namespace, "cp", "secret", "repo-creds", f"--to-namespace={other_namespace}"
    )
    assert again.returncode == 1 and "already exists" in again.stderr
