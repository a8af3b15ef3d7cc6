"""Database servers for the addon tests: each started ONCE per test run on a free loopback
port (a database per test); a missing server binary fails the test with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import DatabaseUnavailable, MariaDBServer, PostgresServer
from tests.support.nosql_servers import FerretDBServer, RedisServer
from tests.support.search_servers import OpenSearchServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole run."""
    try:
        server = PostgresServer()
        server.start()
    except DatabaseUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A MariaDB server for the whole run."""
    try:
        server = MariaDBServer()
        server.start()
    except DatabaseUnavailable as exc:
        pytest.fail(f"MariaDB is needed: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A Redis server for the whole run (a database number per test)."""
    try:
        server = RedisServer()
        server.start()
    except DatabaseUnavailable as exc:
        pytest.fail(f"Redis is needed: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb() -> Iterator[FerretDBServer]:
    """A MongoDB server (FerretDB on a PostgreSQL of its own) for the whole run."""
    try:
        server = FerretDBServer()
        server.start()
    except DatabaseUnavailable as exc:
        pytest.fail(f"FerretDB is needed: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def opensearch() -> Iterator[OpenSearchServer]:
    """An OpenSearch node (behind a password-checking proxy) for the whole run (an index
    prefix per test)."""
    try:
        server = OpenSearchServer()
        server.start()
    except DatabaseUnavailable as exc:
        pytest.fail(f"OpenSearch is needed: {exc}", pytrace=False)
    yield server
    server.stop()
