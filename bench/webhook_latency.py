"""Latency and throughput of the mutating webhook against a bare aiohttp handler.

Both servers run over TLS (a certificate from `stash.webhook.certs`) in a child process,
one at a time, and answer the same AdmissionReview: a Deployment CREATE that a
BackupConfiguration targets, so the stash route does the full work (decode, lookup in
memory, inject, JSON patch). The baseline handler decodes the JSON and answers
`allowed: true`. A client in this process keeps 64 TLS connections open and measures:

* latency at a steady offered load (open loop, default 400 requests/s over the 64
  connections): what the apiserver sees at a realistic admission rate;
* throughput and latency with the 64 connections saturated (closed loop).

Output: `name: value baseline ratio` lines (ratio = value / baseline; each the median of
`--rounds` alternating runs). Targets: p99 at the steady load within 2x the baseline and
under 10 ms. Last, the CPU one mutation costs in process, against the same mutation with
`jsonpatch.make_patch` making the patch (target: half or less).

With `--busy-cluster N` the rounds run while a control plane and the operator run on
this machine (the realistic case): the operator reconciles N BackupConfigurations, a
tenth of them (at least one) due every minute, so sessions, Jobs and their pods come and
go during the measurement.

    .venv/bin/python bench/webhook_latency.py [--rate 400] [--seconds 5] [--requests 4000]
                                              [--rounds 3] [--busy-cluster N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from stash_dev.leaks import LeakWatch

CONNECTIONS = 64


def _review() -> dict[str, Any]:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}],
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/usr/share/nginx/html"}
                            ],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "web"}}],
                },
            },
        },
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "CREATE",
            "namespace": "demo",
            "name": "web",
            "object": deployment,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        },
    }


def _lookup() -> Any:
    from stash.api import BackupConfiguration, Repository
    from stash.webhook.lookup import StaticLookup

    bc = BackupConfiguration.model_validate(
        {
            "metadata": {"name": "web-backup", "namespace": "demo"},
            "spec": {
                "schedule": "*/5 * * * *",
                "repository": {"name": "repo"},
                "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "paths": ["/usr/share/nginx/html"],
                    "volumeMounts": [{"name": "data", "mountPath": "/usr/share/nginx/html"}],
                },
            },
        }
    )
    repo = Repository.model_validate(
        {
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {
                "backend": {"storageSecretName": "s", "gcs": {"bucket": "b", "maxConnections": 4}}
            },
        }
    )
    return StaticLookup([bc, repo])


def _stash_app() -> web.Application:
    from stash.settings import OperatorSettings
    from stash.webhook.app import make_app

    return make_app(OperatorSettings(), _lookup())


def _cpu_per_mutation(count: int) -> tuple[float, float]:
    """CPU ms of one whole mutation (decode, lookup, inject, patch, encode) in process:
    with `stash.webhook.patch.json_patch`, and with `jsonpatch.make_patch` in its place
    (the same-run baseline for the patch's share)."""
    import jsonpatch

    from stash.settings import OperatorSettings
    from stash.webhook.mutating import mutate_workload
    from stash.webhook.patch import json_patch
    from stash.webhook.review import allowed, parse_review

    body, settings, lookup = json.dumps(_review()).encode(), OperatorSettings(), _lookup()

    async def run(patch: Any) -> float:
        started = time.process_time()
        for _ in range(count):
            req = parse_review(body, "application/json")
            m = await mutate_workload(req, settings, lookup)
            json.dumps(allowed(req.uid, list(patch(m.original, m.mutated)), m.warnings))
        return (time.process_time() - started) / count * 1000

    ours = asyncio.run(run(json_patch))
    return ours, asyncio.run(run(jsonpatch.make_patch))


def _bare_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        review = json.loads(await request.read())
        uid = review["request"]["uid"]
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True},
            }
        )

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/mutate/deployments", handle)
    return app


def _serve(kind: str, cert_dir: str, ports: Any) -> None:
    """Child process: serve one app over TLS until killed; report the port."""

    async def main() -> None:
        app = _stash_app() if kind == "stash" else _bare_app()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(Path(cert_dir, "tls.crt"), Path(cert_dir, "tls.key"))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        ports.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, uid: str) -> float:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        data = await resp.json()
    elapsed = time.perf_counter() - started
    if resp.status != 200 or data["response"]["uid"] != uid or not data["response"]["allowed"]:
        raise RuntimeError(f"bad answer: {resp.status} {data}")
    return elapsed


async def _measure(
    url: str, ca_file: str, rate: float, seconds: float, requests: int
) -> dict[str, float]:
    review = _review()
    body = json.dumps(review).encode()
    uid = review["request"]["uid"]
    ctx = ssl.create_default_context(cafile=ca_file)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:
        # open all 64 TLS connections first, so handshakes are not measured
        await asyncio.gather(*(_one(session, url, body, uid) for _ in range(CONNECTIONS)))
        for _ in range(200):  # warm-up
            await _one(session, url, body, uid)

        # steady offered load: a request every 1/rate seconds, spread over the connections
        steady: list[float] = []
        interval, count = 1.0 / rate, int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(session, url, body, uid)))
        steady = list(await asyncio.gather(*tasks))

        # saturated: 64 workers back to back
        saturated: list[float] = []
        per_worker = requests // CONNECTIONS

        async def worker() -> None:
            for _ in range(per_worker):
                saturated.append(await _one(session, url, body, uid))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        wall = time.perf_counter() - t0
    return {
        "p50_ms": statistics.median(steady) * 1000,
        "p99_ms": _pct(steady, 0.99) * 1000,
        "throughput_rps": len(saturated) / wall,
        "saturated_p50_ms": statistics.median(saturated) * 1000,
        "saturated_p99_ms": _pct(saturated, 0.99) * 1000,
    }


