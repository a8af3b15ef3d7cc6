"""`kubectl stash version | completion bash|zsh`: about the plugin itself.

What it is for: `version` prints the plugin's version, the cluster's Kubernetes version
and the stash operator's version where it can see one (the image tag of the operator's
Deployment, found by its `app.kubernetes.io/name=stash` label; `--client` skips the
cluster); `completion bash|zsh` prints a completion script generated from the plugin's
own parser, so it always lists the commands and flags this version has.

Not for: anything that touches stash objects.
"""

from __future__ import annotations

import argparse
from typing import Any

from stash import __version__
from stash.cli.kubectl.plugin import Plugin, add_output, emit
from stash.kube.client import KubeError
from stash.kube.resources import DEPLOYMENTS

__all__ = ["completion_script", "register"]

_OPERATOR_SELECTOR = "app.kubernetes.io/name=stash"


def register(sub: Any) -> None:
    """Add `version` and `completion` to the plugin's sub-parsers."""
    v = sub.add_parser("version", help="plugin, cluster and operator versions")
    v.add_argument("--client", action="store_true", help="only the plugin's version")
    add_output(v)
    v.set_defaults(run=version)
    c = sub.add_parser("completion", help="print a shell completion script")
    c.add_argument("shell", choices=["bash", "zsh"])
    c.set_defaults(run=completion)


async def version(p: Plugin) -> int:
    """Print the versions."""
    info: dict[str, Any] = {"plugin": __version__}
    if not p.args.client:
        try:
            server = await p.kube.request("GET", "/version")
            info["kubernetes"] = server.get("gitVersion")
        except KubeError as exc:
            info["kubernetes"] = f"unknown ({exc})"
        info["operator"] = await _operator_version(p)
    if p.output in ("json", "yaml"):
        emit(p, info)
        return 0
    p.say(f"kubectl-stash: {info['plugin']}")
    if not p.args.client:
        p.say(f"Kubernetes:    {info['kubernetes']}")
        p.say(f"operator:      {info['operator'] or 'not found'}")
    return 0


async def _operator_version(p: Plugin) -> str | None:
    try:
        items, _ = await p.kube.list_all(DEPLOYMENTS, None, label_selector=_OPERATOR_SELECTOR)
    except KubeError:
        return None
    for dep in items:
        for c in dep["spec"]["template"]["spec"].get("containers") or []:
            image = str(c.get("image") or "")
            if c.get("name") in ("operator", "stash") and ":" in image:
                ns = dep["metadata"]["namespace"]
                return f"{image.rpartition(':')[2]} ({ns}/{dep['metadata']['name']})"
    return None


def _tree(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """The flags of `parser` and, per sub-command word, what may follow it."""
    flags: list[str] = []
    words: dict[str, list[str]] = {}
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                child_flags, child_words = _tree(child)
                words[name] = [*child_words.get("", []), *child_flags]
                for k, v in child_words.items():
                    if k:
                        words[f"{name} {k}"] = v
            words[""] = [*words.get("", []), *action.choices]
        elif action.option_strings:
            flags += [o for o in action.option_strings if o.startswith("--")]
        elif action.choices:
            words[""] = [*words.get("", []), *map(str, action.choices)]
    return flags, words


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash (or zsh, through bashcompinit) completion script for `kubectl-stash`."""
    flags, words = _tree(parser)
    # Longest first: `key list REPO` completes as `key list`.
    order = sorted((k for k in words if k), key=lambda k: (-len(k.split()), k))
    cases = "\n".join(f'        "{k}"|"{k} "*) opts="{" ".join(words[k])}" ;;' for k in order)
    top = " ".join([*words.get("", []), *flags])
    body = f"""_kubectl_stash() {{
    local cur path="" w i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in -*) continue ;; esac
        if [[ -z "$path" ]]; then path="$w"; else path="$path $w"; fi
    done
    local opts="{top}"
    case "$path" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _kubectl_stash kubectl-stash
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


async def completion(p: Plugin) -> int:
    """Print the completion script for the shell."""
    from stash.cli.kubectl.app import build_parser

    p.say(completion_script(build_parser(), p.args.shell).rstrip())
    return 0
