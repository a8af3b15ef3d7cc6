"""Cached objects share their keys and short strings, and are equal to what was read."""

from __future__ import annotations

import json

from stash.kube.informer import compact


def test_compacted_objects_are_equal_and_share_their_strings() -> None:
    text = json.dumps(
        {
            "metadata": {"name": "bc-1", "finalizers": ["stash.appscode.com"]},
            "status": {"phase": "Ready", "conditions": [{"type": "A", "status": "True"}]},
            "spec": {"paused": False, "keepLast": 5, "long": "x" * 1000},
        }
    )
    first, second = compact(json.loads(text)), compact(json.loads(text))
    assert first == json.loads(text)
    assert first["status"]["phase"] is second["status"]["phase"]
    assert next(iter(first["metadata"])) is next(iter(second["metadata"]))
    assert first["metadata"]["finalizers"][0] is second["metadata"]["finalizers"][0]
