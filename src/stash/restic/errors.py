"""Errors from restic, as types a caller can act on.

What it is for: one exception type per failure a person can do something about (wrong
password, missing repository or bucket, lock held, storage unreachable or refusing the
credentials, full disk, unknown snapshot, restic too old), each carrying restic's own
message and a hint saying what to do next; and `classify()`, the pure rule that turns
restic's exit code and stderr into one of them.

Not for: running restic (`driver`, `process`) or deciding which locks are stale (`locks`).
Messages must never contain a password or a secret's value; `redact()` scrubs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stash.restic.models import BackupSummary, LockInfo

__all__ = [
    "REPOSITORY_DAMAGED_HINT",
    "BackendAuthFailed",
    "BackendUnreachable",
    "BackupCommandFailed",
    "BackupIncomplete",
    "BucketNotFound",
    "FeatureUnavailable",
    "Interrupted",
    "InvalidArguments",
    "InvalidBackend",
    "LockHolder",
    "MissingSecretKey",
    "NoSpace",
    "RepositoryLocked",
    "RepositoryNotFound",
    "ResticError",
    "ResticTooOld",
    "SnapshotNotFound",
    "WrongPassword",
    "classify",
    "incomplete_backup_hint",
    "redact",
    "restic_message",
]

# restic's documented exit codes (0.17+, doc/075_scripting.rst).
EXIT_FAILED = 1
EXIT_INCOMPLETE = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTERRUPTED = 130


class ResticError(Exception):
    """restic failed. `message` is restic's own words, `hint` what to do about it."""

    default_hint = "see restic's message; re-run with the same repository to reproduce"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        exit_code: int | None = None,
        command: str = "",
    ) -> None:
        self.message = message.strip()
        self.hint = hint or self.default_hint
        self.exit_code = exit_code
        self.command = command
        self.stderr = ""  # restic's stderr tail, when the runner has it
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"restic {self.command}: " if self.command else ""
        return f"{where}{self.message} (hint: {self.hint})"


class InvalidBackend(ResticError):
    """The Repository's backend spec or its storage secret cannot make a restic target."""

    default_hint = "fix spec.backend of the Repository or the keys of its storage secret"


class InvalidArguments(ResticError):
    """`target.args` (or a restore rule's args) hold something restic may not be given."""

    default_hint = "remove it from the args of the target (or of the restore rule)"


class MissingSecretKey(InvalidBackend):
    """A key the backend needs is absent from the storage secret."""

    def __init__(self, key: str, secret: str, provider: str) -> None:
        self.key = key
        self.secret = secret
        super().__init__(
            f'the storage secret "{secret}" has no key {key}, which the {provider} backend needs',
            hint=f'add {key} to secret "{secret}" (kubectl edit secret {secret})',
        )


class ResticTooOld(ResticError):
    """The restic binary is older than the oldest version this driver supports."""

    def __init__(self, found: str, minimum: str, binary: str) -> None:
        self.found = found
        self.minimum = minimum
        super().__init__(
            f"{binary} is restic {found}; stash needs restic {minimum} or newer",
            hint=f"install restic >= {minimum} (or point STASH_RESTIC at a newer binary)",
        )


class FeatureUnavailable(ResticError):
    """A feature was asked for that the installed restic does not have."""

    def __init__(self, feature: str, needed: str, found: str) -> None:
        self.feature = feature
        super().__init__(
            f"{feature} needs restic {needed} or newer, found {found}",
            hint=f"upgrade restic to {needed} or newer, or do without {feature}",
        )


class WrongPassword(ResticError):
    """RESTIC_PASSWORD opens no key of the repository."""

    default_hint = (
        "RESTIC_PASSWORD in the storage secret opens no key of this repository; put the "
        "password the repository was created with into the secret, or add a key for the "
        "new one (kubectl stash key add)"
    )


class RepositoryNotFound(ResticError):
    """There is no restic repository at the backend's location."""

    default_hint = (
        "no repository at this location: check the backend's bucket/prefix/path, or let "
        "stash initialise it (the first backup does)"
    )


class BucketNotFound(RepositoryNotFound):
    """The bucket or container named by the backend does not exist."""

    default_hint = (
        "the bucket does not exist: create it, or fix the bucket name in spec.backend "
        "(restic init creates it when the credentials allow)"
    )


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as restic's "already locked" message says."""

    pid: int
    host: str
    user: str
    created: str
    age: str
    storage_id: str
    exclusive: bool


class RepositoryLocked(ResticError):
    """Another restic process holds a conflicting lock on the repository."""

    default_hint = (
        "another restic process is using the repository; wait for it to finish. If it is "
        "gone, its lock is stale: stash removes provably stale locks itself, or run "
        "`kubectl stash unlock`"
    )

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        exit_code: int | None = None,
        command: str = "",
        holder: LockHolder | None = None,
        locks: Sequence[LockInfo] = (),
    ) -> None:
        self.holder = holder
        self.locks = tuple(locks)
        if hint is None and holder is not None:
            hint = (
                f"the lock is held by PID {holder.pid} on host {holder.host} (user "
                f"{holder.user}, created {holder.created}, {holder.age} ago); " + self.default_hint
            )
        super().__init__(message, hint=hint, exit_code=exit_code, command=command)


