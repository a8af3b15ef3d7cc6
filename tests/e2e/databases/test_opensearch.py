"""Elasticsearch/OpenSearch through the addon (§9) on a real server (OpenSearch 2.19,
behind a proxy that checks the password): a BackupConfiguration of an AppBinding
(`http://host:port`, user and password in its Secret) with `opensearch-backup-2.19` and
the Task param `indices=<the test's prefix>*` streams every index's settings, mapping,
aliases and documents into one restic snapshot; after the indices are deleted,
`opensearch-restore-2.19` brings back both indices with equal mappings (a custom
analyzer from the settings included), equal aliases (a filtered alias over both, a
routed one) and every document equal. A dump killed half-way is a Failed session with
no snapshot; a wrong password is a Failed session that says what to fix. The password
is in no argument list, log, Event or status. Over https:// (the URL's path naming the
index) the AppBinding's CA verifies the server, and another CA is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stash.kube.client import JSON, Kube
from stash.kube.resources import SECRETS
from stash.pki import issue_ca
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import ArgvWatch, World
from tests.support.search_servers import OpenSearchServer
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster
BOOKS, AUTHORS = 1500, 400
SETTINGS = {
    "number_of_shards": 2,
    "number_of_replicas": 0,
    "analysis": {"analyzer": {"few_stops": {"type": "standard", "stopwords": ["the", "a"]}}},
}
BOOK_MAPPING = {
    "properties": {
        "title": {
            "type": "text",
            "analyzer": "few_stops",
            "fields": {"raw": {"type": "keyword"}},
        },
        "year": {"type": "integer"},
        "published": {"type": "date", "format": "yyyy-MM-dd"},
        "author_id": {"type": "keyword"},
        "chapters": {"type": "nested", "properties": {"n": {"type": "integer"}}},
    }
}
AUTHOR_MAPPING = {
    "dynamic": "strict",
    "properties": {"name": {"type": "keyword"}, "bio": {"type": "text", "index": False}},
}


def _fill(server: OpenSearchServer, prefix: str) -> None:
    """Two indices with custom settings and mappings, their documents, three aliases."""
    books, authors = f"{prefix}books", f"{prefix}authors"
    server.request("PUT", f"/{books}", {"settings": SETTINGS, "mappings": BOOK_MAPPING})
    server.request("PUT", f"/{authors}", {"settings": {"number_of_replicas": 0}})
    server.request("PUT", f"/{authors}/_mapping", AUTHOR_MAPPING)
    for index, docs in (
        (
            books,
            (
                {
                    "title": f'The book {i} «ünïcode» "q"\nline',
                    "year": 1800 + i % 220,
                    "published": f"{1900 + i % 100}-0{1 + i % 9}-1{i % 9}",
                    "author_id": f"a{i % AUTHORS}",
                    "chapters": [{"n": j} for j in range(i % 4)],
                }
                for i in range(BOOKS)
            ),
        ),
        (authors, ({"name": f"author {i}", "bio": "b" * (i % 300)} for i in range(AUTHORS))),
    ):
        lines = []
        for i, doc in enumerate(docs):
            lines.append(json.dumps({"index": {"_index": index, "_id": f"id-{i}"}}))
            lines.append(json.dumps(doc))
        done = server.request("POST", "/_bulk?refresh=true", ndjson="\n".join(lines) + "\n")
        assert not done["errors"]
    server.request(
        "POST",
        "/_aliases",
        {
            "actions": [
                {"add": {"indices": [books, authors], "alias": f"{prefix}all"}},
                {
                    "add": {
                        "index": books,
                        "alias": f"{prefix}modern",
                        "filter": {"range": {"year": {"gte": 1900}}},
                    }
                },
                {"add": {"index": authors, "alias": f"{prefix}routed", "routing": "r1"}},
            ]
        },
    )


def _content(server: OpenSearchServer, prefix: str) -> dict[str, Any]:
    """Per index: mapping, aliases, the custom settings, every document by id."""
    out: dict[str, Any] = {}
    for name in ("books", "authors"):
        index = f"{prefix}{name}"
        settings = server.request("GET", f"/{index}/_settings")[index]["settings"]["index"]
        hits = server.request("GET", f"/{index}/_search?size=10000")["hits"]["hits"]
        out[name] = {
            "mapping": server.request("GET", f"/{index}/_mapping")[index],
            "aliases": server.request("GET", f"/{index}/_alias")[index],
            "settings": (settings["number_of_shards"], settings.get("analysis")),
            "documents": {h["_id"]: h["_source"] for h in hits},
        }
    return out


def _delete(server: OpenSearchServer, prefix: str) -> None:
    server.request("DELETE", f"/{prefix}books,{prefix}authors")
    assert server.request("GET", f"/_cat/indices/{prefix}*?format=json") == []


@pytest.fixture
def prefix(opensearch: OpenSearchServer) -> Iterator[str]:
    """This test's index prefix, its indices filled (deleted afterwards)."""
    prefix = opensearch.new_prefix()
    _fill(opensearch, prefix)
    yield prefix
    opensearch.request("DELETE", f"/{prefix}*")


