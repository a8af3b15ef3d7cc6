"""The suite under pytest-xdist: one control plane shared by every worker.

What it is for: `make test` runs most tests on several xdist workers (they mostly wait
on the apiserver, restic and kubelet-run pods, so a 2-core machine keeps up). The
controller process starts the one control plane before the workers start and stops it
after the last one; each worker attaches to it (`shared_control_plane`). Tests are
handed out a file at a time (`--dist loadfile`), so a server a test file starts once per
process (a database, OpenSearch, the CSI snapshot stack, the wheel's venv) starts once
for that file. (`--dist loadgroup` would group across files, but pytest-xdist 3.8 cannot
rename node ids under pytest 9, so its groups are ignored.)

Tests marked `serial` need the cluster to themselves (they restart the apiserver,
register cluster-wide webhooks or APIServices, edit the agent ClusterRoles, run an
operator watching every namespace, or run a second CSI snapshot stack): `make test` runs
them in a phase of their own, and a worker that is handed one fails it with that
explanation instead of running it beside others.

Not for: fixtures themselves (tests/conftest.py) or the servers (tests/support/*).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from stash_dev import ControlPlane, ControlPlaneError

_KEY = "stash_control_plane"  # workerinput key: the shared control plane's state dir
_STARTED: list[ControlPlane] = []


def _controller(config: pytest.Config) -> bool:
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and not hasattr(config, "workerinput")


class _SharedControlPlane:
    """The xdist controller's plugin: hands the control plane's state dir to each worker."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def pytest_configure_node(self, node: object) -> None:
        node.workerinput[_KEY] = str(self.cp.state_dir)  # type: ignore[attr-defined]


def configure(config: pytest.Config) -> None:
    """Register the `serial` marker; in an xdist controller, start the shared control plane."""
    config.addinivalue_line(
        "markers",
        "serial: needs the test control plane to itself (make test runs it in its own phase)",
    )
    if not _controller(config) or config.option.collectonly:
        return
    cp = ControlPlane(Path(tempfile.mkdtemp(prefix="stash-cluster-")) / "state", nodes=2)
    try:
        cp.start()
    except ControlPlaneError as exc:
        raise pytest.UsageError(f"the test control plane could not start: {exc}") from exc
    _STARTED.append(cp)
    config.pluginmanager.register(_SharedControlPlane(cp), "stash-shared-control-plane")


def unconfigure(config: pytest.Config) -> None:
    """Stop the control plane the controller started (after every worker has finished)."""
    while _STARTED:
        _STARTED.pop().stop()


def shared_control_plane(config: pytest.Config) -> ControlPlane | None:
    """In an xdist worker, the controller's control plane; None when running alone."""
    inputs = getattr(config, "workerinput", None)
    if not inputs or _KEY not in inputs:
        return None
    return ControlPlane.attach(Path(inputs[_KEY]))


def refuse_serial_in_a_worker(item: pytest.Item) -> None:
    """A `serial` test handed to an xdist worker fails with what to do instead."""
    if item.get_closest_marker("serial") and hasattr(item.config, "workerinput"):
        pytest.fail(
            "this test needs the control plane to itself: run it without -n "
            "(make test runs `-m serial` in a phase of its own)",
            pytrace=False,
        )