class BackendUnreachable(ResticError):
    """The storage could not be reached (refused, timed out, unknown host, TLS)."""

    default_hint = (
        "the storage server did not answer: check the endpoint/URL in spec.backend, that "
        "the server is running, and network policies between the pod and the storage"
    )


class BackendAuthFailed(ResticError):
    """The storage refused the credentials from the storage secret."""

    default_hint = (
        "the storage rejected the credentials: check the access keys (or REST user and "
        "password) in the storage secret and their permissions on the bucket"
    )


class NoSpace(ResticError):
    """A disk is full: the repository's storage or the local scratch/cache/target."""

    default_hint = (
        "no space left: free space on the storage, or raise the size of the scratch "
        "(tempDir) or restore target volume"
    )


class SnapshotNotFound(ResticError):
    """No snapshot matched the ID or the host/path/tag filter."""

    default_hint = "no snapshot matched; list them with `kubectl stash snapshots`"


class BackupIncomplete(ResticError):
    """Backup finished but some files could not be read (exit 3); a snapshot was made."""

    default_hint = "some source files were unreadable: check permissions and paths"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        exit_code: int | None = None,
        command: str = "",
        summary: BackupSummary | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        self.summary = summary
        self.errors = tuple(errors)
        super().__init__(message, hint=hint, exit_code=exit_code, command=command)


#: restic's words when a backup could not load data from the repository itself.
_REPOSITORY_DAMAGED = "the repository could be damaged"
REPOSITORY_DAMAGED_HINT = (
    "the repository is damaged, not the source: restic could not load data it stores; run "
    "`kubectl stash check` (restic check) and follow its advice, e.g. `restic repair packs`"
)


def incomplete_backup_hint(errors: Sequence[str]) -> str | None:
    """The hint of a `BackupIncomplete` with these per-file errors: None (the default,
    unreadable source files) unless restic said it could not load the repository's own
    data (a damaged pack), which no change to the source fixes."""
    if any(_REPOSITORY_DAMAGED in e for e in errors):
        return REPOSITORY_DAMAGED_HINT
    return None


class BackupCommandFailed(ResticError):
    """The command whose output was being backed up failed or wrote nothing.

    No snapshot of its output is kept.
    """

    default_hint = "the dump command failed; run it by hand to see why"


class Interrupted(ResticError):
    """restic was interrupted (SIGINT/SIGTERM, exit 130)."""

    default_hint = "restic was stopped before it finished; run the operation again"


# Message patterns, tried in order on restic's own message when the exit code does not
# decide. Numbers are matched only where restic prints an HTTP status (`_http_status`):
# a bare `507` also matches a lock's age ("507.87ms ago"), a PID or a port.
_PATTERNS: list[tuple[type[ResticError], re.Pattern[str]]] = [
    # First: a lock message carries a PID, a host, durations and a storage ID.
    (RepositoryLocked, re.compile(r"\bis already locked\b|unable to create lock", re.I)),
    (WrongPassword, re.compile(r"wrong password|no key found", re.I)),
    (
        InvalidBackend,
        re.compile(r"invalid bucket name|bucket name cannot|InvalidBucketName", re.I),
    ),
    (
        BucketNotFound,
        re.compile(
            r"bucket does not exist|NoSuchBucket|container not found|ContainerNotFound|"
            r"bucket \S+ not found",
            re.I,
        ),
    ),
    (
        RepositoryNotFound,
        re.compile(r"repository does not exist|Is there a repository at", re.I),
    ),
    (
        NoSpace,
        re.compile(
            r"no space left on device|disk quota exceeded|insufficient storage|"
            r"QuotaExceeded|entity too large",
            re.I,
        ),
    ),
    (
        BackendAuthFailed,
        re.compile(
            r"\bunauthori[sz]ed\b|\bforbidden\b|access denied|AccessDenied|"
            r"InvalidAccessKeyId|SignatureDoesNotMatch|invalid credentials|"
            r"AuthenticationFailed|authentication failed|permission denied.*(bucket|object)",
            re.I,
        ),
    ),
    (
        BackendUnreachable,
        re.compile(
            r"connection refused|no such host|i/o timeout|network is unreachable|"
            r"connection reset|no route to host|TLS handshake|x509:|certificate|"
            r"server misbehaving|context deadline exceeded|EOF$|dial tcp",
            re.I,
        ),
    ),
    (
        SnapshotNotFound,
        re.compile(
            r"no matching ID found|no snapshot found|snapshot \S*\s?not found|invalid id|"
            r"ambiguous prefix|failed to find snapshot",
            re.I,
        ),
    ),
]

