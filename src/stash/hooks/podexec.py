"""The interface an `exec` hook runs through: a command in a container of a pod.

What it is for: `PodExec`, the protocol the `pods/exec` transport satisfies (a client
in `stash.kube` that speaks the apiserver's exec subprotocol), and `ExecTarget`, which
pod and container an exec hook runs in. The hook runner (`stash.hooks.run`) only knows
this protocol, so tests give it a fake and the operator or agent give it the real
client.

The transport is `stash.kube.podexec.PodExec` (the agent's `AgentContext.pod_exec`).

Not for: the transport itself (websocket, channels, TLS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# The transport's error (pod or container missing, exec forbidden, the connection
# failed); its message says which. Its timeout is also a TimeoutError.
from stash.kube.podexec import PodExecError

__all__ = ["ExecTarget", "PodExec", "PodExecError"]


@dataclass(frozen=True)
class ExecTarget:
    """Where exec hooks run: a pod and its default container (None: the pod's first)."""

    namespace: str
    pod: str
    container: str | None = None


class PodExec(Protocol):
    """Run `command` in `container` of `namespace/pod` through `pods/exec`."""

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: Sequence[str],
        timeout: float,
    ) -> tuple[int, str]:
        """(exit code, stdout and stderr interleaved as received).

        Raises `PodExecError` when the command could not be started or the stream
        broke, `TimeoutError` when it ran longer than `timeout` seconds (the transport
        closes the stream; the process may outlive it, as with `kubectl exec`).
        """
        ...
