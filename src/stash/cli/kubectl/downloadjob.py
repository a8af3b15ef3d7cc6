"""`kubectl stash download` on a local backend: restore in a Job, copy the files here.

What it is for: a local backend is a volume only pods mount, so `download_in_job` runs
the same `download` in a short-lived Job next to it (`podjob.job_manifest`: the volume
mounted, `RESTIC_PASSWORD` from the storage Secret by reference) that restores into an
emptyDir; the container then waits. The plugin asks the container (`pods/exec`, as
`kubectl cp` does) whether the restore is done and how it ended, copies the restored
tree here as a tar stream (`tar -cf -` in the container; a progress line counts the
bytes) and unpacks it into `--destination` (members that would land outside it are
refused), then tells the container to end and deletes the Job, whatever happened. You
need RBAC to create Jobs and `pods/exec` in the Repository's namespace; the image
(`--image`) needs `sh` and `tar` (the stash image has them).

Not for: remote backends (restic restores on this machine: `download`).
"""

from __future__ import annotations

import asyncio
import tarfile
import tempfile
import time
from pathlib import Path

from stash.cli.kubectl.plugin import Plugin, PluginError, ProgressLine
from stash.cli.kubectl.podjob import container_exit_code, inner_argv, job_manifest, job_pod
from stash.kube.client import JSON
from stash.kube.podexec import PodExec, PodExecError
from stash.kube.resources import JOBS
from stash.restic import format_bytes

__all__ = ["download_in_job"]

_DIR = "/stash-download"
_FILES = f"{_DIR}/files"
# Run the download, keep its exit code, wait until the plugin fetched the files.
_SCRIPT = (
    f'"$@"; echo $? > {_DIR}/status; '
    f"while [ ! -e {_DIR}/fetched ]; do sleep 1; done; exit $(cat {_DIR}/status)"
)


def _manifest(p: Plugin, repo: JSON) -> JSON:
    argv = [*inner_argv(p.args.argv, strip=["--destination"]), f"--destination={_FILES}"]
    job = job_manifest(p, repo, argv)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    inner = [*container.pop("command"), *container.pop("args")]
    container["command"] = ["sh", "-c", _SCRIPT, "kubectl-stash-download", *inner]
    container["volumeMounts"].append({"name": "stash-download", "mountPath": _DIR})
    pod["volumes"].append({"name": "stash-download", "emptyDir": {}})
    return job


async def _restore_status(p: Plugin, exec_: PodExec, pod: str, deadline: float) -> int:
    """The inner download's exit code, once it is written."""
    while time.monotonic() < deadline:
        try:
            code, out = await exec_.run(p.namespace, pod, "stash", ["cat", f"{_DIR}/status"], 30)
        except PodExecError:
            code, out = 1, ""  # not running yet
        if code == 0 and out.strip().isdigit():
            return int(out.strip())
        await asyncio.sleep(1.0)
    raise PluginError(f"the restore in pod {pod} did not finish in --job-timeout: see its logs")


async def _fetch(p: Plugin, exec_: PodExec, pod: str, into: Path, deadline: float) -> int:
    """Copy the restored tree into `into`; the bytes received."""
    line = ProgressLine(p.err, interval=1.0)
    received = 0
    with tempfile.TemporaryDirectory(prefix="kubectl-stash-") as scratch:
        archive = Path(scratch) / "files.tar"
        with archive.open("wb") as out:

            def chunk(data: bytes) -> None:
                nonlocal received
                out.write(data)
                received += len(data)
                line.update(f"copying: {format_bytes(received)}")

            code, err = await exec_.run(
                p.namespace,
                pod,
                "stash",
                ["tar", "-C", _FILES, "-cf", "-", "."],
                max(deadline - time.monotonic(), 1.0),
                stdout=chunk,
            )
        if code != 0:
            raise PluginError(f"copying the restored files out of pod {pod} failed: {err}")
        await asyncio.to_thread(_unpack, archive, into)
    line.update(f"copied {format_bytes(received)} into {into}", final=True)
    return received


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


async def download_in_job(p: Plugin, repo: JSON) -> int:
    """Restore in a Job next to the local backend; copy the files into --destination."""
    job = _manifest(p, repo)
    name = job["metadata"]["name"]
    created = await p.kube.create(JOBS, job, p.namespace)
    p.note(f"restoring in Job {p.namespace}/{name} (the repository's volume is mounted there)")
    exec_ = PodExec(p.kube)
    pod = ""
    try:
        deadline = time.monotonic() + p.args.job_timeout
        pod = (await job_pod(p, created, deadline))["metadata"]["name"]
        status = await _restore_status(p, exec_, pod, deadline)
        if status != 0:
            raise PluginError(
                f"the restore in Job {name} failed (exit {status}): check --snapshots, "
                f"--paths and --host, or run it again with `kubectl logs job/{name}` at hand"
            )
        await _fetch(p, exec_, pod, p.args.destination, deadline)
        await exec_.run(p.namespace, pod, "stash", ["touch", f"{_DIR}/fetched"], 30)
        code = await container_exit_code(p, pod, deadline)
    finally:
        await p.kube.delete(JOBS, name, p.namespace, propagation="Background")
    if code == 0:
        p.say(f"downloaded {repo['metadata']['name']} into {p.args.destination}")
    return code
