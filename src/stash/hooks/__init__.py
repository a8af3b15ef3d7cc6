"""Hooks (stash-api.md §6): running one handler, and the exec interface it needs.

What it is for: `run_hook` (`stash.hooks.run`) for the agent (per host) and the operator
(batch-level global hooks), and `PodExec` / `ExecTarget` (`stash.hooks.podexec`), the
protocol the `pods/exec` transport satisfies.

Not for: when hooks run and how they are recorded (`stash.contract.hooks`, the agent,
the operator), or the template language (`stash.contract.hooktemplate`).
"""

from __future__ import annotations

from stash.hooks.podexec import ExecTarget, PodExec, PodExecError
from stash.hooks.run import run_hook

__all__ = ["ExecTarget", "PodExec", "PodExecError", "run_hook"]
