"""`kubectl-stash`, the kubectl plugin (`kubectl stash ...`, stash-api.md §8).

One module per command group: `invokers` (trigger, pause, resume, describe),
`repository` (snapshots, delete snapshot, unlock, check), `keys`, `download`, `objects`
(restore, cp), `clone` (clone pvc), `debug`, `meta` (version, completion); `plugin`
holds what they share, `access` opens a Repository for restic, `podjob` runs a command
on a local backend in a Job, `app` parses flags and runs the command.

Not for: business logic of the operator (controllers) or of restic (stash.restic).
"""

from __future__ import annotations

from stash.cli.kubectl.app import build_parser, main

__all__ = ["build_parser", "main"]
