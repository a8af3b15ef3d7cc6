"""The hook-template subset (§6.4): what users write in httpPost.body and exec.command
renders as upstream's Go text/template would, and what does not parse is refused with
the line and column of the problem."""

from __future__ import annotations

import json

import pytest

from stash.contract.hookrender import render_template, template_problem
from stash.contract.hooks import summary_data
from stash.contract.hooktemplate import TemplateError, parse_template

DATA = summary_data(
    name="pg-backup-1700000000",
    namespace="demo",
    invoker=("stash.appscode.com", "BackupConfiguration", "pg-backup"),
    target=("appcatalog.appscode.com/v1alpha1", "AppBinding", "pg", "demo"),
    phase="Failed",
    duration="1m3s",
    error='dial tcp: connection refused "pg"',
    hosts=[{"hostname": "host-0", "phase": "Failed"}],
    retry_left=0,
)


def test_s6_slack_body_renders_with_the_summary() -> None:
    body = (
        '{"text": "Backup {{ .Status.Phase }} for {{ .Namespace }}/{{ .Target.Name }}: '
        '{{ .Status.Error }}"}'
    )
    assert render_template(body, DATA) == (
        '{"text": "Backup Failed for demo/pg: dial tcp: connection refused "pg""}'
    )


def test_upstream_docs_dict_and_toJson_example_gives_valid_json() -> None:
    text = (
        '{{- $msg := dict "type" "mrkdwn" "text" (printf "Backup %s for %s/%s: %s" '
        ".Status.Phase .Namespace .Target.Name .Status.Error) -}}\n"
        '{"blocks": [{"type": "section", "text": {{ toJson $msg }}}]}'
    )
    out = json.loads(render_template(text, DATA))
    assert out["blocks"][0]["text"] == {
        "type": "mrkdwn",
        "text": 'Backup Failed for demo/pg: dial tcp: connection refused "pg"',
    }


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("{{ .Status.Error | quote }}", '"dial tcp: connection refused \\"pg\\""'),
        ('{{ .Status.Nothing | default "none" }}', "none"),
        ('{{ "" | default "none" }}', "none"),
        ("{{ .RetryLeft }} retries", "0 retries"),
        ('{{ printf "%d%%|%5s|%-4s|%q" 7 "ab" "c" "x" }}', '7%|   ab|c   |"x"'),
        ('{{ printf "%s %s" "one" }}', "one %!s(MISSING)"),
        ('{{ if eq .Status.Phase "Failed" }}bad{{ else }}good{{ end }}', "bad"),
        ("{{ if .RetryLeft }}retry{{ else if .Hosts }}hosts{{ end }}", "hosts"),
        (
            "{{ toJson .Invoker }}",
            '{"APIGroup":"stash.appscode.com","Kind":"BackupConfiguration","Name":"pg-backup"}',
        ),
        ('{{ .Invoker.Kind | lower | printf "kind=%s" }}', "kind=backupconfiguration"),
        ("  a {{- /* a comment */ -}} b  ", "ab"),
        ('{{ toJson "<&>" }}', '"\\u003c\\u0026\\u003e"'),
        ('{{ len .Hosts }} {{ index .Hosts 0 "hostname" }}', "1 host-0"),
        ("{{ .Missing }}", "<no value>"),
        ("no actions at all  ", "no actions at all  "),
    ],
)
def test_rendering(text: str, want: str) -> None:
    assert render_template(text, DATA) == want


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("{{ .Name | shout }}", 1, 12, 'function "shout" not defined'),
        ("line one\n  {{ .Status.Phse }}", 2, 6, 'no field "Phse"'),
        ("{{ .Nope.Name }}", 1, 4, 'no field "Nope"'),
        ("ok {{ .Name ", 1, 4, "unclosed action"),
        ("{{ if .Name }}x", 1, 16, "missing {{end}}"),
        ("{{ end }}", 1, 4, "unexpected {{end}}"),
        ("{{ range .Hosts }}{{ end }}", 1, 4, '"range" is not in'),
        ('{{ "abc }}', 1, 4, "unterminated quoted string"),
        ('{{ (printf "x" }}', 1, 4, "unclosed left paren"),
        ("{{ .Name | }}", 1, 10, "missing command"),
        ('{{ "\\q" }}', 1, 5, "unknown escape"),
    ],
)
def test_problems_name_their_position(text: str, line: int, column: int, message: str) -> None:
    problem = template_problem(text)
    assert problem is not None
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert message in problem.message
    assert str(problem).startswith(f"{line}:{column}: ")


def test_fields_of_variables_are_not_checked_against_the_summary() -> None:
    assert template_problem('{{ $m := dict "a" 1 }}{{ $m.a }}') is None
    assert render_template('{{ $m := dict "a" 1 }}{{ $m.a }}', DATA) == "1"


def test_parse_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError):
        parse_template("{{ nope }}")
