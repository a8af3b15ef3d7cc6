"""A real Pushgateway and Prometheus for the metrics tests (Debian packages, loopback only).

What it is for: `Monitoring` — one `prometheus-pushgateway` and one `prometheus` on free
127.0.0.1 ports (each in its own process group, logs kept for failure messages).
Prometheus scrapes the Pushgateway (`honor_labels`, so pushed `job` labels stay) every
second, and the operators a test names (`scrape_operators`: the config file is rewritten
and applied with `/-/reload`, which `--web.enable-lifecycle` allows); its TSDB lives in
a temporary directory. `query()` runs a PromQL instant query. The binaries are Debian's
`prometheus` and `prometheus-pushgateway` (the Makefile's DEB_PACKAGES; STASH_PROMETHEUS
and STASH_PUSHGATEWAY override); a missing binary or a server that does not come up
raises `MonitoringUnavailable` with the reason, which fixtures turn into a failure.

Not for: the chart's alert rules (`promtool`, tests/integration/chart/).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.storage import free_port

__all__ = ["Monitoring", "MonitoringUnavailable", "binary"]

JSON = dict[str, Any]


class MonitoringUnavailable(RuntimeError):
    """A binary is missing or a server did not come up."""


def binary(name: str, env: str) -> str:
    """The executable `name` (from PATH, or the path in `env`)."""
    path = os.environ.get(env) or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise MonitoringUnavailable(
            f"{name} not found (apt-get install {name}; `make install` does, or set {env})"
        )
    return path


class _Daemon:
    """One server process in its own process group, ready when `/-/ready` answers 200."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name, self.argv, self.port, self.log = name, argv, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None:
                raise MonitoringUnavailable(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise MonitoringUnavailable(
                    f"{self.name} was not ready on {self.url} in {timeout:.0f}s: {self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            self.proc.wait()


class Monitoring:
    """A Pushgateway and a Prometheus that scrapes it (and the operators named)."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.config = base / "prometheus.yml"
        pgw_port, prom_port = free_port(), free_port()
        self.pushgateway = _Daemon(
            "prometheus-pushgateway",
            [
                binary("prometheus-pushgateway", "STASH_PUSHGATEWAY"),
                f"--web.listen-address=127.0.0.1:{pgw_port}",
            ],
            pgw_port,
            base / "pushgateway.log",
        )
        self.prometheus = _Daemon(
            "prometheus",
            [
                binary("prometheus", "STASH_PROMETHEUS"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--web.enable-lifecycle",
            ],
            prom_port,
            base / "prometheus.log",
        )
        self.operator_targets: list[str] = []
        self._write_config()

    @property
    def pushgateway_url(self) -> str:
        """Where pushes go."""
        return self.pushgateway.url

    def _write_config(self) -> None:
        jobs: list[JSON] = [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{self.pushgateway.port}"]}],
            }
        ]
        if self.operator_targets:
            jobs.append(
                {
                    "job_name": "stash-operator",
                    "static_configs": [{"targets": self.operator_targets}],
                }
            )
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": jobs,
        }
        self.config.write_text(yaml.safe_dump(config))

    def start(self) -> None:
        """Start both (the Pushgateway first); MonitoringUnavailable when one cannot."""
        self.pushgateway.start()
        try:
            self.prometheus.start()
        except MonitoringUnavailable:
            self.pushgateway.stop()
            raise

    def stop(self) -> None:
        """Stop both and reap them."""
        self.prometheus.stop()
        self.pushgateway.stop()

    async def _call(self, method: str, path: str, **params: str) -> JSON:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.request(method, f"{self.prometheus.url}{path}", params=params) as resp,
        ):
            text = await resp.text()
            if resp.status >= 300:
                raise AssertionError(f"{method} {path} -> HTTP {resp.status}: {text}")
            return json.loads(text) if text.strip().startswith("{") else {}

    async def scrape_operators(self, *ports: int) -> None:
        """Scrape these operators' /metrics (replacing the previous ones), applied with
        `/-/reload`; returns once Prometheus lists every one of them as a target."""
        self.operator_targets = [f"127.0.0.1:{p}" for p in ports]
        self._write_config()
        await self._call("POST", "/-/reload")
        want = set(self.operator_targets)
        for _ in range(100):
            targets = (await self._call("GET", "/api/v1/targets"))["data"]["activeTargets"]
            if want <= {t["labels"]["instance"] for t in targets}:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"Prometheus did not take up {want}: {self.prometheus.log_tail()}")

    async def query(self, promql: str) -> list[JSON]:
        """The result vector of an instant query (`[{metric: {...}, value: [t, "v"]}]`)."""
        body = await self._call("GET", "/api/v1/query", query=promql)
        assert body.get("status") == "success", body
        return list(body["data"]["result"])

    async def series_names(self, match: str) -> set[str]:
        """Every metric name Prometheus holds a series of for the `match` selector."""
        body = await self._call("GET", "/api/v1/series", **{"match[]": match})
        return {s["__name__"] for s in body["data"]}
