"""`kubectl stash key list | add | update | remove REPO`: a repository's restic keys.

What it is for: restic key management through the repository's storage Secret: `list`
shows the keys (the one the Secret's password opens is marked current); `add` adds a key
for a new password; `update` replaces the current key by one for a new password and
writes that password into the storage Secret (`RESTIC_PASSWORD`), so backups keep
working; `remove` removes a key other than the current one. New passwords are read from
`--new-password-file` (never from the command line, where `ps` would show them). On a
local backend each runs in a Job (`podjob`) that gets the new password from a Secret
made for it; `update` then takes two Jobs: one adds the new key, the plugin writes the
storage Secret, the second (opening the repository with the new password) removes the
key the old password opens.

Not for: other repository commands (`repository`).
"""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path
from typing import Any

from stash.cli.kubectl.access import NeedsJob, add_restic_flag, open_repository, secret_data
from stash.cli.kubectl.plugin import Plugin, PluginError, add_dry_run, add_output, emit, table
from stash.cli.kubectl.podjob import add_job_flags, local_target, run_job
from stash.kube.client import JSON
from stash.kube.resources import SECRETS
from stash.restic import Restic, ResticError

__all__ = ["register"]

_PASSWORD_ENV = "STASH_NEW_PASSWORD"
_REPLACED_ENV = "STASH_REPLACED_PASSWORD"


def register(sub: Any) -> None:
    """Add `key list|add|update|remove` to the plugin's sub-parsers."""
    k = sub.add_parser("key", help="manage a repository's restic keys")
    verbs = k.add_subparsers(dest="verb", metavar="VERB", parser_class=type(k))
    verbs.required = True
    ls = verbs.add_parser("list", help="list the keys")
    ls.add_argument("repository")
    add_output(ls)
    add_job_flags(ls)
    ls.set_defaults(run=list_keys)
    add = verbs.add_parser("add", help="add a key for a new password")
    upd = verbs.add_parser("update", help="change the password (key and storage Secret)")
    for v in (add, upd):
        v.add_argument("repository")
        given = v.add_mutually_exclusive_group(required=True)
        given.add_argument("--new-password-file", type=Path, help="the new password")
        # Inside a local backend's Job: the password comes from this variable.
        given.add_argument("--new-password-env", help=argparse.SUPPRESS)
        add_job_flags(v)
    # Inside the second Job of `update`: remove the key the password in this variable opens.
    upd.add_argument("--replaced-password-env", help=argparse.SUPPRESS)
    add.add_argument("--host", help="host name recorded in the key")
    add.add_argument("--user", help="user name recorded in the key")
    add.set_defaults(run=add_key)
    upd.set_defaults(run=update_key)
    rm = verbs.add_parser("remove", help="remove a key (not the current one)")
    rm.add_argument("repository")
    rm.add_argument("key_id", help="the key's ID (or a unique prefix)")
    add_job_flags(rm)
    rm.set_defaults(run=remove_key)
    for v in (ls, add, upd, rm):
        add_restic_flag(v)
        if v is not ls:
            add_dry_run(v)


def _from_env(name: str) -> str:
    text = os.environ.get(name, "")
    if not text:
        raise PluginError(f"{name} is not set in this pod")
    return text


def _new_password(p: Plugin) -> str:
    if p.args.new_password_env:
        return _from_env(p.args.new_password_env)
    path: Path = p.args.new_password_file
    try:
        text = path.read_text().rstrip("\n")
    except OSError as exc:
        raise PluginError(f"--new-password-file {path}: {exc.strerror}") from None
    if not text:
        raise PluginError(f"--new-password-file {path} is empty: write the new password in it")
    return text


async def _in_job(p: Plugin, repo: JSON, password: str, replaced: str | None = None) -> int:
    """This command in a Job next to the local backend, the new password (and the one
    whose key goes) handed over."""
    argv = [*p.args.argv, f"--new-password-env={_PASSWORD_ENV}"]
    env = {_PASSWORD_ENV: password}
    if replaced is not None:
        argv.append(f"--replaced-password-env={_REPLACED_ENV}")
        env[_REPLACED_ENV] = replaced
    return await run_job(p, repo, argv, secret_env=env, strip=["--new-password-file"])


async def list_keys(p: Plugin) -> int:
    """Print the repository's keys."""
    async with open_repository(p, p.args.repository) as repo:
        keys = await repo.restic.keys()
    if p.output in ("json", "yaml"):
        emit(p, [k.model_dump(mode="json", by_alias=True) for k in keys])
        return 0
    rows = [["*" if k.current else "", k.id[:8], k.user_name, k.host_name, k.created] for k in keys]
    p.say(table(["current", "id", "user", "host", "created"], rows))
    return 0


async def add_key(p: Plugin) -> int:
    """Add a key for the password in --new-password-file."""
    password = _new_password(p)
    try:
        async with open_repository(p, p.args.repository) as repo:
            if p.dry_run:
                p.say(f"key added to {repo.name} (dry run)")
                return 0
            key_id = await repo.restic.add_key(password, host=p.args.host, user=p.args.user)
    except NeedsJob as exc:
        return await _in_job(p, exc.repository, password)
    p.say(f"key {key_id[:8]} added to {repo.name}")
    return 0


