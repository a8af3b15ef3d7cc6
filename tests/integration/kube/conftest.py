"""A raw-JSON `Kube` client bound to the test control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stash.kube.client import Kube
from stash_dev import ControlPlane


@pytest.fixture
async def rawkube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()
