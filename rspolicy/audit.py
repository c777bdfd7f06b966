"""The tamper-evident audit log: one hash-chained JSON record per decision.

File format
-----------
The log is a JSON Lines file, UTF-8, one record per line, every line ending
with a newline. A record's body is built by the caller and modelled on an Open
Policy Agent decision-log event (``decision_id``, ``timestamp``, ``rspolicy``,
``policy``, ``input``, ``result``, ``output``, ``recipient``, ``purpose``,
``operator``, ``host``); :meth:`AuditLog.append` adds the chain members

``seq``
    1-based number of the record within its chain; it goes on across rotated
    files.
``prev``
    ``hash`` of the record before it, or 64 zeros for the first record.
``alg``
    ``"sha256"`` or ``"hmac-sha256"``; one chain uses one algorithm throughout.
``chain``
    An id (UUIDv7) drawn when the chain starts, the same in every record, so
    that records from two logs cannot be mixed unnoticed.
``hash``
    ``SHA-256(prev || C)`` or ``HMAC-SHA256(key, prev || C)`` as lowercase
    hex, where ``prev`` is the 64 ASCII hex digits above and ``C`` is the RFC
    8785 (JCS) canonical JSON of the record *without* ``hash``
    (:func:`canonical_json`).

Every line is written as ``C`` with ``,"hash":"<hex>"`` inserted before its
final ``}``: the bytes that were hashed are the line up to its hash member,
so anyone can check a record with ``sha256sum`` alone. ``verify`` checks by
default that each line is exactly that (``non-canonical`` otherwise).

What the chain protects
-----------------------
Unkeyed (``sha256``), the chain detects editing, deleting, reordering or
inserting records *inside* the log: every later link stops matching. It does
**not** detect cutting records off the end (what is left is still a valid
chain), nor a rewrite of the whole log by someone who recomputes every hash.
Two defences cover those:

* anchor the head hash somewhere the log's writer cannot change (a ticket, an
  e-mail, a second machine): ``rspolicy log head`` prints it and
  ``rspolicy log verify --anchor HASH`` fails unless the chain still holds that
  record;
* key the chain: with a secret key (:func:`key_from_env`, environment variable
  ``RSPOLICY_LOG_KEY``) each hash is an HMAC, so who can rewrite the file but
  does not hold the key cannot produce a chain that verifies. Once a chain is
  keyed, verifying it with a key rejects unkeyed records, so the key cannot be
  stripped either. A chain keeps the algorithm it started with: to start
  keying, start a new log file.

The key
-------
``RSPOLICY_LOG_KEY`` holds either hex (only ``0-9a-fA-F``, an even number of
digits, at least 32 of them: decoded to bytes) or anything else, taken as its
raw bytes (the value as the operating system passed it). The key, decoded,
must be at least 16 bytes long.

Writing
-------
An append canonicalises the caller's members first, then takes an exclusive
:func:`fcntl.flock` on the sibling file ``<log>.lock``, reads the last record
by seeking back from the end, writes the whole new line with one
:func:`os.write` on a descriptor opened with ``O_APPEND`` and, unless told
otherwise, syncs it with ``fdatasync`` before returning. (Only a full disk
makes a write short; the rest is then written under the same lock, or the
file cut back to where it was and :class:`~rspolicy.errors.AuditLogError`
raised.) The lock lives beside the log, not on it, because rotation renames
the log.
Many processes may append to one log at once: the chain never forks and lines
never interleave. Locks assume a local file system.

A torn tail
-----------
A crash during a write can leave the last line incomplete (no final newline).
The writer that crashed never returned, so the record was never acknowledged.
The next append, holding the lock (so the writer of that tail is certainly
dead), moves the bytes after the last newline into ``<log>.torn`` (appended,
fsynced first), truncates the log back to its last newline and appends a
record ``{"event": "torn-tail-quarantined", "torn": {...}}`` giving the
quarantine file, the offsets (``log_offset`` in the file holding the note,
which the note never rotates away from), the length and the SHA-256 of the
bytes moved; then it appends its own record. Nothing is lost and the chain
verifies.
:meth:`AuditLog.repair` does the same without a new decision. Until then
``verify`` reports ``torn-tail`` at that line. Any other damage to the last
record (a complete line that is not a valid record) makes ``append`` refuse
with :class:`~rspolicy.errors.AuditLogError`: that is not a crash, and
chaining onto it would hide it.

Rotation
--------
With ``rotate_bytes`` the log is rotated before a record would take it past
that size (a record larger than that still goes into an empty file); with
``rotate_daily`` before the first record whose ``timestamp`` (or, lacking
one, the time of writing) falls on a later UTC day than the file's first
record. Rotation renames ``decisions.jsonl`` to ``decisions.jsonl.<DATE>.<SEQ>``, with
the UTC date of the file's first record and that record's ``seq`` padded to
10 digits (``decisions.jsonl.2025-03-01.0000000001``), and starts an empty
``decisions.jsonl``. A rotated file is never renamed again, so a name
anchored elsewhere stays valid. The chain runs straight on: the new file's
first record has the next ``seq`` and ``prev`` = the old file's head.
:func:`log_files` lists a log's files in chain order and :func:`verify` checks
a list of files as one chain.

Finding the log
---------------
:func:`resolve_log_path`: an explicit path, else ``$RSPOLICY_LOG``, else
``log = "..."`` in the config file (:mod:`rspolicy.config`), else the default
path ``$XDG_STATE_HOME/rspolicy/decisions.jsonl``
(``~/.local/state/rspolicy/decisions.jsonl``) or None, as the caller asks.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import socket
import stat
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TextIO, overload

import rfc8785

import rspolicy
from rspolicy.config import Config, ConfigError, default_log_path, load_config
from rspolicy.errors import AuditLogError
from rspolicy.safeio import open_regular

__all__ = [
    "ALG_HMAC",
    "ALG_SHA256",
    "CHAIN_FIELDS",
    "CSV_COLUMNS",
    "GENESIS",
    "AuditLog",
    "Head",
    "Problem",
    "ProblemKind",
    "RepairResult",
    "VerifyResult",
    "canonical_json",
    "expand_log_paths",
    "export_records",
    "flatten",
    "iter_records",
    "key_from_env",
    "log_files",
    "new_decision_id",
    "resolve_log_path",
    "utc_timestamp",
    "verify",
]

#: ``prev`` of the first record of a chain.
GENESIS = "0" * 64
ALG_SHA256 = "sha256"
ALG_HMAC = "hmac-sha256"
#: The members :meth:`AuditLog.append` adds; a record given to it must not hold them.
CHAIN_FIELDS = frozenset({"seq", "prev", "hash", "alg", "chain"})
#: Environment variables read by :func:`key_from_env` and :func:`resolve_log_path`.
KEY_ENV = "RSPOLICY_LOG_KEY"
LOG_ENV = "RSPOLICY_LOG"
MIN_KEY_BYTES = 16

ProblemKind = Literal[
    "unreadable",      # a file cannot be opened or read
    "torn-tail",       # last line without newline: an interrupted write
    "bad-json",        # a line that is not a JSON object
    "bad-record",      # chain members missing or malformed, or not canonicalisable
    "seq-gap",         # seq is not the previous one + 1 (deleted, inserted or swapped records)
    "broken-link",     # prev is not the previous record's hash
    "chain-mismatch",  # a record of another chain
    "alg-mismatch",    # algorithm changes within the chain, or unkeyed records checked with a key
    "key-required",    # keyed records checked without a key
    "hash-mismatch",   # the record was altered (or the key is wrong)
    "non-canonical",   # content intact but the line is not in canonical form
    "head-missing",    # the anchored head is not in the chain: truncated or rewritten
]

_SAFE_INT = 2**53 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HASH_MEMBER = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_ROTATED = re.compile(r"^(?P<base>.+)\.(?P<date>\d{4}-\d{2}-\d{2})\.(?P<seq>\d{10,})$")
_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){16,}")
# Records are about a kilobyte; two blocks nearly always reach the line before.
_TAIL_BLOCK = 8192
_FILE_MODE = 0o640
_DIR_MODE = 0o750
_TORN_EVENT = "torn-tail-quarantined"


# --------------------------------------------------------------------------- canonical JSON, ids, time


def canonical_json(obj: Any) -> bytes:
    r"""Serialise ``obj`` as RFC 8785 (JCS) canonical JSON.

    Object members are sorted by the UTF-16 code units of their names, no
    whitespace is written, strings are UTF-8 with only the mandatory escapes
    and numbers follow ECMAScript: the shortest form that reads back the same
    double, integral values without ``.0`` (``2.0`` -> ``2``), ``1e+21`` style
    exponents from 1e21 up and below 1e-6. The work is done by the ``rfc8785``
    package (Trail of Bits).

    Parameters
    ----------
    obj
        A dict with str keys, list, tuple, str, int, float, bool or None,
        nested freely.

    Returns
    -------
    bytes
        The canonical UTF-8 encoding.

    Raises
    ------
    AuditLogError
        For NaN or infinite floats, integers outside +/-(2**53 - 1) (JSON
        numbers are doubles), non-str keys, lone surrogates and other types.

    Examples
    --------
    >>> canonical_json({"b": [1.0, 1e-7, "€"], "a": None})
    b'{"a":null,"b":[1,1e-7,"\xe2\x82\xac"]}'
    """
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise AuditLogError(f"cannot write as canonical JSON: {exc}") from None
    except RecursionError:
        raise AuditLogError("cannot write as canonical JSON: nested too deeply") from None


def _members(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """Each top-level member of an object as canonical ``"name":value`` bytes."""
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise AuditLogError(f"cannot write as canonical JSON: member name {name!r} is not a string")
        out[name] = canonical_json(name) + b":" + canonical_json(value)
    return out


def _join(members: Mapping[str, bytes]) -> bytes:
    """The canonical object made of :func:`_members` output: what ``canonical_json`` gives for the whole.

    Appends canonicalise the caller's members before taking the lock and add
    the chain members under it, so that writers hold the lock for microseconds.
    """
    # RFC 8785 3.2.3: members sorted by the UTF-16 code units of their names.
    return b"{" + b",".join(members[k] for k in sorted(members, key=lambda k: k.encode("utf-16-be"))) + b"}"


class _UUIDClock:
    """The last UUIDv7 time stamp handed out, so ids from one process never go back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0


