"""Fixtures for restic tests on real storage: local dirs, S3 (moto_server), rest-server.

Servers start once per test run on 127.0.0.1 with free ports; each test gets a fresh
repository location. `storage` is parametrized over every kind, so a test that takes
it runs on all of them. A server or binary that cannot be had fails the test with the
reason; nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stash.restic import Restic, ResticOptions
from tests.support.restic_tools import ToolMissing, rest_server_binary, restic_binary
from tests.support.storage import (
    KINDS,
    MotoServer,
    RestServer,
    Storage,
    StorageUnavailable,
    make_storage,
)

MakeRestic = Callable[..., Restic]


@pytest.fixture(scope="session")
def restic_bin() -> str:
    """The restic binary (built by tests/tools/build.sh unless STASH_RESTIC is set)."""
    try:
        return restic_binary()
    except ToolMissing as exc:
        pytest.fail(f"restic is needed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def rest_server_bin() -> str:
    """restic's rest-server binary (tests/tools/build.sh unless STASH_REST_SERVER is set)."""
    try:
        return rest_server_binary()
    except ToolMissing as exc:
        pytest.fail(f"rest-server is needed: {exc}", pytrace=False)


def _started(server: MotoServer | RestServer) -> None:
    try:
        server.start()
    except StorageUnavailable as exc:
        pytest.fail(f"{server.name} could not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """An S3 endpoint (moto_server) for the whole run."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    _started(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rest_server(
    tmp_path_factory: pytest.TempPathFactory, rest_server_bin: str
) -> Iterator[RestServer]:
    """A rest-server without authentication for the whole run."""
    base = tmp_path_factory.mktemp("rest")
    server = RestServer(rest_server_bin, base / "data", base / "rest.log")
    _started(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rest_server_auth(
    tmp_path_factory: pytest.TempPathFactory, rest_server_bin: str
) -> Iterator[RestServer]:
    """A rest-server with basic auth (htpasswd) for the whole run."""
    base = tmp_path_factory.mktemp("rest-auth")
    server = RestServer(rest_server_bin, base / "data", base / "rest.log", auth=True)
    _started(server)
    yield server
    server.stop()


def storage_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh repository location of `kind`, starting its server if needed."""
    moto = request.getfixturevalue("moto") if kind == "s3" else None
    rest = None
    if kind == "rest":
        rest = request.getfixturevalue("rest_server")
    elif kind == "rest-auth":
        rest = request.getfixturevalue("rest_server_auth")
    return make_storage(kind, tmp_path, moto=moto, rest=rest)


@pytest.fixture(params=KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh repository location on each kind of storage in turn."""
    return storage_of(request.param, request, tmp_path)


@pytest.fixture
def local_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh local-directory repository (for behaviour that is the same everywhere)."""
    return storage_of("local", request, tmp_path)


@pytest.fixture
def restic_options(restic_bin: str, tmp_path: Path) -> ResticOptions:
    """Options as the agent uses them, with short waits for unreachable storage."""
    scratch = tmp_path / "scratch"
    (scratch / "tmp").mkdir(parents=True)
    return ResticOptions(
        binary=restic_bin,
        scratch_dir=str(scratch),
        cache_dir=str(scratch / "restic-cache"),
        temp_dir=str(scratch / "tmp"),
        unreachable_timeout=3.0,
        kill_grace=5.0,
    )


@pytest.fixture
def make_restic(restic_options: ResticOptions) -> MakeRestic:
    """`make_restic(storage, password=None, **option_overrides)` -> a driver."""
    from dataclasses import replace

    def make(storage: Storage, *, password: str | None = None, **overrides: object) -> Restic:
        assert restic_options.scratch_dir is not None
        target = storage.target(Path(restic_options.scratch_dir), password=password)
        return Restic(target, replace(restic_options, **overrides))  # type: ignore[arg-type]

    return make