def _binding(server: OpenSearchServer) -> dict[str, object]:
    return {
        "type": "kubedb.com/opensearch",
        "version": "2.19.6",
        "clientConfig": {"url": server.url},
    }


def _task(name: str, prefix: str) -> JSON:
    return {"name": name, "params": [{"name": "indices", "value": f"{prefix}*"}]}


def _world(
    kube: Kube, runner: PodRunner, ns: str, restic: str, rest: RestServer, server: OpenSearchServer
) -> World:
    world = World(kube, runner, ns, restic, rest)
    world.path_prefix = str(server.elasticdump_bin)
    return world


async def test_round_trip_keeps_settings_mappings_aliases_and_every_document(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    opensearch: OpenSearchServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = _content(opensearch, prefix)
    assert len(before["books"]["documents"]) == BOOKS
    assert len(before["authors"]["documents"]) == AUTHORS
    assert set(before["books"]["aliases"]["aliases"]) == {f"{prefix}all", f"{prefix}modern"}
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server, opensearch)
    secret = {"username": opensearch.user, "password": opensearch.password}
    await world.setup(secret, _binding(opensearch))
    with ArgvWatch(opensearch.password) as argv:
        done = await world.backup(_task("opensearch-backup-2.19", prefix))
        assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
        (host,) = done["status"]["targets"][0]["stats"]
        assert host["snapshots"][0]["path"] == "/dumpfile.ndjson"
        _delete(opensearch, prefix)
        rs = await world.restore(_task("opensearch-restore-2.19", prefix))
        assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    after = _content(opensearch, prefix)
    for name in ("books", "authors"):
        for part in ("mapping", "aliases", "settings", "documents"):
            assert after[name][part] == before[name][part], (name, part)
    assert argv.samples > 10 and argv.found == []
    assert opensearch.password not in await world.published() + caplog.text


async def test_dump_killed_mid_stream_fails_and_keeps_no_snapshot(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    opensearch: OpenSearchServer,
    prefix: str,
    tmp_path: Path,
) -> None:
    # An elasticdump that dumps settings, mappings and aliases, but is killed after the
    # first 20 kB of an index's documents.
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    tool = wrappers / "elasticdump"
    real = opensearch.elasticdump_bin / "elasticdump"
    tool.write_text(
        f'#!/bin/sh\ncase " $* " in *" --type=data "*) ;; *) exec {real} "$@";; esac\n'
        f'{real} "$@" | head -c 20000\nkill -9 $$\n'
    )
    tool.chmod(0o755)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server, opensearch)
    world.path_prefix = f"{wrappers}:{world.path_prefix}"
    secret = {"username": opensearch.user, "password": opensearch.password}
    await world.setup(secret, _binding(opensearch))
    done = await world.backup(_task("opensearch-backup-2.19", prefix))
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["targets"][0]["stats"]
    assert "elasticdump did not complete" in host["error"], host
    assert f"--type=data of index '{prefix}authors' was killed (SIGKILL)" in host["error"], host
    assert world.snapshots() == []


async def test_wrong_password_fails_with_what_to_fix_and_leaks_nowhere(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    opensearch: OpenSearchServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-pa55word-" + namespace[-6:]
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server, opensearch)
    await world.setup({"username": opensearch.user, "password": wrong}, _binding(opensearch))
    await world.login_refused(
        {"name": "opensearch-backup-2.19"}, wrong, "Elasticsearch/OpenSearch", "HTTP 401"
    )
    assert wrong not in caplog.text


async def test_tls_with_the_appbinding_s_ca_verifies_the_server(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    opensearch: OpenSearchServer,
    prefix: str,
) -> None:
    # https:// with the CA from tlsSecret: elasticdump and the agent's own requests
    # verify the server's certificate; with another CA they refuse it.
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server, opensearch)
    await rawkube.create(
        SECRETS,
        {"metadata": {"name": "db-tls"}, "stringData": {"ca.crt": opensearch.ca_pem}},
        namespace,
    )
    binding = {**_binding(opensearch), "tlsSecret": {"name": "db-tls"}}
    binding["clientConfig"] = {"url": f"{opensearch.tls_url}/{prefix}authors"}
    secret = {"username": opensearch.user, "password": opensearch.password}
    await world.setup(secret, binding)
    done = await world.backup({"name": "opensearch-backup-2.19"})
    assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
    (host,) = done["status"]["targets"][0]["stats"]
    assert host["snapshots"][0]["path"] == "/dumpfile.ndjson"
    other = issue_ca("someone-else", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    await rawkube.patch(
        SECRETS, "db-tls", {"stringData": {"ca.crt": other.cert_pem.decode()}}, namespace
    )
    await asyncio.sleep(1.1)  # a new session name (they are per second)
    refused = await world.another_backup()
    assert refused["status"]["phase"] == "Failed"
    (host,) = refused["status"]["targets"][0]["stats"]
    assert "certificate verify failed" in host["error"], host
    assert len(world.snapshots()) == 1