_UUID_CLOCK = _UUIDClock()


def new_decision_id() -> str:
    """A new UUIDv7 (RFC 9562): unique, and sorting as text sorts by time.

    The 48-bit Unix milliseconds are followed by 12 bits of sub-millisecond
    time (RFC 9562 section 6.2, method 3) and 62 random bits from
    :func:`os.urandom`. Within one process ids strictly increase even when the
    clock stands still or steps back.

    Returns
    -------
    str
        The canonical hyphenated lowercase form.

    Examples
    --------
    >>> a, b = new_decision_id(), new_decision_id()
    >>> a < b and a[14] == "7" and a[19] in "89ab"
    True
    """
    ms, rest = divmod(time.time_ns(), 1_000_000)
    stamp = (ms << 12) | (rest * 4096 // 1_000_000)
    with _UUID_CLOCK.lock:
        if stamp <= _UUID_CLOCK.last:
            stamp = _UUID_CLOCK.last + 1
        _UUID_CLOCK.last = stamp
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = ((stamp >> 12) << 80) | (0x7 << 76) | ((stamp & 0xFFF) << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def utc_timestamp(when: dt.datetime | None = None) -> str:
    """An RFC 3339 UTC time stamp with microseconds and ``Z``.

    Parameters
    ----------
    when
        The time to format (naive means UTC); now by default.

    Examples
    --------
    >>> utc_timestamp(dt.datetime(2025, 3, 1, 12, 0, 5, 7))
    '2025-03-01T12:00:05.000007Z'
    """
    when = dt.datetime.now(dt.UTC) if when is None else _as_utc(when)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _as_utc(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------- configuration


def key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    r"""The HMAC key in ``RSPOLICY_LOG_KEY``, or None when it is unset or empty.

    Hex (an even number, at least 32, of hex digits) is decoded; any other
    value is used as its raw bytes.

    Parameters
    ----------
    environ
        The environment to read; :data:`os.environ` by default.

    Raises
    ------
    AuditLogError
        When the key is shorter than 16 bytes.

    Examples
    --------
    >>> key_from_env({"RSPOLICY_LOG_KEY": "00" * 16})
    b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    >>> key_from_env({"RSPOLICY_LOG_KEY": "correct horse battery staple"})
    b'correct horse battery staple'
    """
    value = (os.environ if environ is None else environ).get(KEY_ENV, "")
    if not value:
        return None
    key = bytes.fromhex(value) if _HEX_KEY.fullmatch(value) else os.fsencode(value)
    if len(key) < MIN_KEY_BYTES:
        raise AuditLogError(f"{KEY_ENV} is too short: a key needs at least {MIN_KEY_BYTES} bytes")
    return key


def _expand(path: str | os.PathLike[str]) -> Path:
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user of no such user
        raise AuditLogError(f"{os.fspath(path)}: cannot expand '~' (no such user)") from None


@overload
def resolve_log_path(explicit: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None,
                     config: Config | None = None, default: Literal[True]) -> Path: ...


@overload
def resolve_log_path(explicit: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None,
                     config: Config | None = None, default: bool = False) -> Path | None: ...


def resolve_log_path(explicit: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None,
                     config: Config | None = None, default: bool = False) -> Path | None:
    """Where the audit log is: explicit > ``$RSPOLICY_LOG`` > config file > default path (or None).

    The one place this order is decided: ``enforce`` and ``screen`` write the
    log it names, and ``rspolicy log`` reads it. The config file
    (:func:`rspolicy.config.config_path`) names a log with a top-level
    ``log = "..."``; a relative path there is taken relative to the config
    file's folder. ``~`` is expanded everywhere.

    Parameters
    ----------
    explicit
        A path given on the command line, or None.
    environ
        The environment to read; :data:`os.environ` by default.
    config
        The config file's settings, when the caller has read them already;
        otherwise the file is read (only when neither ``explicit`` nor
        ``$RSPOLICY_LOG`` names a log).
    default
        Return :func:`rspolicy.config.default_log_path`
        (``$XDG_STATE_HOME/rspolicy/decisions.jsonl``, by default
        ``~/.local/state/rspolicy/decisions.jsonl``) when nothing names a log,
        instead of None: where ``enforce`` always logs.

    Raises
    ------
    AuditLogError
        When the config file has to be read and cannot be used (the message of
        the :class:`~rspolicy.config.ConfigError`), or a path starts with
        ``~user`` of no such user.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return _expand(explicit)
    if env.get(LOG_ENV):
        return _expand(env[LOG_ENV])
    if config is None:
        try:
            config = load_config(environ=env)
        except ConfigError as exc:
            raise AuditLogError(str(exc)) from None
    if config.log is not None:
        return config.log
    return default_log_path(env) if default else None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Head:
    """The newest record of a chain.

    Attributes
    ----------
    hash
        Its hash (64 zeros for an empty log): the value to anchor elsewhere.
    count
        Its ``seq``: how many records the chain holds, over all its files.
    path
        The file holding it (the log's own path when it is empty).
    """

    hash: str
    count: int
    path: Path


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong by :func:`verify`.

    Attributes
    ----------
    kind
        One of :data:`ProblemKind`.
    file
        The file at fault.
    line
        1-based line number in that file (0 when the file itself is at fault).
    message
        One line for a human.
    """

    kind: ProblemKind
    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`.

    Attributes
    ----------
    ok
        True when every record of every file verified.
    records
        Records that verified (before the problem, if any).
    files
        The files checked, in chain order.
    head
        Hash of the last record that verified (64 zeros when none did and the
        chain was checked from its start; None for a partial check that found
        none).
    problem
        The first problem, or None.
    """

    ok: bool
    records: int
    files: tuple[Path, ...]
    head: str | None
    problem: Problem | None = None


@dataclass(frozen=True)
class RepairResult:
    """What :meth:`AuditLog.repair` moved out of the log.

    Attributes
    ----------
    quarantine
        The file the torn bytes were appended to.
    offset
        Where the torn bytes started in the log.
    length
        How many bytes were moved.
    sha256
        Their SHA-256.
    record
        The ``torn-tail-quarantined`` record appended to the log.
    """

    quarantine: Path
    offset: int
    length: int
    sha256: str
    record: dict[str, Any]


# --------------------------------------------------------------------------- one record


class _RecordError(Exception):
    def __init__(self, kind: ProblemKind, message: str) -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_int(text: str) -> int | float:
    # JCS reads numbers as doubles: a large integral float (1e20) is written
    # without a fraction, and must come back as the float it was to be
    # re-canonicalised; an int that large could never have been written.
    value = int(text)
    return value if -_SAFE_INT <= value <= _SAFE_INT else float(text)


def _loads(data: bytes) -> Any:
    """Parse one line as JCS does: UTF-8 only, no NaN or Infinity, numbers as doubles."""
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant, parse_int=_parse_int)


def _digest(key: bytes | None, prev: str, canon: bytes) -> str:
    data = prev.encode("ascii") + canon
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _line(canon: bytes, digest: str) -> bytes:
    return canon[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n'


def _parse(line: bytes) -> dict[str, Any]:
    """A line (without its newline) as a record with well-formed chain members."""
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _RecordError("bad-json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _RecordError("bad-json", "not a JSON object")
    seq = obj.get("seq")
    if type(seq) is not int or seq < 1:
        raise _RecordError("bad-record", f"'seq' must be a positive integer, not {seq!r}")
    for name in ("prev", "hash"):
        value = obj.get(name)
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise _RecordError("bad-record", f"'{name}' must be 64 lowercase hex digits, not {value!r}")
    if obj.get("alg") not in (ALG_SHA256, ALG_HMAC):
        raise _RecordError("bad-record", f"unknown 'alg' {obj.get('alg')!r}")
    if not isinstance(obj.get("chain"), str) or not obj["chain"]:
        raise _RecordError("bad-record", "'chain' must be a non-empty string")
    return obj


def _check_hash(line: bytes, rec: dict[str, Any], key: bytes | None, strict: bool) -> None:
    """Check one record's own hash; its links are the caller's business."""
    if rec["alg"] == ALG_HMAC and key is None:
        raise _RecordError("key-required", f"the chain is keyed ({ALG_HMAC}): set {KEY_ENV} to verify it")
    if rec["alg"] == ALG_SHA256 and key is not None:
        raise _RecordError("alg-mismatch", f"the record is unkeyed ({ALG_SHA256}) but a key was given; "
                                     "an unkeyed chain can be rewritten by anyone")
    stored = rec["hash"]
    if strict:
        body = {k: v for k, v in rec.items() if k != "hash"}
        try:
            canon = canonical_json(body)
        except AuditLogError as exc:
            raise _RecordError("bad-record", str(exc)) from None
        if not hmac.compare_digest(_digest(key, rec["prev"], canon), stored):
            raise _RecordError("hash-mismatch", "the record does not match its hash: altered"
                         + (", or the key is wrong" if key is not None else ""))
        if line + b"\n" != _line(canon, stored):
            raise _RecordError("non-canonical", "the content matches its hash but the line is not in canonical form")
        return
    match = _HASH_MEMBER.search(line)
    if match is None or match.group(1).decode("ascii") != stored:
        raise _RecordError("non-canonical", "the line does not end with its hash member")
    if not hmac.compare_digest(_digest(key, rec["prev"], line[:match.start()] + b"}"), stored):
        raise _RecordError("hash-mismatch", "the record does not match its hash: altered"
                     + (", or the key is wrong" if key is not None else ""))


# --------------------------------------------------------------------------- files of a log


def _base_of(path: Path) -> Path:
    m = _ROTATED.match(path.name)
    return path.with_name(m.group("base")) if m else path


def _lock_path(log: Path) -> Path:
    return log.with_name(log.name + ".lock")


def _rotated_files(log: Path) -> list[Path]:
    """Rotated files of the log at ``log``, oldest first."""
    folder = log.parent
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditLogError(f"{folder}: {exc.strerror or exc}") from None
    found = []
    for name in names:
        m = _ROTATED.match(name)
        if m and m.group("base") == log.name:
            found.append((int(m.group("seq")), folder / name))
    return [p for _, p in sorted(found)]


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a log in chain order: rotated files oldest first, then the log.

    Parameters
    ----------
    path
        The log's own (active) path, a rotated file (just that file), or a
        folder (every log in it, ``*.jsonl`` and rotated ones, one log after
        another, by name).

    Returns
    -------
    list of Path
        Existing files only.
    """
    p = Path(path)
    if p.is_dir():
        bases: set[str] = set()
        for entry in p.iterdir():
            m = _ROTATED.match(entry.name)
            if m:
                bases.add(m.group("base"))
            elif entry.name.endswith(".jsonl") and entry.is_file():
                bases.add(entry.name)
        return [f for base in sorted(bases) for f in log_files(p / base)]
    if _ROTATED.match(p.name):
        return [p] if p.exists() else []
    return [*_rotated_files(p), *([p] if p.exists() else [])]


def expand_log_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand paths with :func:`log_files` into one list in chain order.

    Each path is expanded, duplicates dropped, and the files of each log put
    in chain order (rotated by ``seq``, the active file last); logs keep the
    order in which they were first named.

    Examples
    --------
    >>> expand_log_paths([])
    []
    """
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        for f in log_files(path):
            group = groups.setdefault(_base_of(f), [])
            if f not in group:
                group.append(f)

    def order(f: Path) -> tuple[int, int]:
        m = _ROTATED.match(f.name)
        return (0, int(m.group("seq"))) if m else (1, 0)

    return [f for group in groups.values() for f in sorted(group, key=order)]


@contextlib.contextmanager
def _shared_lock(logs: Iterable[Path]) -> Iterator[None]:
    """Shared locks of the given logs, as far as they can be had.

    Readers lock only to take a consistent snapshot; a reader that cannot open
    a lock file (read-only copy, no permission) reads without one.
    """
    fds = []
    try:
        for lock in sorted({_lock_path(log) for log in logs}):
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def _snapshot(files: Sequence[Path]) -> Iterator[list[tuple[Path, IO[bytes] | OSError, int]]]:
    """Open files with their sizes taken under the shared lock.

    Reading each only up to that size gives a consistent view while writers
    go on appending, and holds no lock during the (long) read.
    """
    opened: list[tuple[Path, IO[bytes] | OSError, int]] = []
    try:
        with _shared_lock({_base_of(f) for f in files}):
            for f in files:
                try:
                    fh = open_regular(f)
                except OSError as exc:
                    opened.append((f, exc, 0))
                    continue
                opened.append((f, fh, os.fstat(fh.fileno()).st_size))
        yield opened
    finally:
        for _, held, _size in opened:
            if not isinstance(held, OSError):
                held.close()


def _lines(fh: IO[bytes], size: int) -> Iterator[bytes]:
    remaining = size
    for raw in fh:
        if len(raw) >= remaining:
            yield raw[:remaining]
            return
        remaining -= len(raw)
        yield raw


# --------------------------------------------------------------------------- verify


def verify(paths: Iterable[str | os.PathLike[str]], *, key: bytes | None = None, from_genesis: bool = True,
           anchor: str | None = None, strict: bool = True) -> VerifyResult:
    """Check files, in the order given, as one hash chain.

    Stops at the first problem. Use :func:`expand_log_paths` or
    :func:`log_files` to turn a log's path into its files.

    Parameters
    ----------
    paths
        The files, oldest first.
    key
        The HMAC key of a keyed chain; given, unkeyed records fail.
    from_genesis
        Require the chain to start at its first record (``seq`` 1, ``prev``
        zeros). False checks a tail of a chain whose older files are elsewhere.
    anchor
        A head hash recorded earlier: fail unless some record has it, which
        detects records cut off the end since then.
    strict
        Re-canonicalise each record (detects a line not in canonical form).
        False hashes the stored bytes only: about twice as fast, and still
        detects any change to a line.

    Returns
    -------
    VerifyResult
    """
    files = tuple(Path(p) for p in paths)
    checked = 0
    tip: str | None = GENESIS if from_genesis else None
    next_seq: int | None = 1 if from_genesis else None
    chain: str | None = None
    alg: str | None = None
    anchored = anchor is None or anchor == GENESIS  # the head of an empty log anchors nothing
    last_file, last_line = (files[-1] if files else Path()), 0

    def fail(kind: ProblemKind, file: Path, line: int, message: str) -> VerifyResult:
        return VerifyResult(False, checked, files, tip, Problem(kind, file, line, message))

    with _snapshot(files) as opened:
        for path, fh, size in opened:
            if isinstance(fh, OSError):
                return fail("unreadable", path, 0, fh.strerror or str(fh))
            lineno = 0
            try:
                for raw in _lines(fh, size):
                    lineno += 1
                    if not raw.endswith(b"\n"):
                        raise _RecordError("torn-tail", f"incomplete last line ({len(raw)} bytes, no newline): an "
                                     "interrupted write; the next append or `rspolicy log repair` quarantines it")
                    line = raw[:-1]
                    rec = _parse(line)
                    if chain is None:
                        chain, alg = rec["chain"], rec["alg"]
                    elif rec["chain"] != chain:
                        raise _RecordError("chain-mismatch", f"record of chain {rec['chain']}, not {chain}")
                    if rec["alg"] != alg:
                        raise _RecordError("alg-mismatch", f"'alg' changes from {alg} to {rec['alg']} within the chain")
                    if next_seq is not None and rec["seq"] != next_seq:
                        raise _RecordError("seq-gap", f"seq {rec['seq']} where {next_seq} was expected: "
                                     "records deleted, inserted or reordered")
                    if tip is not None and rec["prev"] != tip:
                        raise _RecordError("broken-link", "prev is not 64 zeros, the start of a chain" if tip == GENESIS
                                     else "prev is not the hash of the record before it")
                    _check_hash(line, rec, key, strict)
                    checked += 1
                    tip, next_seq = rec["hash"], rec["seq"] + 1
                    if tip == anchor:
                        anchored = True
            except _RecordError as fault:
                return fail(fault.kind, path, lineno, fault.message)
            except OSError as exc:
                return fail("unreadable", path, lineno + 1, exc.strerror or str(exc))
            last_file, last_line = path, lineno
    if not anchored:
        return fail("head-missing", last_file, last_line,
                    f"no record has the anchored hash {anchor}: records were cut off or the log rewritten")
    return VerifyResult(True, checked, files, tip)


# --------------------------------------------------------------------------- reading and export


def _get(rec: Mapping[str, Any], *paths: str) -> Any:
    """The first of several dotted paths present in ``rec``, else None."""
    for dotted in paths:
        node: Any = rec
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    return None


#: Where each flattened column is looked for, first match wins. The record
#: layout is the caller's: these are its documented places plus plain fallbacks.
_COLUMN_PATHS: dict[str, tuple[str, ...]] = {
    "seq": ("seq",),
    "decision_id": ("decision_id",),
    "timestamp": ("timestamp",),
    "path": ("input.path", "path"),
    "satellite": ("input.satellite", "satellite"),
    "sensor": ("input.sensor", "sensor"),
    "product_class": ("input.product_class", "result.product_class", "product_class"),
    "gsd_m": ("input.gsd_m", "result.gsd_m", "gsd_m"),
    "action": ("result.action", "action"),
    # The kind of a record that is not a decision: "released", "reconcile", "failed",
    # "torn-tail-quarantined", or any later kind (empty for decisions).
    "event": ("event",),
    "target_gsd_m": ("result.target_gsd_m", "output.target_gsd_m", "target_gsd_m"),
    "policy_name": ("policy.name",),
    "policy_version": ("policy.version",),
    "policy_sha256": ("policy.sha256",),
    "command": ("command",),
    "recipient": ("recipient",),
    "purpose": ("purpose",),
    "operator": ("operator",),
    "host": ("host",),
    # The decision's reasons, one per line.
    "reasons": ("result.reasons",),
    # Why a product could not be completed (a "failed" record; it may carry the decision taken before).
    "error": ("error", "reason"),
    # One file per line, as sha256sum prints it: "<sha256>  <path>".
    "inputs": ("input.files",),
    "outputs": ("output.files",),
    "output_gsd_m": ("output.gsd_m",),
    # The members of an event record that no other column shows, as JSON.
    "detail": (),
    "hash": ("hash",),
}
#: Columns of ``export(fmt="csv")``.
CSV_COLUMNS = tuple(_COLUMN_PATHS)
_LIST_COLUMNS = frozenset({"reasons"})
_FILE_COLUMNS = frozenset({"inputs", "outputs"})
#: Top-level members some column shows, or that belong to the chain: left out of ``detail``.
_SHOWN = frozenset({p.split(".", 1)[0] for paths in _COLUMN_PATHS.values() for p in paths}
                   | CHAIN_FIELDS | {"rspolicy"})


def _sha256sum_line(entry: Any) -> str:
    """One file as ``sha256sum`` prints it; a name holding a backslash or line break escaped as it does."""
    if not isinstance(entry, Mapping):
        return json.dumps(entry, ensure_ascii=False, sort_keys=True)
    digest, path = str(entry.get("sha256") or "-"), str(entry.get("path", ""))
    if any(c in path for c in "\\\n\r"):
        return "\\" + digest + "  " + path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return f"{digest}  {path}"


def _lines_cell(values: Any, line: Callable[[Any], str]) -> str | None:
    if values is None:
        return None
    items = values if isinstance(values, list | tuple) else [values]
    return "\n".join(line(v) for v in items)


def _reason_line(value: Any) -> str:
    return " ".join(str(value).splitlines())


def _detail(rec: Mapping[str, Any]) -> str | None:
    if "event" not in rec:
        return None
    rest = {k: v for k, v in rec.items() if k not in _SHOWN}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if rest else None


def flatten(rec: Mapping[str, Any]) -> dict[str, Any]:
    r"""The CSV columns of one record (None where the record has no value).

    Lists become text with one item per line: ``reasons`` one reason a line,
    ``inputs`` and ``outputs`` one file a line as ``sha256sum`` prints it
    (``<sha256>  <path>``; a path holding a backslash or line break is
    escaped and its line starts with ``\``, as ``sha256sum`` does).
    ``error`` is a ``failed`` record's error. ``detail`` holds, as JSON, the
    members of an event record that no other column shows (a ``reconcile``
    record's ``absent`` and ``differs``, a ``note``); it is empty for
    decisions.
    """
    flat: dict[str, Any] = {}
    for col, paths in _COLUMN_PATHS.items():
        value = _get(rec, *paths) if paths else None
        if col in _LIST_COLUMNS:
            value = _lines_cell(value, _reason_line)
        elif col in _FILE_COLUMNS:
            value = _lines_cell(value, _sha256sum_line)
        elif col == "detail":
            value = _detail(rec)
        flat[col] = value
    return flat


def _matches(rec: Mapping[str, Any], since: dt.datetime | None, until: dt.datetime | None,
             action: str | None, satellite: str | None) -> bool:
    if since is not None or until is not None:
        when = _parse_time(rec.get("timestamp"))
        if when is None or (since is not None and when < _as_utc(since)) \
                or (until is not None and when >= _as_utc(until)):
            return False
    if action is not None and str(_get(rec, *_COLUMN_PATHS["action"])).lower() != action.lower():
        return False
    return satellite is None or str(_get(rec, *_COLUMN_PATHS["satellite"])).lower() == satellite.lower()


def iter_records(paths: Iterable[str | os.PathLike[str]], *, since: dt.datetime | None = None,
                 until: dt.datetime | None = None, action: str | None = None,
                 satellite: str | None = None) -> Iterator[dict[str, Any]]:
    """Read records from files in order, with optional filters; no verification.

    A torn last line is skipped (it was never acknowledged).

    Parameters
    ----------
    paths
        The files, in chain order.
    since, until
        Keep records whose ``timestamp`` is >= ``since`` and < ``until``
        (naive datetimes are UTC); records without a time stamp are dropped
        when either is given.
    action, satellite
        Keep records with this ``result.action`` / ``input.satellite``
        (case-insensitive).

    Yields
    ------
    dict
        Each record as stored, including ``seq``, ``prev`` and ``hash``.

    Raises
    ------
    AuditLogError
        For a file that cannot be read or a complete line that is not JSON;
        ``verify`` says more.
    """
    with _snapshot([Path(p) for p in paths]) as opened:
        for path, fh, size in opened:
            if isinstance(fh, OSError):
                raise AuditLogError(f"{path}: {fh.strerror or fh}")
            for lineno, raw in enumerate(_lines(fh, size), 1):
                if not raw.endswith(b"\n"):
                    break
                try:
                    rec = _loads(raw)
                except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                    raise AuditLogError(f"{path}:{lineno}: not JSON ({exc}); run `rspolicy log verify`") from None
                if not isinstance(rec, dict):
                    raise AuditLogError(f"{path}:{lineno}: not a JSON object; run `rspolicy log verify`")
                if _matches(rec, since, until, action, satellite):
                    yield rec


def _csv_cell(value: Any) -> Any:
    # A cell starting with one of these is run as a formula by spreadsheets;
    # the audit export is opened by people, so such text gets a leading quote.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def export_records(records: Iterable[Mapping[str, Any]], fmt: Literal["csv", "jsonl"], out: TextIO) -> int:
    """Write records as CSV (:data:`CSV_COLUMNS`) or JSON Lines.

    JSON Lines are written exactly as the log stores them, so each line can
    still be checked against its hash. CSV has one row per record of any
    kind, decisions and events alike (see :func:`flatten`): who
    (``operator``, ``host``), for whom and why (``recipient``, ``purpose``),
    under which policy, the decision and its ``reasons``, a failure's
    ``error``, and every input and output file with its sha256 (``inputs``,
    ``outputs``). CSV text cells starting with ``=``, ``+``, ``-``, ``@``,
    tab or carriage return get a leading ``'`` so that a spreadsheet does not
    run them.

    Parameters
    ----------
    records
        Records as read by :func:`iter_records`.
    fmt
        ``"csv"`` or ``"jsonl"``.
    out
        A text stream; for CSV open files with ``newline=""``.

    Returns
    -------
    int
        Records written.
    """
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for rec in records:
            writer.writerow([_csv_cell(v) for v in flatten(rec).values()])
            count += 1
    elif fmt == "jsonl":
        for rec in records:
            body = {k: v for k, v in rec.items() if k != "hash"}
            out.write(_line(canonical_json(body), str(rec.get("hash", ""))).decode("utf-8"))
            count += 1
    else:
        raise AuditLogError(f"unknown export format {fmt!r}: use csv or jsonl")
    return count


# --------------------------------------------------------------------------- low-level file helpers


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last newline before ``end``, or -1."""
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_BLOCK)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _tail(fd: int, size: int) -> tuple[bytes | None, int]:
    """The last complete line (without newline) and where a torn tail starts.

    The torn tail is whatever follows the last newline; it starts at ``size``
    when there is none.
    """
    last_nl = _rfind_newline(fd, size)
    if last_nl < 0:
        return None, 0
    start = _rfind_newline(fd, last_nl) + 1
    return os.pread(fd, last_nl - start, start), last_nl + 1


def _last_line(path: Path) -> bytes | None:
    """The last complete line of a log file, or None when it has none."""
    with open_regular(path) as fh:
        last, _ = _tail(fh.fileno(), os.fstat(fh.fileno()).st_size)
    return last


def _first_line(fd: int) -> bytes | None:
    buf = b""
    while True:
        chunk = os.pread(fd, _TAIL_BLOCK, len(buf))
        i = chunk.find(b"\n")
        if i >= 0:
            return buf + chunk[:i]
        if not chunk:
            return None
        buf += chunk


def _write_all(fd: int, data: bytes, size_before: int) -> None:
    """Write ``data`` at the end; on failure cut the file back to ``size_before``.

    A regular file takes the whole line in one write; a short write happens
    only when the disk fills up, and the lock makes finishing it safe.
    """
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Tip:
    """The end of the chain an append continues."""

    def __init__(self, seq: int, digest: str, chain: str) -> None:
        self.seq = seq
        self.digest = digest
        self.chain = chain


class _Fds:
    """The descriptors an :class:`AuditLog` holds, closable from a finalizer."""

    def __init__(self) -> None:
        self.lock: int | None = None
        self.log: int | None = None
        self.log_id: tuple[int, int] | None = None
        self.pid = os.getpid()

    def close(self) -> None:
        for fd in (self.lock, self.log):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.lock = self.log = self.log_id = None


# --------------------------------------------------------------------------- the log


class AuditLog:
    """An append-only, hash-chained JSON Lines log of decisions.

    Parameters
    ----------
    path
        The log file; it and its folder are created on the first append.
    key
        HMAC key (at least 16 bytes) for a keyed chain, e.g. from
        :func:`key_from_env`; None for a plain SHA-256 chain.
    rotate_bytes
        Rotate before a record would make the file larger than this.
    rotate_daily
        Rotate before the first record of a new UTC day.
    fsync
        ``fdatasync`` every record (and the folder after creating or rotating
        a file) before returning. Turn off only for tests and benchmarks.

    Notes
    -----
    One instance may be shared by threads; processes each open their own (a
    forked child reopens its descriptors, since a lock inherited through fork
    would not exclude the parent).
    """

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None = None, rotate_bytes: int | None = None,
                 rotate_daily: bool = False, fsync: bool = True) -> None:
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise AuditLogError(f"an audit log key needs at least {MIN_KEY_BYTES} bytes")
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise AuditLogError(f"rotate_bytes must be positive, not {rotate_bytes}")
        self.path = Path(path)
        self.key = key
        self.alg = ALG_SHA256 if key is None else ALG_HMAC
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.fsync = fsync
        self._mutex = threading.Lock()
        self._fds = _Fds()
        # (dev, ino) of a file -> (seq, UTC date) of its first record; never changes.
        self._first: dict[tuple[int, int], tuple[int, dt.date]] = {}
        self._finalizer = weakref.finalize(self, self._fds.close)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, alg={self.alg!r})"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptors held between appends (reopened when needed)."""
        with self._mutex:
            self._fds.close()

    # ------------------------------------------------------------------ writing

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Add one record to the chain, durably.

        Parameters
        ----------
        record
            The record body: a JSON-able mapping with str keys that does not
            use the chain members ``seq``, ``prev``, ``hash``, ``alg``,
            ``chain``.

        Returns
        -------
        dict
            The record as written (read back from its line), with its chain
            members.

        Raises
        ------
        AuditLogError
            When the record is not JSON-able, the log cannot be written, its
            last record is damaged (run ``rspolicy log verify``), or it uses
            another algorithm than this instance (keyed vs unkeyed).
        """
        if not isinstance(record, Mapping):
            raise AuditLogError(f"an audit record must be a mapping, not {type(record).__name__}")
        clash = CHAIN_FIELDS.intersection(record)
        if clash:
            raise AuditLogError(f"the record may not set the chain members {', '.join(sorted(clash))}")
        members = _members(record)
        with self._exclusive() as log_fd:
            fd, size, tip = self._prepare(log_fd)
            line, _ = self._append_body(fd, size, tip, members, record.get("timestamp"))
        rec: dict[str, Any] = _loads(line)
        return rec

    def repair(self) -> RepairResult | None:
        """Quarantine a torn tail now, as the next append would.

        Returns
        -------
        RepairResult or None
            What was moved, or None when the log has no torn tail.
        """
        with self._exclusive() as fd:
            size = os.fstat(fd).st_size
            last, torn_at = _tail(fd, size)
            if torn_at == size:
                return None
            tip = self._tip_from(last) if last is not None else self._tip_before_file()
            result, _ = self._quarantine(fd, torn_at, size, tip)
            return result

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[int]:
        """Hold the thread mutex and the exclusive file lock; give the log's fd."""
        with self._mutex:
            fds = self._fds
            if fds.pid != os.getpid():
                # Forked: these descriptors share their lock with the parent.
                fds.lock = fds.log = fds.log_id = None
                fds.pid = os.getpid()
                self._first.clear()
            try:
                if fds.lock is None:
                    self._make_folder()
                    fds.lock = os.open(_lock_path(self.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
                fcntl.flock(fds.lock, fcntl.LOCK_EX)
            except OSError as exc:
                raise AuditLogError(f"{_lock_path(self.path)}: cannot lock: {exc.strerror or exc}") from None
            try:
                yield self._open_log()
            except AuditLogError:
                raise
            except OSError as exc:
                raise AuditLogError(f"{self.path}: {exc.strerror or exc}") from None
            finally:
                fcntl.flock(fds.lock, fcntl.LOCK_UN)

    def _make_folder(self) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)

    def _open_log(self) -> int:
        """The log's fd, reopened when another process rotated the file away."""
        fds = self._fds
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if fds.log is not None and fds.log_id == current:
            return fds.log
        if fds.log is not None:
            os.close(fds.log)
            fds.log = fds.log_id = None
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AuditLogError(f"{self.path}: not a regular file")
        fds.log, fds.log_id = fd, (st.st_dev, st.st_ino)
        if current is None and self.fsync:
            _fsync_dir(self.path.parent)
        return fd

    def _prepare(self, fd: int) -> tuple[int, int, _Tip]:
        """Check the end of the log, quarantining a torn tail; give fd, size, tip."""
        size = os.fstat(fd).st_size
        last, torn_at = _tail(fd, size)
        tip = self._tip_from(last) if last is not None else self._tip_before_file()
        if torn_at < size:
            # The quarantine note moves the tip on (and may rotate the file).
            _, fd = self._quarantine(fd, torn_at, size, tip)
            size = os.fstat(fd).st_size
        return fd, size, tip

    def _tip_from(self, line: bytes, where: Path | None = None) -> _Tip:
        """Check the last record of the chain on its own and continue from it."""
        where = where or self.path
        try:
            rec = _parse(line)
            if rec["alg"] != self.alg:
                raise _RecordError("alg-mismatch", (
                    f"the chain is keyed ({ALG_HMAC}): set {KEY_ENV} to append to it" if self.key is None else
                    f"the chain is unkeyed ({ALG_SHA256}); a keyed chain must start in a new log file"))
            _check_hash(line, rec, self.key, strict=False)
        except _RecordError as fault:
            raise AuditLogError(f"{where}: last record: {fault.kind}: {fault.message}; "
                                "run `rspolicy log verify` before appending") from None
        return _Tip(rec["seq"], rec["hash"], rec["chain"])

    def _tip_before_file(self) -> _Tip:
        """The tip when the active file is empty: the newest rotated file's head, or genesis."""
        for path in reversed(_rotated_files(self.path)):
            last = _last_line(path)
            if last is not None:
                return self._tip_from(last, path)
        return _Tip(0, GENESIS, new_decision_id())

    def _append_body(self, fd: int, size: int, tip: _Tip, members: dict[str, bytes], timestamp: Any,
                     may_rotate: bool = True) -> tuple[bytes, int]:
        """Chain, maybe rotate, write and sync one record; give its line and the fd."""
        chain = _members({"seq": tip.seq + 1, "prev": tip.digest, "alg": self.alg, "chain": tip.chain})
        canon = _join({**members, **chain})
        digest = _digest(self.key, tip.digest, canon)
        line = _line(canon, digest)
        if may_rotate and size > 0 and self._should_rotate(fd, size, len(line), timestamp):
            fd = self._rotate(fd)
            size = 0
        _write_all(fd, line, size)
        if self.fsync:
            os.fdatasync(fd)
        tip.seq, tip.digest = tip.seq + 1, digest
        return line, fd

    def _first_record(self, fd: int) -> tuple[int, dt.date]:
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if ident not in self._first:
            first = _first_line(fd)
            try:
                rec = _parse(first) if first is not None else None
            except _RecordError as fault:
                raise AuditLogError(f"{self.path}: first record: {fault.kind}: {fault.message}; "
                                    "run `rspolicy log verify`") from None
            if rec is None:
                raise AuditLogError(f"{self.path}: no complete first record; run `rspolicy log verify`")
            when = _parse_time(rec.get("timestamp")) or dt.datetime.now(dt.UTC)
            self._first[ident] = (rec["seq"], when.date())
        return self._first[ident]

    def _should_rotate(self, fd: int, size: int, adding: int, timestamp: Any) -> bool:
        if self.rotate_bytes is not None and size + adding > self.rotate_bytes:
            return True
        if not self.rotate_daily:
            return False
        # The record's own day, so that a file holds one day's records even when
        # a record stamped just before midnight is written just after it.
        day = (_parse_time(timestamp) or dt.datetime.now(dt.UTC)).date()
        return self._first_record(fd)[1] < day

    def _rotate(self, fd: int) -> int:
        seq, day = self._first_record(fd)
        target = self.path.with_name(f"{self.path.name}.{day.isoformat()}.{seq:010d}")
        if target.exists():
            raise AuditLogError(f"{target}: exists; cannot rotate {self.path} onto it")
        os.rename(self.path, target)
        # Reopening creates the new file and syncs the folder, which makes the rename durable too.
        return self._open_log()

    def _quarantine(self, fd: int, start: int, size: int, tip: _Tip) -> tuple[RepairResult, int]:
        torn = os.pread(fd, size - start, start)
        quarantine = self.path.with_name(self.path.name + ".torn")
        qfd = os.open(quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            qoffset = os.fstat(qfd).st_size
            _write_all(qfd, torn, qoffset)
            # The bytes must be safe elsewhere before they leave the log.
            os.fsync(qfd)
        finally:
            os.close(qfd)
        if self.fsync:
            _fsync_dir(self.path.parent)
        os.ftruncate(fd, start)
        if self.fsync:
            os.fsync(fd)
        digest = hashlib.sha256(torn).hexdigest()
        note = {
            "decision_id": new_decision_id(),
            "timestamp": utc_timestamp(),
            "rspolicy": rspolicy.__version__,
            "event": _TORN_EVENT,
            "torn": {"log_offset": start, "length": len(torn), "sha256": digest,
                     "quarantine": quarantine.name, "quarantine_offset": qoffset},
            "host": socket.gethostname(),
        }
        # The note stays in the file the torn bytes came from, whatever its size.
        line, fd = self._append_body(fd, start, tip, _members(note), note["timestamp"], may_rotate=False)
        return RepairResult(quarantine, start, len(torn), digest, _loads(line)), fd

    # ------------------------------------------------------------------ reading

    def files(self) -> list[Path]:
        """The files of this log in chain order (see :func:`log_files`)."""
        return log_files(self.path)

    def head(self) -> Head:
        """The newest complete record: its hash, the chain's record count and its file.

        A torn tail is ignored. The record's own hash is checked when it can
        be (always for unkeyed chains; with the key for keyed ones).

        Raises
        ------
        AuditLogError
            When the last record is damaged or the log cannot be read.
        """
        try:
            with _shared_lock([self.path]):
                for path in reversed(self.files()):
                    last = _last_line(path)
                    if last is not None:
                        return self._head_of(last, path)
        except OSError as exc:
            raise AuditLogError(f"{self.path}: {exc.strerror or exc}") from None
        return Head(GENESIS, 0, self.path)

    def _head_of(self, line: bytes, path: Path) -> Head:
        try:
            rec = _parse(line)
            if rec["alg"] == ALG_SHA256 or self.key is not None:
                _check_hash(line, rec, None if rec["alg"] == ALG_SHA256 else self.key, strict=False)
        except _RecordError as fault:
            raise AuditLogError(f"{path}: last record: {fault.kind}: {fault.message}") from None
        return Head(rec["hash"], rec["seq"], path)

    def verify(self, *paths: str | os.PathLike[str], from_genesis: bool = True, anchor: str | None = None,
               strict: bool = True) -> VerifyResult:
        """Verify this log's whole chain, or the given paths, with this log's key.

        Parameters
        ----------
        *paths
            Files or logs, expanded with :func:`expand_log_paths`; this log's
            files when none are given.
        from_genesis, anchor, strict
            As for :func:`verify`.
        """
        files = expand_log_paths(paths) if paths else self.files()
        return verify(files, key=self.key, from_genesis=from_genesis, anchor=anchor, strict=strict)

    def iter_records(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                     action: str | None = None, satellite: str | None = None) -> Iterator[dict[str, Any]]:
        """The records of this log, oldest first, filtered as by :func:`iter_records`."""
        return iter_records(self.files(), since=since, until=until, action=action, satellite=satellite)

    def export(self, fmt: Literal["csv", "jsonl"], out: TextIO, *, since: dt.datetime | None = None,
               until: dt.datetime | None = None, action: str | None = None, satellite: str | None = None) -> int:
        """Write this log's records as CSV or JSON Lines (see :func:`export_records`).

        Returns
        -------
        int
            Records written.
        """
        return export_records(self.iter_records(since=since, until=until, action=action, satellite=satellite),
                              fmt, out)


def open_audit_log(explicit: str | os.PathLike[str] | None, *, required: bool,
                   config: Config | None = None) -> AuditLog | None:
    """The audit log named explicitly, by ``$RSPOLICY_LOG`` or by the config file (as the commands find it).

    Parameters
    ----------
    explicit
        A path, or None.
    required
        Open the default log (``~/.local/state/rspolicy/decisions.jsonl``)
        when nothing names one, as ``enforce`` does; otherwise return None.
    config
        The config file's settings, when already read; otherwise read here.

    Raises
    ------
    rspolicy.config.ConfigError
        When the config file cannot be used.
    AuditLogError
        When the log cannot be opened.
    """
    config = config if config is not None else load_config()
    path = resolve_log_path(explicit, config=config, default=required)
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return AuditLog(path, key=key_from_env(), rotate_bytes=config.rotate_bytes, rotate_daily=config.rotate_daily)
    except AuditLogError:
        raise
    except OSError as exc:
        raise AuditLogError(f"{path}: cannot open the audit log ({exc.strerror or exc})") from exc