def _run(kind: str, cert_dir: str, args: argparse.Namespace) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(kind, cert_dir, ports), daemon=True)
    proc.start()
    try:
        port = ports.get(timeout=60)
        url = f"https://127.0.0.1:{port}/mutate/deployments"
        return asyncio.run(
            _measure(url, str(Path(cert_dir, "ca.crt")), args.rate, args.seconds, args.requests)
        )
    finally:
        proc.kill()
        proc.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=400.0, help="steady load, requests/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="steady-load duration")
    parser.add_argument("--requests", type=int, default=4000, help="saturated requests")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating baseline/stash rounds (median kept)"
    )
    parser.add_argument(
        "--busy-cluster",
        type=int,
        default=0,
        metavar="N",
        help="measure with a control plane and the operator (N BackupConfigurations) running",
    )
    args = parser.parse_args()
    with LeakWatch() as watch, _busy_cluster(args.busy_cluster, watch):
        code = _bench(args)
    return watch.verdict() or code


@contextlib.contextmanager
def _busy_cluster(configs: int, leaks: LeakWatch) -> Iterator[None]:
    """A control plane and the operator on this machine, the operator reconciling
    `configs` BackupConfigurations (a tenth due every minute); nothing when 0."""
    if not configs:
        yield
        return
    from operator_scale import NS, create_configs, install_world, operator_command

    from stash.kube.client import Kube
    from stash_dev import ControlPlane

    with tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane(Path(tmp) / "cluster")
        cp.start()
        op: subprocess.Popen[bytes] | None = None
        try:

            async def world() -> None:
                kube = await Kube.connect(cp.kubeconfig)
                try:
                    await install_world(kube)
                    await create_configs(kube, configs, max(1, configs // 10))
                finally:
                    await kube.close()

            asyncio.run(world())
            env = dict(
                os.environ,
                STASH_METRICS_PORT="0",
                STASH_LEADER_ELECT="false",
                STASH_SERVE_WEBHOOK="false",
                STASH_SERVE_SNAPSHOT_API="false",
                STASH_LOG_FORMAT=os.environ.get("STASH_LOG_FORMAT", "text"),  # stderr is a pipe
            )
            op = subprocess.Popen(
                operator_command(str(cp.kubeconfig), None), env=env, stderr=subprocess.PIPE
            )
            leaks.follow("operator", op.stderr)
            time.sleep(60)  # the configs Ready and the first minute's sessions under way
            print(f"busy cluster: {configs} BackupConfigurations in namespace {NS}", flush=True)
            yield
        finally:
            if op is not None:
                op.terminate()
                op.wait(timeout=60)
            cp.stop()
            leaks.scan_logs("bench", Path(tmp))


def _bench(args: argparse.Namespace) -> int:
    from stash.webhook.certs import plan

    bundle = plan(None, ["localhost"], ["127.0.0.1"], dt.datetime.now(dt.UTC))
    with tempfile.TemporaryDirectory() as cert_dir:
        for name, pem in (
            ("tls.crt", bundle.cert),
            ("tls.key", bundle.key),
            ("ca.crt", bundle.ca_cert),
        ):
            Path(cert_dir, name).write_bytes(pem)
        # Alternate the two so a noisy neighbour on a shared machine hits both alike.
        rounds = [
            (_run("bare", cert_dir, args), _run("stash", cert_dir, args))
            for _ in range(args.rounds)
        ]
    baseline = {k: statistics.median(r[0][k] for r in rounds) for k in rounds[0][0]}
    stash = {k: statistics.median(r[1][k] for r in rounds) for k in rounds[0][1]}

    load = f"{args.rate:g} rps, {CONNECTIONS} TLS conns"
    names = {
        "p50_ms": f"mutate p50 ms ({load})",
        "p99_ms": f"mutate p99 ms ({load})",
        "throughput_rps": f"mutate throughput rps (saturated, {CONNECTIONS} TLS conns)",
        "saturated_p50_ms": "mutate p50 ms (saturated)",
        "saturated_p99_ms": "mutate p99 ms (saturated)",
    }
    for key, label in names.items():
        value, base = stash[key], baseline[key]
        print(f"{label}: {value:.2f} {base:.2f} {value / base:.2f}")
    ours, with_jsonpatch = _cpu_per_mutation(2000)
    print(
        f"mutation CPU ms (in process; baseline: jsonpatch.make_patch): "
        f"{ours:.3f} {with_jsonpatch:.3f} {ours / with_jsonpatch:.2f}"
    )
    ok = stash["p99_ms"] <= 2 * baseline["p99_ms"] and stash["p99_ms"] < 10
    print(f"target (p99 ratio <= 2 and p99 < 10 ms at {load}): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