# Where restic (and the backends' SDKs it wraps) print an HTTP status code.
_HTTP_STATUS = re.compile(
    r"HTTP response \((\d{3})\)|\bstatus(?: code)?[:=]? ?(\d{3})\b|StatusCode:? ?(\d{3})\b|"
    r"\b(\d{3}) (?:Unauthorized|Forbidden|Insufficient Storage|Request Entity Too Large)\b",
    re.I,
)
_BY_HTTP_STATUS: dict[int, type[ResticError]] = {
    401: BackendAuthFailed,
    403: BackendAuthFailed,
    413: NoSpace,
    507: NoSpace,
}


def _http_status(message: str) -> int | None:
    match = _HTTP_STATUS.search(message)
    if match is None:
        return None
    return int(next(g for g in match.groups() if g))


_TLS = re.compile(r"x509:|certificate|TLS handshake", re.I)

_BY_EXIT: dict[int, type[ResticError]] = {
    EXIT_WRONG_PASSWORD: WrongPassword,
    EXIT_LOCKED: RepositoryLocked,
    EXIT_NO_REPOSITORY: RepositoryNotFound,
    EXIT_INCOMPLETE: BackupIncomplete,
    EXIT_INTERRUPTED: Interrupted,
}

_LOCKED = re.compile(
    r"locked (?P<excl>exclusively )?by PID (?P<pid>\d+) on (?P<host>\S+) by (?P<user>.+?)"
    r"(?: \(UID \d+, GID \d+\))?\s*\n\s*lock was created at (?P<created>.+?) "
    r"\((?P<age>.+?) ago\)\s*\n\s*storage ID (?P<sid>[0-9a-f]+)",
)


def restic_message(stderr: str) -> str:
    """restic's own error text from its stderr.

    restic 0.18+ writes `{"message_type":"exit_error","message":...}` under `--json`;
    older versions and text mode write "Fatal: ..." lines. Retry chatter is dropped.
    """
    messages: list[str] = []
    plain: list[str] = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                plain.append(text)
                continue
            if isinstance(doc, dict):
                if doc.get("message_type") == "exit_error":
                    messages.append(str(doc.get("message", "")))
                elif doc.get("message_type") == "error":
                    err = doc.get("error")
                    if isinstance(err, dict):
                        messages.append(str(err.get("message", "")))
            continue
        if " returned error, retrying after " in text or "cleaning up" in text:
            continue
        plain.append(text)
    chosen = messages[-1] if messages else "\n".join(plain[-8:])
    return _strip_fatal(chosen)


def _strip_fatal(text: str) -> str:
    out = text.strip()
    while out.startswith("Fatal: "):
        out = out[len("Fatal: ") :]
    return out


def _lock_holder(message: str) -> LockHolder | None:
    match = _LOCKED.search(message)
    if match is None:
        return None
    return LockHolder(
        pid=int(match["pid"]),
        host=match["host"],
        user=match["user"],
        created=match["created"],
        age=match["age"],
        storage_id=match["sid"],
        exclusive=bool(match["excl"]),
    )


def classify(exit_code: int | None, stderr: str, *, command: str = "") -> ResticError:
    """Turn a failed restic run into the most specific error type.

    restic's documented exit codes decide first (10 no repository, 11 lock failed, 12
    wrong password, 3 incomplete backup, 130 interrupted; restic >= 0.17); the message
    only refines them (a missing bucket is a missing repository). Exit 1 ("any other
    error") is classified on restic's message with anchored patterns, numbers only in an
    HTTP-status context. Pure: same input, same answer.
    """
    message = restic_message(stderr) or f"restic exited with status {exit_code}"
    kind = _BY_EXIT.get(exit_code or 0)
    if kind is RepositoryNotFound and _kind_by_message(message) is BucketNotFound:
        kind = BucketNotFound
    if kind is None:
        kind = _kind_by_message(message) or ResticError
    if kind is RepositoryLocked:
        return RepositoryLocked(
            message, exit_code=exit_code, command=command, holder=_lock_holder(message)
        )
    hint = None
    if kind is BackendUnreachable and _TLS.search(message):
        hint = (
            "TLS to the storage failed: put the server's CA certificate into CA_CERT_DATA "
            "of the storage secret, or (for testing only) set insecureTLS in spec.backend"
        )
    return kind(message, hint=hint, exit_code=exit_code, command=command)


def _kind_by_message(message: str) -> type[ResticError] | None:
    for candidate, pattern in _PATTERNS:
        if pattern.search(message):
            return candidate
    status = _http_status(message)
    return _BY_HTTP_STATUS.get(status) if status is not None else None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value (and its URL-quoted form) in `text` by `***`.

    Values shorter than 4 characters are left alone: replacing them would shred
    ordinary words without protecting anything.
    """
    from urllib.parse import quote

    out = text
    for value in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        out = out.replace(value, "***")
        quoted = quote(value, safe="")
        if quoted != value:
            out = out.replace(quoted, "***")
    return out
