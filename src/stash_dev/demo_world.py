"""What the demo creates and checks: the objects a user writes, the sample data, how a
finished BackupSession reads, and small helpers for S3 and for comparing trees (used by
`stash_dev.demo`)."""

from __future__ import annotations

import filecmp
import random
import sys
from pathlib import Path

import aiohttp

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Resource
from stash.kube.resources import DEPLOYMENTS, PVCS, SECRETS

PASSWORD = "demo-password-not-for-production"
S3_KEY, S3_SECRET = "demo", "demo-secret-key"


def agent_env(restic_dir: Path) -> list[JSON]:
    """The env the demo's agent containers get, as the agent image's ENV would set it:
    `stash` and `restic` on PATH."""
    venv_bin = Path(sys.executable).parent
    path = f"{venv_bin}:{restic_dir}:/usr/local/bin:/usr/bin:/bin"
    return [{"name": "PATH", "value": path}]


def make_data(root: Path) -> None:
    """Write the sample data web serves (text, a name with spaces, 2 MiB of bytes)."""
    rng = random.Random(42)
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("<h1>hello from the stash demo</h1>\n")
    (root / "docs" / "notes with spaces.txt").write_text("ünïcödé and spaces survive\n")
    (root / "blob.bin").write_bytes(rng.randbytes(2 * 1024 * 1024))


def demo_objects(demo: Path, s3_endpoint: str, env: list[JSON]) -> list[tuple[Resource, JSON]]:
    """What a user writes, in creation order: Secret, Repositories, workloads, invokers."""
    return [*_storage(demo, s3_endpoint), *_workloads(), *_invokers(env)]


def _storage(demo: Path, s3_endpoint: str) -> list[tuple[Resource, JSON]]:
    return [
        (
            SECRETS,
            {
                "metadata": {"name": "demo-secret"},
                "stringData": {
                    "RESTIC_PASSWORD": PASSWORD,
                    "AWS_ACCESS_KEY_ID": S3_KEY,
                    "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                },
            },
        ),
        (
            REPOSITORIES,
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "local-repo"},
                "spec": {
                    "backend": {
                        "storageSecretName": "demo-secret",
                        "local": {
                            "hostPath": {"path": str(demo / "local-repo")},
                            "mountPath": "/safe/repo",
                        },
                    }
                },
            },
        ),
        (
            REPOSITORIES,
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "s3-repo"},
                "spec": {
                    "backend": {
                        "storageSecretName": "demo-secret",
                        "s3": {"endpoint": s3_endpoint, "bucket": "demo", "prefix": "pvc"},
                    }
                },
            },
        ),
    ]


def _workloads() -> list[tuple[Resource, JSON]]:
    app = {"app": "web"}
    return [
        (
            DEPLOYMENTS,
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": app},
                    "template": {
                        "metadata": {"labels": app},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "nginx",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                }
                            ],
                            "volumes": [{"name": "data", "emptyDir": {}}],
                        },
                    },
                },
            },
        ),
        (
            PVCS,
            {
                "metadata": {"name": "data-pvc"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ),
    ]


def _invokers(env: list[JSON]) -> list[tuple[Resource, JSON]]:
    runtime = {"container": {"env": env}, "pod": {"securityContext": {"runAsUser": 0}}}
    return [
        (
            BACKUPCONFIGURATIONS,
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "web-backup"},
                "spec": {
                    "schedule": "*/30 * * * *",
                    "repository": {"name": "local-repo"},
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "paths": ["/data"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    },
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                    "runtimeSettings": {"container": {"env": env}},
                },
            },
        ),
        (
            BACKUPCONFIGURATIONS,
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "pvc-backup"},
                "spec": {
                    "task": {"name": "pvc-backup"},
                    "schedule": "0 * * * *",
                    "repository": {"name": "s3-repo"},
                    "target": {
                        "ref": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "name": "data-pvc",
                        },
                        "paths": ["/source/data"],
                        "volumeMounts": [{"name": "data-pvc", "mountPath": "/source/data"}],
                    },
                    "retentionPolicy": {"name": "keep-last-3", "keepLast": 3, "prune": True},
                    "runtimeSettings": runtime,
                },
            },
        ),
    ]


def restore_session(env: list[JSON]) -> JSON:
    """RestoreSession web-restore: the latest snapshot of web's /data, from local-repo."""
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "web-restore"},
        "spec": {
            "repository": {"name": "local-repo"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "rules": [{"paths": ["/data"]}],
            },
            "runtimeSettings": {"container": {"env": env}},
        },
    }


def session_summary(session: JSON) -> str:
    """One line on a finished BackupSession: phase, duration, each host's snapshots."""
    status = session["status"]
    stats = status["targets"][0].get("stats") or []
    detail = "; ".join(
        f"{h['hostname']}: {h['phase']}"
        + (f" ({h.get('error')})" if h.get("error") else "")
        + "".join(
            f", snapshot {x.get('name')} of {x.get('path')} ({x.get('totalSize')})"
            for x in h.get("snapshots") or []
        )
        for h in stats
    )
    took = status.get("sessionDuration")
    return f"BackupSession {session['metadata']['name']}: {status['phase']} in {took}: {detail}"


def same_tree(a: Path, b: Path) -> bool:
    """True when the trees hold the same names and the same bytes."""
    cmp = filecmp.dircmp(a, b)

    def ok(c: filecmp.dircmp[str]) -> bool:
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        return not mismatch and not errors and all(ok(s) for s in c.subdirs.values())

    return ok(cmp)


async def s3_up(endpoint: str) -> bool:
    """True once the S3 endpoint answers HTTP."""
    try:
        async with aiohttp.ClientSession() as http, http.get(endpoint) as r:
            return r.status < 500
    except aiohttp.ClientError:
        return False


def create_bucket(endpoint: str) -> None:
    """Create the demo's bucket."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket="demo")
