"""The Function and Task kinds (cluster-scoped `stash.appscode.com/v1beta1`, §1.8, §5.5).

What it is for: a Function is a container template (image, command, args, mounts); a
Task is an ordered list of Functions with parameters plus the volumes they share. The
job model turns a Task into a Job's pod. Strings may hold `${VAR}` / `${VAR:=default}`.

Not for: resolving variables or building pods (the resolver does that).
"""

from __future__ import annotations

from pydantic import Field

from stash.api.base import StashModel
from stash.api.common import ContainerRuntimeSettings, Param
from stash.api.k8s import KubeList, ObjectMeta, VolumeMount

__all__ = ["Function", "FunctionRef", "FunctionSpec", "Task", "TaskSpec"]


class FunctionSpec(StashModel):
    """A container template run as one step of a Task."""

    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: KubeList | None = None
    volume_mounts: list[VolumeMount] | None = None
    volume_devices: KubeList | None = None
    runtime_settings: ContainerRuntimeSettings | None = None
    pod_security_policy_name: str | None = None


class Function(StashModel):
    """A reusable step: what container to run."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "Function"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FunctionSpec | None = None


class FunctionRef(StashModel):
    """One step of a Task: a Function by name and the parameters it is given."""

    name: str
    params: list[Param] | None = None


class TaskSpec(StashModel):
    """Ordered steps and the pod volumes they share."""

    steps: list[FunctionRef] | None = None
    volumes: KubeList | None = None


class Task(StashModel):
    """A backup or restore procedure made of Functions."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "Task"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TaskSpec | None = None
