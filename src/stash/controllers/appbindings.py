"""What the operator adds to a Job whose target is an AppBinding (stash-api.md §9).

What it is for: `app_target()` reads the AppBinding and answers the Task to run when the
invoker names none (the AppBinding's addon `backupTask`/`restoreTask`), the addon's
params (the invoker's `task.params` are merged over them), the `TARGET_APP_*` variables,
and the env of the Job's steps (`contract.appbinding.connection_env`: the endpoint, and
the credentials as `secretKeyRef`s so the password reaches the pod through the kubelet,
never through a Function, an argument or a status). The AppBinding must be in the
invoker's namespace: a pod can only read Secrets of its own namespace.

Not for: building the Job (`jobs`, `provisioning`) or resolving URLs (`contract`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stash.api import AppBinding
from stash.api.common import TargetRef
from stash.contract.appbinding import (
    addon_task,
    app_variables,
    connection_env,
    resolve_endpoint,
)
from stash.contract.resources import APPBINDINGS
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON, KubeError, NotFound

__all__ = ["AppTarget", "app_target"]


@dataclass(frozen=True)
class AppTarget:
    """What an AppBinding target adds to a job-model Job."""

    task: str = ""
    params: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    env: list[JSON] = field(default_factory=list)


async def app_target(
    ctx: ControllerContext, ref: TargetRef | None, ns: str, which: str
) -> AppTarget | str:
    """The AppTarget of `ref` (empty for any other kind), or why it cannot be used.
    `which` is `backup` or `restore`."""
    if ref is None or ref.kind != "AppBinding":
        return AppTarget()
    where = ref.namespace or ns
    name = f"AppBinding {where}/{ref.name}"
    if where != ns:
        return (
            f"{name} is in another namespace than this {which}: its Secret is read by the "
            f"Job's pod, which can only read Secrets of {ns}; create the AppBinding in {ns}"
        )
    try:
        raw = await ctx.kube.get(APPBINDINGS, str(ref.name), where)
    except NotFound:
        return f"{name} does not exist (or the AppBinding CRD is not installed)"
    except KubeError as exc:
        return f"reading {name}: {exc.message or exc}"
    binding = AppBinding.model_validate(raw)
    try:
        endpoint = resolve_endpoint(binding, where)
    except ValueError as exc:
        return str(exc)
    task, params = addon_task(binding, which)
    secret = binding.spec.secret.name if binding.spec and binding.spec.secret else None
    env = connection_env(binding, endpoint)
    env.append({"name": "STASH_DB_SECRET", "value": f"{where}/{secret}" if secret else ""})
    return AppTarget(task=task, params=params, inputs=app_variables(binding), env=env)