async def update_key(p: Plugin) -> int:
    """Replace the current key by one for the new password; update the storage Secret."""
    password = _new_password(p)
    if p.args.local_repository and p.args.replaced_password_env:
        return await _remove_replaced_key(p, _from_env(p.args.replaced_password_env))
    if p.args.local_repository:
        return await _add_replacing_key(p, password)
    try:
        return await _update_key(p, password)
    except NeedsJob as exc:
        return await _update_in_jobs(p, exc.repository, password)


async def _add_replacing_key(p: Plugin, password: str) -> int:
    """Inside a local backend's first Job: add the key for the new password."""
    async with open_repository(p, p.args.repository) as repo:
        if p.dry_run:
            p.say(f"key added to {repo.name} (dry run)")
            return 0
        new_id = await repo.restic.add_key(password)
    p.say(f"key {new_id[:8]} added to {repo.name}")
    return 0


async def _remove_replaced_key(p: Plugin, replaced: str) -> int:
    """Inside the second Job (the repository opened with the new password): remove the
    key the replaced password opens."""
    async with open_repository(p, p.args.repository) as repo:
        old = Restic(local_target(p.args.local_repository, replaced), repo.restic.options)
        gone = [k.id for k in await old.keys() if k.current]
        for key_id in gone:
            await repo.restic.remove_key(key_id)
    p.say(f"old key {gone[0][:8] if gone else '(none)'} removed from {repo.name}")
    return 0


async def _update_in_jobs(p: Plugin, repo: JSON, password: str) -> int:
    """`key update` on a local backend: a Job adds the new key, the storage Secret gets
    the new password, then a second Job (opening the repository with it) removes the
    key the old password opens."""
    name = repo["metadata"]["name"]
    secret_name = repo["spec"]["backend"]["storageSecretName"]
    secret = await p.kube.get(SECRETS, secret_name, p.namespace)
    old = secret_data(secret).get("RESTIC_PASSWORD", b"").decode()
    if not old:
        raise PluginError(f"Secret {secret_name} has no RESTIC_PASSWORD: the repository's key")
    code = await _in_job(p, repo, password)
    if code != 0 or p.dry_run:
        return code
    encoded = base64.b64encode(password.encode()).decode()
    await p.kube.patch(SECRETS, secret_name, {"data": {"RESTIC_PASSWORD": encoded}}, p.namespace)
    if await _in_job(p, repo, password, replaced=old) != 0:
        raise PluginError(
            f"the password of {name} changed and Secret {secret_name} holds it, but removing "
            f"the old key failed: find it with `kubectl stash key list {name}` and remove it "
            "with `kubectl stash key remove`"
        )
    p.say(f"password of {name} changed; Secret {secret_name} updated")
    return 0


async def _update_key(p: Plugin, password: str) -> int:
    async with open_repository(p, p.args.repository) as repo:
        secret_name = repo.obj["spec"]["backend"]["storageSecretName"]
        current = [k for k in await repo.restic.keys() if k.current]
        if p.dry_run:
            p.say(f"password of {repo.name} and Secret {secret_name} updated (dry run)")
            return 0
        new_id = await repo.restic.add_key(password)
        encoded = base64.b64encode(password.encode()).decode()
        await p.kube.patch(
            SECRETS, secret_name, {"data": {"RESTIC_PASSWORD": encoded}}, repo.namespace
        )
        # The old key goes only once the Secret opens the repository with the new one.
        if current:
            await _remove_with(p, repo.name, current[0].id)
    p.say(f"password of {repo.name} changed (key {new_id[:8]}); Secret {secret_name} updated")
    return 0


async def _remove_with(p: Plugin, repo_name: str, key_id: str) -> None:
    async with open_repository(p, repo_name) as repo:
        await repo.restic.remove_key(key_id)


async def remove_key(p: Plugin) -> int:
    """Remove a key other than the one the storage Secret's password opens."""
    async with open_repository(p, p.args.repository) as repo:
        keys = await repo.restic.keys()
        match = [k for k in keys if k.id.startswith(p.args.key_id)]
        if len(match) != 1:
            what = "no key" if not match else f"{len(match)} keys"
            raise PluginError(f"{what} of {repo.name} match {p.args.key_id}: see `key list`")
        if match[0].current:
            raise PluginError(
                f"key {match[0].id[:8]} is the one the storage Secret's password opens: "
                "change the password first (`kubectl stash key update`)"
            )
        if p.dry_run:
            p.say(f"key {match[0].id[:8]} removed from {repo.name} (dry run)")
            return 0
        try:
            await repo.restic.remove_key(match[0].id)
        except ResticError as exc:
            raise PluginError(f"removing key {match[0].id[:8]}: {exc}") from None
    p.say(f"key {match[0].id[:8]} removed from {repo.name}")
    return 0
