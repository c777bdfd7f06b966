"""The audit log: canonical JSON, the hash chain, tamper detection, concurrency, rotation, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import math
import multiprocessing
import re
import struct
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rspolicy import audit
from rspolicy.audit import GENESIS, AuditLog, canonical_json, verify
from rspolicy.cli.log import log as log_cli
from rspolicy.errors import AuditLogError

KEY = bytes(range(32))


def body(i: int, **extra: Any) -> dict[str, Any]:
    """A record shaped like the lead's decision records."""
    rec: dict[str, Any] = {
        "decision_id": audit.new_decision_id(),
        "timestamp": audit.utc_timestamp(),
        "rspolicy": "0.1.0",
        "policy": {"name": "cnsa-2022", "version": "1", "sha256": "ab" * 32},
        "input": {"path": f"/data/GF2_PMS1_{i:05d}.tiff", "satellite": "GF-2" if i % 3 else "ZY-3",
                  "sensor": "PMS1", "product_class": "panchromatic", "gsd_m": 0.8 + i / 100},
        "result": {"action": ("allow", "resample", "block")[i % 3], "target_gsd_m": 2.0 if i % 3 == 1 else None,
                   "rule": "pan-2m", "reasons": ["pan finer than 2 m"], "warnings": []},
        "output": {"path": None},
        "recipient": "Example GmbH",
        "purpose": "research",
        "operator": "alice",
        "host": "ws1",
        "n": i,
    }
    rec.update(extra)
    return rec


def make_log(path: Path, n: int, **kwargs: Any) -> AuditLog:
    kwargs.setdefault("fsync", False)
    log = AuditLog(path, **kwargs)
    for i in range(n):
        log.append(body(i))
    return log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --------------------------------------------------------------------------- canonical JSON (RFC 8785)

# RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_canonical_numbers_rfc8785_appendix_b(bits: str, text: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json(value) == text.encode()
    assert canonical_json([value]) == f"[{text}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_canonical_rejects_nan_and_infinity(bits: str) -> None:
    with pytest.raises(AuditLogError):
        canonical_json({"x": struct.unpack(">d", bytes.fromhex(bits))[0]})


def test_canonical_rfc8785_section_3_2_2_example() -> None:
    # The input of RFC 8785 section 3.2.2, parsed as a JSON parser would.
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            r' "string": "\u20ac$\u000F\u000aA' "'" r'\u0042\u0022\u005c\\\"\/",'
            ' "literals": [null, true, false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(text)) == expected.encode("utf-8")


def test_canonical_rfc8785_section_3_2_3_sorting() -> None:
    text = r'''{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
                "\u00f6": "Latin Small Letter O With Diaeresis"}'''
    out = json.loads(canonical_json(json.loads(text)))
    assert list(out.values()) == ["Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis",
                                  "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"]


@pytest.mark.parametrize("bad", [{1: "x"}, {"x": 2**53}, {"x": {1, 2}}, {"x": "\ud800"}, {"x": b"bytes"}])
def test_canonical_rejects_what_json_cannot_hold(bad: Any) -> None:
    with pytest.raises(AuditLogError):
        canonical_json(bad)


def test_canonical_integral_floats_and_strenum() -> None:
    from rspolicy.model import Action

    assert canonical_json({"b": 2.0, "a": -0.0, "c": Action.BLOCK, "d": (1, 2.5)}) == \
        b'{"a":0,"b":2,"c":"block","d":[1,2.5]}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_is_stable_through_the_parser(value: Any) -> None:
    # verify re-canonicalises what it reads back: that must give the same bytes.
    once = canonical_json(value)
    assert canonical_json(audit._loads(once)) == once


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_members_joined_are_the_canonical_object(obj: dict[str, Any]) -> None:
    # append canonicalises members outside the lock and joins them under it.
    assert audit._join(audit._members(obj)) == canonical_json(obj)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=5).filter(lambda k: k not in audit.CHAIN_FIELDS), json_values,
                       max_size=4))
def test_any_json_record_verifies(record: dict[str, Any]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "d.jsonl", fsync=False)
        log.append(record)
        log.append({"big": 1e20, "r": record})
        result = log.verify()
        assert result.ok, result.problem


def test_large_integral_float_round_trips(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "d.jsonl", fsync=False)
    written = log.append({"a": 2.0**53, "b": 1e20, "c": 295147905179352830000.0})
    assert b'"b":100000000000000000000' in (tmp_path / "d.jsonl").read_bytes()
    assert written["b"] == 1e20
    assert log.verify().ok


# --------------------------------------------------------------------------- ids and times


def test_decision_ids_are_uuid7_unique_and_sorted() -> None:
    ids = [audit.new_decision_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for text in ids[:10]:
        u = uuid.UUID(text)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
    ms = uuid.UUID(ids[0]).int >> 80
    assert abs(ms / 1000 - dt.datetime.now(dt.UTC).timestamp()) < 60


def test_utc_timestamp_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", audit.utc_timestamp())
    cest = dt.timezone(dt.timedelta(hours=2))
    assert audit.utc_timestamp(dt.datetime(2025, 6, 1, 14, 0, tzinfo=cest)) == "2025-06-01T12:00:00.000000Z"


# --------------------------------------------------------------------------- appending and the chain


def test_append_returns_record_as_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "d.jsonl", fsync=False)
    first = log.append(body(0))
    second = log.append(body(1, extra_float=2.0))
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev"] == GENESIS
    assert second["prev"] == first["hash"]
    assert first["alg"] == "sha256"
    assert first["chain"] == second["chain"]
    assert second["extra_float"] == 2  # as stored: JCS writes 2.0 as 2
    written = lines_of(tmp_path / "d.jsonl")
    assert [json.loads(x) for x in written] == [first, second]
    # The hashed bytes are the line up to its hash member: checkable with sha256 alone.
    import hashlib

    line = written[1].rstrip(b"\n")
    prefix = line[: line.rindex(b',"hash":')] + b"}"
    assert hashlib.sha256(second["prev"].encode() + prefix).hexdigest() == second["hash"]
    assert prefix == canonical_json({k: v for k, v in second.items() if k != "hash"})
    head = log.head()
    assert (head.hash, head.count, head.path) == (second["hash"], 2, tmp_path / "d.jsonl")


def test_append_rejects_chain_members_and_bad_values(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "d.jsonl", fsync=False)
    for bad in ({"seq": 5}, {"hash": "x"}, {"prev": GENESIS}, {"x": math.nan}, {"x": object()}):
        with pytest.raises(AuditLogError):
            log.append(bad)
    assert not (tmp_path / "d.jsonl").exists() or (tmp_path / "d.jsonl").stat().st_size == 0
    assert isinstance(AuditLogError("x"), OSError)


def test_empty_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.jsonl")
    assert log.head() == audit.Head(GENESIS, 0, tmp_path / "none.jsonl")
    result = log.verify()
    assert result.ok and result.records == 0 and result.head == GENESIS


def test_thousands_of_records_verify(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 3000)
    result = log.verify()
    assert result.ok, result.problem
    assert result.records == 3000
    assert result.head == log.head().hash
    assert log.head().count == 3000
    fast = log.verify(strict=False)
    assert fast.ok and fast.records == 3000


def test_fsync_on(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 25, fsync=True)
    assert log.verify().records == 25


def test_reopens_after_close_and_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "d.jsonl"
    a = make_log(path, 3)
    a.close()
    with AuditLog(path, fsync=False) as b:
        b.append(body(3))
    a.append(body(4))
    assert [r["seq"] for r in a.iter_records()] == [1, 2, 3, 4, 5]
    assert a.verify().ok


# --------------------------------------------------------------------------- tampering


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    path = tmp_path / "d.jsonl"
    make_log(path, 5)
    return path


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("what", "line", "kind"), [
    ("hash", 3, "hash-mismatch"),
    ("value", 2, "hash-mismatch"),
    ("key", 4, "bad-record"),
    ("prev", 2, "broken-link"),
    ("seq", 3, "seq-gap"),
    ("newline", 2, "bad-json"),
    ("last-newline", 5, "torn-tail"),
])
def test_flipped_byte_found_at_its_record(small_log: Path, what: str, line: int, kind: str) -> None:
    data = small_log.read_bytes()
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == 0x0A]]
    text = data[starts[line - 1]:starts[line]]
    rel = {
        "hash": text.rindex(b'"hash":"') + 20,
        "value": text.index(b"Example GmbH") + 3,
        "key": text.index(b'"seq"') + 2,
        "prev": text.index(b'"prev":"') + 30,
        "seq": text.index(b'"seq":') + 6,
        "newline": len(text) - 1,
        "last-newline": len(text) - 1,
    }[what]
    offset = starts[line - 1] + rel
    if what in ("hash", "prev"):  # another hex digit, so that the field stays well-formed
        raw = bytearray(data)
        raw[offset] = ord("1") if raw[offset] == ord("0") else ord("0")
        small_log.write_bytes(bytes(raw))
    else:
        _flip(small_log, offset)
    result = verify([small_log])
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.line, result.problem.kind) == (line, kind), result.problem
    assert result.problem.file == small_log
    assert result.records == line - 1


@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_every_flipped_byte_is_detected_at_its_line(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "d.jsonl"
    make_log(path, 3)
    original = path.read_bytes()
    for offset in range(len(original)):
        data = bytearray(original)
        data[offset] ^= mask
        path.write_bytes(bytes(data))
        result = verify([path])
        assert not result.ok, f"flip at {offset} ({chr(original[offset])!r}) undetected"
        assert result.problem is not None
        assert result.problem.line == _line_of_offset(original, offset), (offset, result.problem)


def test_whitespace_is_non_canonical(small_log: Path) -> None:
    lines = lines_of(small_log)
    lines[2] = lines[2].replace(b'"seq":', b'"seq": ')
    small_log.write_bytes(b"".join(lines))
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("non-canonical", 3)
    # The fast check hashes the stored bytes: it sees a change too.
    fast = verify([small_log], strict=False)
    assert fast.problem is not None and (fast.problem.kind, fast.problem.line) == ("hash-mismatch", 3)


def test_deleted_record(small_log: Path) -> None:
    lines = lines_of(small_log)
    del lines[2]
    small_log.write_bytes(b"".join(lines))
    result = verify([small_log])
    assert result.problem is not None
    assert (result.problem.kind, result.problem.line) == ("seq-gap", 3)
    assert "seq 4 where 3" in result.problem.message


def test_deleted_first_record(small_log: Path) -> None:
    small_log.write_bytes(b"".join(lines_of(small_log)[1:]))
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("seq-gap", 1)
    assert verify([small_log], from_genesis=False).ok


def test_swapped_records(small_log: Path) -> None:
    lines = lines_of(small_log)
    lines[1], lines[2] = lines[2], lines[1]
    small_log.write_bytes(b"".join(lines))
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("seq-gap", 2)


def test_inserted_record(small_log: Path) -> None:
    lines = lines_of(small_log)
    lines.insert(3, lines[1])
    small_log.write_bytes(b"".join(lines))
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("seq-gap", 4)


def test_rehashed_record_breaks_the_next_link(small_log: Path) -> None:
    # Someone edits record 2 and recomputes its own hash (unkeyed): record 3 no longer links.
    lines = lines_of(small_log)
    rec = json.loads(lines[1])
    rec["recipient"] = "Somebody Else"
    del rec["hash"]
    canon = canonical_json(rec)
    import hashlib

    digest = hashlib.sha256(rec["prev"].encode() + canon).hexdigest()
    lines[1] = canon[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
    small_log.write_bytes(b"".join(lines))
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("broken-link", 3)


def test_truncated_mid_line(small_log: Path) -> None:
    data = small_log.read_bytes()
    small_log.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 40])
    result = verify([small_log])
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("torn-tail", 5)
    assert result.records == 4


def test_tail_truncation_needs_an_anchor(small_log: Path) -> None:
    anchor = AuditLog(small_log).head().hash
    small_log.write_bytes(b"".join(lines_of(small_log)[:3]))
    assert verify([small_log]).ok  # what the chain alone cannot see
    result = verify([small_log], anchor=anchor)
    assert result.problem is not None and result.problem.kind == "head-missing"
    assert verify([small_log], anchor=json.loads(lines_of(small_log)[1])["hash"]).ok


def test_records_of_another_chain(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    make_log(a, 2)
    make_log(b, 2)
    result = verify([a, b])
    assert result.problem is not None
    assert (result.problem.file, result.problem.line, result.problem.kind) == (b, 1, "chain-mismatch")


def test_unreadable_file(tmp_path: Path) -> None:
    result = verify([tmp_path / "missing.jsonl"])
    assert result.problem is not None and result.problem.kind == "unreadable"


# --------------------------------------------------------------------------- keyed chain


def test_keyed_chain(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 10, key=KEY)
    assert all(r["alg"] == "hmac-sha256" for r in log.iter_records())
    assert log.verify().ok
    assert verify([path], key=KEY).ok

    wrong = verify([path], key=b"\x01" * 32)
    assert wrong.problem is not None and (wrong.problem.kind, wrong.problem.line) == ("hash-mismatch", 1)
    keyless = verify([path])
    assert keyless.problem is not None and keyless.problem.kind == "key-required"


def _rewrite(path: Path, key: bytes | None, change: dict[str, Any]) -> None:
    """What an attacker with write access but without the key can do: rebuild the whole chain."""
    forged = AuditLog(path.with_name("forged.jsonl"), key=key, fsync=False)
    for line in lines_of(path):
        rec = json.loads(line)
        for name in audit.CHAIN_FIELDS:
            rec.pop(name)
        rec.update(change)
        forged.append(rec)
    path.write_bytes(path.with_name("forged.jsonl").read_bytes())


def test_rewrite_without_the_key_fails(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    make_log(path, 5, key=KEY)
    _rewrite(path, b"attacker's own key material", {"recipient": "Somebody Else"})
    result = verify([path], key=KEY)
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("hash-mismatch", 1)


def test_rewrite_as_unkeyed_fails(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    make_log(path, 5, key=KEY)
    _rewrite(path, None, {"recipient": "Somebody Else"})
    assert verify([path]).ok  # an unkeyed rewrite fools an unkeyed check ...
    result = verify([path], key=KEY)  # ... not a keyed one
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("alg-mismatch", 1)


def test_keyed_and_unkeyed_do_not_mix(tmp_path: Path) -> None:
    keyed, plain = tmp_path / "k.jsonl", tmp_path / "p.jsonl"
    make_log(keyed, 1, key=KEY)
    make_log(plain, 1)
    with pytest.raises(AuditLogError, match="RSPOLICY_LOG_KEY"):
        AuditLog(keyed, fsync=False).append(body(9))
    with pytest.raises(AuditLogError, match="new log file"):
        AuditLog(plain, key=KEY, fsync=False).append(body(9))
    with pytest.raises(AuditLogError, match="last record"):
        AuditLog(keyed, key=b"\x02" * 32, fsync=False).append(body(9))
    with pytest.raises(AuditLogError):
        AuditLog(plain, key=b"short")


def test_key_from_env() -> None:
    assert audit.key_from_env({}) is None
    assert audit.key_from_env({"RSPOLICY_LOG_KEY": ""}) is None
    assert audit.key_from_env({"RSPOLICY_LOG_KEY": KEY.hex()}) == KEY
    assert audit.key_from_env({"RSPOLICY_LOG_KEY": KEY.hex().upper()}) == KEY
    assert audit.key_from_env({"RSPOLICY_LOG_KEY": "a passphrase of some length"}) == b"a passphrase of some length"
    with pytest.raises(AuditLogError):
        audit.key_from_env({"RSPOLICY_LOG_KEY": "short"})


# --------------------------------------------------------------------------- torn tail


def test_torn_tail_is_quarantined_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 4)
    before = path.read_bytes()
    torn = lines_of(path)[-1][:57]  # a crash part-way through writing a record
    with path.open("ab") as fh:
        fh.write(torn)

    result = log.verify()
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("torn-tail", 5)
    assert log.head().count == 4  # a torn tail is not a record

    written = log.append(body(4))
    records = list(log.iter_records())
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    note = records[4]
    assert note["event"] == "torn-tail-quarantined"
    assert note["torn"]["log_offset"] == len(before)
    assert note["torn"]["length"] == len(torn)
    import hashlib

    assert note["torn"]["sha256"] == hashlib.sha256(torn).hexdigest()
    assert (tmp_path / "d.jsonl.torn").read_bytes() == torn
    assert written["seq"] == 6 and written["prev"] == note["hash"]
    assert path.read_bytes().startswith(before)  # nothing before the tear was touched
    assert log.verify().ok


def test_complete_record_without_newline_is_torn_too(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 3)
    data = path.read_bytes()
    last = lines_of(path)[-1]
    path.write_bytes(data[:-1])
    repaired = log.repair()
    assert repaired is not None
    assert (repaired.length, repaired.offset) == (len(last) - 1, len(data) - len(last))
    assert repaired.record["seq"] == 3 and repaired.record["event"] == "torn-tail-quarantined"
    assert log.repair() is None
    result = log.verify()
    assert result.ok and result.records == 3  # record 3 gone to quarantine, note took seq 3
    assert (tmp_path / "d.jsonl.torn").read_bytes() == data[data.rindex(b"\n", 0, len(data) - 1) + 1:-1]


def test_damaged_last_record_blocks_appends(small_log: Path) -> None:
    _flip(small_log, len(small_log.read_bytes()) - 30)
    before = small_log.read_bytes()
    with pytest.raises(AuditLogError, match="log verify"):
        AuditLog(small_log, fsync=False).append(body(9))
    assert small_log.read_bytes() == before
    with pytest.raises(AuditLogError):
        AuditLog(small_log).head()


def test_torn_tail_in_keyed_log(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 2, key=KEY)
    with path.open("ab") as fh:
        fh.write(b'{"alg":"hmac')
    log.append(body(2))
    assert log.verify().ok and log.verify().records == 4


# --------------------------------------------------------------------------- concurrency


def _worker(path: str, worker: int, count: int, rotate_bytes: int | None, start: Any) -> None:
    log = AuditLog(path, fsync=False, rotate_bytes=rotate_bytes)
    start.wait()
    for i in range(count):
        log.append({"worker": worker, "i": i, "pad": "x" * (i % 50)})


@pytest.mark.parametrize(("procs", "count", "rotate_bytes"), [(4, 200, None), (2, 150, 8000)])
def test_processes_append_concurrently(tmp_path: Path, procs: int, count: int, rotate_bytes: int | None) -> None:
    path = tmp_path / "d.jsonl"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(procs)
    workers = [ctx.Process(target=_worker, args=(str(path), w, count, rotate_bytes, start)) for w in range(procs)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    log = AuditLog(path)
    result = log.verify()
    assert result.ok, result.problem
    assert result.records == procs * count
    payloads = [(r["worker"], r["i"]) for r in log.iter_records()]
    assert sorted(payloads) == [(w, i) for w in range(procs) for i in range(count)]
    for w in range(procs):  # each process's own records keep its order
        assert [i for ww, i in payloads if ww == w] == list(range(count))
    # Sequential runs would switch writers procs - 1 times: the appends really overlapped.
    assert sum(a[0] != b[0] for a, b in itertools.pairwise(payloads)) >= procs
    if rotate_bytes:
        assert len(log.files()) > 3


def test_threads_share_one_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "d.jsonl", fsync=False)
    threads = [threading.Thread(target=lambda t=t: [log.append({"t": t, "i": i}) for i in range(100)])
               for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert result.ok and result.records == 400


def test_forked_child_reopens_its_lock(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 1)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: [log.append({"child": i}) for i in range(100)])
    child.start()
    for i in range(100):
        log.append({"parent": i})
    child.join(60)
    assert child.exitcode == 0
    assert log.verify().records == 201


# --------------------------------------------------------------------------- rotation


def test_rotation_by_size(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 40, rotate_bytes=4000)
    files = log.files()
    assert len(files) > 3
    assert files[-1] == path
    for f in files[:-1]:
        assert re.fullmatch(r"d\.jsonl\.\d{4}-\d\d-\d\d\.\d{10}", f.name)
        assert f.stat().st_size <= 4000
        first = json.loads(lines_of(f)[0])
        assert f.name.endswith(f".{first['seq']:010d}")
    # The chain runs across files: a file's first prev is the previous file's head.
    for older, newer in itertools.pairwise(files):
        assert json.loads(lines_of(newer)[0])["prev"] == json.loads(lines_of(older)[-1])["hash"]
    result = log.verify()
    assert result.ok and result.records == 40 and result.files == tuple(files)
    assert log.head().count == 40

    # Order of the arguments does not matter; a folder works too.
    assert verify(audit.expand_log_paths([path, *reversed(files)])).records == 40
    assert verify(audit.expand_log_paths([tmp_path])).records == 40

    # Losing a middle file, or the oldest, is detected at the first line after the gap.
    middle = files[1]
    saved = middle.read_bytes()
    middle.unlink()
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.file, result.problem.line, result.problem.kind) == (files[2], 1, "seq-gap")
    middle.write_bytes(saved)
    files[0].unlink()
    assert log.verify().problem is not None
    assert log.verify(*files[1:], from_genesis=False).ok


def test_rotation_when_active_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 12, rotate_bytes=3000)
    anchor = log.head().hash
    rotated_head = json.loads(lines_of(log.files()[-2])[-1])
    path.unlink()  # an operator removed the active file (or a crash came between rename and create)
    written = log.append(body(12))
    # The chain goes on from the newest rotated file ...
    assert (written["seq"], written["prev"]) == (rotated_head["seq"] + 1, rotated_head["hash"])
    assert log.verify().ok
    # ... so losing the active file is a cut-off tail: only an anchor shows it.
    result = log.verify(anchor=anchor)
    assert result.problem is not None and result.problem.kind == "head-missing"


def test_single_oversized_record_still_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "d.jsonl", fsync=False, rotate_bytes=100)
    log.append(body(0))
    log.append(body(1))
    assert len(log.files()) == 2
    assert log.verify().records == 2


def test_daily_rotation(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = AuditLog(path, fsync=False, rotate_daily=True)
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    log.append(body(0, timestamp=audit.utc_timestamp(yesterday)))
    log.append(body(1, timestamp=audit.utc_timestamp(yesterday)))
    log.append(body(2))
    log.append(body(3))
    files = log.files()
    assert [f.name for f in files] == [f"d.jsonl.{yesterday.date().isoformat()}.0000000001", "d.jsonl"]
    assert [len(lines_of(f)) for f in files] == [2, 2]
    assert log.verify().records == 4


# --------------------------------------------------------------------------- reading and export


def test_iter_records_filters(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 9)
    assert [r["n"] for r in log.iter_records(action="resample")] == [1, 4, 7]
    assert [r["n"] for r in log.iter_records(satellite="zy-3")] == [0, 3, 6]
    assert [r["n"] for r in log.iter_records(action="block", satellite="GF-2")] == [2, 5, 8]
    assert list(log.iter_records(since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))) == []
    assert len(list(log.iter_records(since=dt.datetime(2000, 1, 1)))) == 9


def test_export_csv_columns(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 3)
    log.append(body(3, operator="=HYPERLINK(\"http://x\")"))
    out = io.StringIO()
    assert log.export("csv", out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == audit.CSV_COLUMNS
    assert list(audit.CSV_COLUMNS) == [
        "seq", "decision_id", "timestamp", "path", "satellite", "sensor", "product_class", "gsd_m", "action",
        "event", "target_gsd_m", "policy_name", "policy_version", "policy_sha256", "command", "recipient", "purpose",
        "operator", "host", "reasons", "error", "inputs", "outputs", "output_gsd_m", "detail", "hash"]
    first = rows[1]
    assert first["path"] == "/data/GF2_PMS1_00001.tiff"
    assert (first["satellite"], first["sensor"], first["product_class"]) == ("GF-2", "PMS1", "panchromatic")
    assert (first["gsd_m"], first["action"], first["target_gsd_m"]) == ("0.81", "resample", "2")
    assert (first["policy_name"], first["policy_sha256"]) == ("cnsa-2022", "ab" * 32)
    assert (first["recipient"], first["operator"]) == ("Example GmbH", "alice")
    assert first["hash"] == json.loads(lines_of(tmp_path / "d.jsonl")[1])["hash"]
    assert rows[0]["target_gsd_m"] == ""
    assert rows[3]["operator"].startswith("'=")


def test_export_jsonl_is_byte_identical(tmp_path: Path) -> None:
    log = make_log(tmp_path / "d.jsonl", 5)
    out = io.StringIO()
    log.export("jsonl", out)
    assert out.getvalue().encode() == (tmp_path / "d.jsonl").read_bytes()


# --------------------------------------------------------------------------- finding the log


def test_resolve_log_path(tmp_path: Path) -> None:
    env: dict[str, str] = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert audit.resolve_log_path(None, environ=env) is None
    config = tmp_path / "cfg" / "rspolicy" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('log = "logs/decisions.jsonl"\n')
    assert audit.resolve_log_path(None, environ=env) == config.parent / "logs" / "decisions.jsonl"
    config.write_text('log = "/var/log/rspolicy/decisions.jsonl"\n')
    assert audit.resolve_log_path(None, environ=env) == Path("/var/log/rspolicy/decisions.jsonl")
    assert audit.resolve_log_path(None, environ={**env, "RSPOLICY_LOG": "/e.jsonl"}) == Path("/e.jsonl")
    assert audit.resolve_log_path("x.jsonl", environ={**env, "RSPOLICY_LOG": "/e.jsonl"}) == Path("x.jsonl")
    home_config = tmp_path / "home" / ".config" / "rspolicy" / "config.toml"
    home_config.parent.mkdir(parents=True)
    home_config.write_text('log = "/h.jsonl"\n')
    assert audit.resolve_log_path(None, environ={"HOME": env["HOME"]}) == Path("/h.jsonl")
    config.write_text("log = [1]\n")
    with pytest.raises(AuditLogError):
        audit.resolve_log_path(None, environ=env)
    config.write_text("log = \n")
    with pytest.raises(AuditLogError):
        audit.resolve_log_path(None, environ=env)


# --------------------------------------------------------------------------- command line


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("RSPOLICY_LOG", "RSPOLICY_LOG_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    return CliRunner()


def test_cli_verify_exit_codes(runner: CliRunner, small_log: Path) -> None:
    head = AuditLog(small_log).head().hash
    ok = runner.invoke(log_cli, ["verify", str(small_log)])
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"OK: 5 records, head {head}\n"

    anchored = runner.invoke(log_cli, ["verify", "--anchor", head, str(small_log)])
    assert anchored.exit_code == 0

    lines = lines_of(small_log)
    del lines[1]
    small_log.write_bytes(b"".join(lines))
    broken = runner.invoke(log_cli, ["verify", str(small_log)])
    assert broken.exit_code == 1
    assert f"{small_log}:2: seq-gap" in broken.output

    assert runner.invoke(log_cli, ["verify"]).exit_code == 2  # no log anywhere
    assert runner.invoke(log_cli, ["verify", str(small_log.with_name("nope.jsonl"))]).exit_code == 2
    assert runner.invoke(log_cli, ["verify", "--anchor", "xyz", str(small_log)]).exit_code == 2
    assert runner.invoke(log_cli, ["verify", "--bogus"]).exit_code == 2


def test_cli_default_log_and_key_from_env(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    make_log(path, 3, key=KEY)
    env = {"RSPOLICY_LOG": str(path)}
    assert runner.invoke(log_cli, ["verify"], env=env).exit_code == 1  # keyed, no key
    result = runner.invoke(log_cli, ["verify"], env={**env, "RSPOLICY_LOG_KEY": KEY.hex()})
    assert result.exit_code == 0 and result.output.startswith("OK: 3 records")
    assert runner.invoke(log_cli, ["verify"], env={**env, "RSPOLICY_LOG_KEY": "abc"}).exit_code == 2


def test_cli_rotated_log(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    make_log(path, 30, rotate_bytes=3000)
    result = runner.invoke(log_cli, ["verify", str(path)])
    assert result.exit_code == 0 and result.output.startswith("OK: 30 records")
    assert runner.invoke(log_cli, ["verify", str(tmp_path)]).output.startswith("OK: 30 records")


def test_cli_head_show_export_repair(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 6)
    head = log.head()
    out = runner.invoke(log_cli, ["head", str(path)])
    assert out.exit_code == 0 and out.output == f"{head.hash}  6 records  {path}\n"

    shown = runner.invoke(log_cli, ["show", str(path), "--action", "resample"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0].split()[:2] == ["SEQ", "TIME"]
    assert len(shown.output.splitlines()) == 3 and "RESAMPLE -> 2 m" in shown.output
    as_json = runner.invoke(log_cli, ["show", str(path), "--json", "--satellite", "ZY-3", "--since", "2000-01-01"])
    assert [json.loads(x)["n"] for x in as_json.output.splitlines()] == [0, 3]
    assert runner.invoke(log_cli, ["show", str(path), "--since", "yesterday"]).exit_code == 2

    exported = runner.invoke(log_cli, ["export", str(path), "--format", "csv"])
    assert exported.exit_code == 0
    assert exported.output.splitlines()[0] == ",".join(audit.CSV_COLUMNS)
    target = tmp_path / "out.jsonl"
    assert runner.invoke(log_cli, ["export", str(path), "--format", "jsonl", "-o", str(target)]).exit_code == 0
    assert target.read_bytes() == path.read_bytes()
    assert runner.invoke(log_cli, ["export", str(path)]).exit_code == 2

    with path.open("ab") as fh:
        fh.write(b'{"torn')
    assert runner.invoke(log_cli, ["verify", str(path)]).exit_code == 1
    repaired = runner.invoke(log_cli, ["repair", str(path)])
    assert repaired.exit_code == 0 and "moved 6 bytes" in repaired.output
    assert runner.invoke(log_cli, ["repair", str(path)]).output.startswith("nothing to repair")
    assert runner.invoke(log_cli, ["verify", str(path)]).output.startswith("OK: 7 records")


# --------------------------------------------------------------------------- what verify says, problem by problem
#
# `rspolicy log verify` prints the first problem as FILE:LINE: KIND: MESSAGE. Each kind of damage below is
# made by hand (a line rewritten as an editor or a forger would), and verify must name it at its line, with
# the message that tells the auditor what is wrong, and give the records and head verified before it.


def _forge(rec: dict[str, Any], key: bytes | None = None) -> bytes:
    """The line a writer produces for ``rec`` (chain members given, ``hash`` computed as the format says)."""
    import hashlib
    import hmac

    canon = canonical_json({k: v for k, v in rec.items() if k != "hash"})
    data = rec["prev"].encode("ascii") + canon
    digest = (hmac.new(key, data, hashlib.sha256) if key is not None else hashlib.sha256(data)).hexdigest()
    return canon[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n'


def _edited(line: bytes, **change: Any) -> bytes:
    """A record line with members changed (or removed, for ``...``), written as plain JSON."""
    rec = json.loads(line)
    rec.update(change)
    return json.dumps({k: v for k, v in rec.items() if v is not ...}).encode() + b"\n"


def _three(folder: Path, key: bytes | None = None) -> tuple[Path, list[bytes], list[dict[str, Any]]]:
    """A log of three records in ``folder``: its path, its lines and its records."""
    folder.mkdir(exist_ok=True)
    path = folder / "d.jsonl"
    make_log(path, 3, key=key)
    lines = lines_of(path)
    return path, lines, [json.loads(line) for line in lines]


HEX_UPPER = "AB" * 32

# (name, line changed (1-based), how, kind, message); `how` gets the line and the parsed records.
PROBLEMS: list[tuple[str, int, Any, str, str]] = [
    ("not JSON", 2, lambda line, recs: b"not json\n", "bad-json",
     "not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("not an object", 2, lambda line, recs: b"[1, 2]\n", "bad-json", "not a JSON object"),
    ("seq zero", 1, lambda line, recs: _edited(line, seq=0), "bad-record",
     "'seq' must be a positive integer, not 0"),
    ("seq negative", 2, lambda line, recs: _edited(line, seq=-2), "bad-record",
     "'seq' must be a positive integer, not -2"),
    ("seq text", 2, lambda line, recs: _edited(line, seq="2"), "bad-record",
     "'seq' must be a positive integer, not '2'"),
    ("seq true", 1, lambda line, recs: _edited(line, seq=True), "bad-record",
     "'seq' must be a positive integer, not True"),
    ("seq fraction", 2, lambda line, recs: _edited(line, seq=2.5), "bad-record",
     "'seq' must be a positive integer, not 2.5"),
    ("seq missing", 3, lambda line, recs: _edited(line, seq=...), "bad-record",
     "'seq' must be a positive integer, not None"),
    ("prev upper-case", 2, lambda line, recs: _edited(line, prev=HEX_UPPER), "bad-record",
     f"'prev' must be 64 lowercase hex digits, not '{HEX_UPPER}'"),
    ("prev short", 2, lambda line, recs: _edited(line, prev="ab" * 31), "bad-record",
     f"'prev' must be 64 lowercase hex digits, not '{'ab' * 31}'"),
    ("prev number", 2, lambda line, recs: _edited(line, prev=5), "bad-record",
     "'prev' must be 64 lowercase hex digits, not 5"),
    ("hash missing", 3, lambda line, recs: _edited(line, hash=...), "bad-record",
     "'hash' must be 64 lowercase hex digits, not None"),
    ("hash not hex", 2, lambda line, recs: _edited(line, hash="g" * 64), "bad-record",
     f"'hash' must be 64 lowercase hex digits, not '{'g' * 64}'"),
    ("alg unknown", 2, lambda line, recs: _edited(line, alg="md5"), "bad-record", "unknown 'alg' 'md5'"),
    ("alg missing", 2, lambda line, recs: _edited(line, alg=...), "bad-record", "unknown 'alg' None"),
    ("chain empty", 2, lambda line, recs: _edited(line, chain=""), "bad-record", "'chain' must be a non-empty string"),
    ("chain missing", 1, lambda line, recs: _edited(line, chain=...), "bad-record",
     "'chain' must be a non-empty string"),
    ("chain number", 2, lambda line, recs: _edited(line, chain=7), "bad-record", "'chain' must be a non-empty string"),
    ("torn", 3, lambda line, recs: line[:57], "torn-tail",
     "incomplete last line (57 bytes, no newline): an interrupted write; the next append or `rspolicy log repair` "
     "quarantines it"),
    ("other chain", 2, lambda line, recs: _forge({**recs[1], "chain": "c" * 8}), "chain-mismatch",
     "record of chain cccccccc, not {chain}"),
    ("seq skipped", 2, lambda line, recs: _forge({**recs[1], "seq": 3}), "seq-gap",
     "seq 3 where 2 was expected: records deleted, inserted or reordered"),
    ("first prev", 1, lambda line, recs: _forge({**recs[0], "prev": "1" * 64}), "broken-link",
     "prev is not 64 zeros, the start of a chain"),
    ("later prev", 3, lambda line, recs: _forge({**recs[2], "prev": "1" * 64}), "broken-link",
     "prev is not the hash of the record before it"),
    ("value changed", 2, lambda line, recs: line.replace(b"Example GmbH", b"Exbmple GmbH"), "hash-mismatch",
     "the record does not match its hash: altered"),
    ("not canonical", 2, lambda line, recs: line.replace(b'"seq":', b'"seq": '), "non-canonical",
     "the content matches its hash but the line is not in canonical form"),
    ("not JCS-writable", 2, lambda line, recs: _forge(recs[1]).replace(b'"n":1', b'"n":1e400'), "bad-record",
     "cannot write as canonical JSON: inf is not representable in JCS"),
]


@pytest.mark.parametrize(("name", "line", "how", "kind", "message"), PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_verify_names_each_problem_at_its_line(tmp_path: Path, name: str, line: int, how: Any, kind: str,
                                               message: str) -> None:
    path, lines, recs = _three(tmp_path)
    lines[line - 1] = how(lines[line - 1], recs)
    path.write_bytes(b"".join(lines[:line]) if kind == "torn-tail" else b"".join(lines))
    result = verify([path])
    assert result.problem == audit.Problem(kind, path, line, message.format(chain=recs[0]["chain"]))
    # What verified before it: the records, and the hash of the last of them (64 zeros when none did).
    assert (result.ok, result.records, result.files) == (False, line - 1, (path,))
    assert result.head == (recs[line - 2]["hash"] if line > 1 else GENESIS)
    assert str(result.problem).startswith(f"{path}:{line}: {kind}: ")


def test_the_fast_check_names_its_problems_too(tmp_path: Path) -> None:
    path, lines, recs = _three(tmp_path)
    assert verify([path], strict=False) == audit.VerifyResult(True, 3, (path,), recs[2]["hash"])
    # the hash member moved from the end: the stored bytes are no longer "C with its hash inserted"
    moved = json.loads(lines[1])
    lines[1] = json.dumps({"hash": moved.pop("hash"), **moved}, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    fast = verify([path], strict=False)
    assert fast.problem == audit.Problem("non-canonical", path, 2, "the line does not end with its hash member")
    assert (fast.records, fast.head) == (1, recs[0]["hash"])
    path, lines, recs = _three(tmp_path / "again")
    lines[2] = lines[2].replace(b"Example GmbH", b"Exbmple GmbH")
    path.write_bytes(b"".join(lines))
    assert verify([path], strict=False).problem == audit.Problem(
        "hash-mismatch", path, 3, "the record does not match its hash: altered")


@pytest.mark.parametrize("strict", [True, False])
def test_a_keyed_chain_names_a_wrong_key_or_an_altered_record(tmp_path: Path, strict: bool) -> None:
    path, lines, recs = _three(tmp_path, key=KEY)
    assert verify([path], key=KEY, strict=strict) == audit.VerifyResult(True, 3, (path,), recs[2]["hash"])
    altered = "the record does not match its hash: altered, or the key is wrong"
    assert verify([path], key=b"\x01" * 32, strict=strict).problem == audit.Problem(
        "hash-mismatch", path, 1, altered)
    assert verify([path], strict=strict).problem == audit.Problem(
        "key-required", path, 1, "the chain is keyed (hmac-sha256): set RSPOLICY_LOG_KEY to verify it")
    lines[1] = lines[1].replace(b"Example GmbH", b"Exbmple GmbH")
    path.write_bytes(b"".join(lines))
    result = verify([path], key=KEY, strict=strict)
    assert result.problem == audit.Problem("hash-mismatch", path, 2, altered)
    assert (result.records, result.head) == (1, recs[0]["hash"])


def test_a_key_given_for_an_unkeyed_chain_is_refused(tmp_path: Path) -> None:
    path, _lines, _recs = _three(tmp_path)
    for strict in (True, False):
        assert verify([path], key=KEY, strict=strict).problem == audit.Problem(
            "alg-mismatch", path, 1,
            "the record is unkeyed (sha256) but a key was given; an unkeyed chain can be rewritten by anyone")


def test_the_algorithm_cannot_change_within_a_chain(tmp_path: Path) -> None:
    """A keyed record forged onto an unkeyed chain (and the reverse) is named where the algorithm changes."""
    plain, lines, recs = _three(tmp_path / "plain")
    plain.write_bytes(lines[0] + _forge({**recs[1], "alg": "hmac-sha256"}, key=KEY))
    assert verify([plain]).problem == audit.Problem(
        "alg-mismatch", plain, 2, "'alg' changes from sha256 to hmac-sha256 within the chain")

    keyed, lines, recs = _three(tmp_path / "keyed", key=KEY)
    keyed.write_bytes(lines[0] + _forge({**recs[1], "alg": "sha256"}))
    result = verify([keyed], key=KEY)
    assert result.problem == audit.Problem(
        "alg-mismatch", keyed, 2, "'alg' changes from hmac-sha256 to sha256 within the chain")
    assert (result.records, result.head) == (1, recs[0]["hash"])


def test_records_of_another_chain_in_a_second_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    make_log(a, 2)
    make_log(b, 1)
    first, other = json.loads(lines_of(a)[0]), json.loads(lines_of(b)[0])
    result = verify([a, b])
    assert result.problem == audit.Problem("chain-mismatch", b, 1,
                                           f"record of chain {other['chain']}, not {first['chain']}")
    assert (result.records, result.files, result.head) == (2, (a, b), json.loads(lines_of(a)[1])["hash"])


def test_an_unreadable_file_is_named_with_the_systems_reason(tmp_path: Path) -> None:
    path, _lines, recs = _three(tmp_path)
    missing = tmp_path / "gone.jsonl"
    result = verify([path, missing])
    assert result.problem == audit.Problem("unreadable", missing, 0, "No such file or directory")
    assert (result.records, result.files, result.head) == (3, (path, missing), recs[2]["hash"])


def test_a_read_error_is_named_at_the_line_that_could_not_be_read(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fails part-way through a file (EIO): the records before it verified, the next line is named."""
    import errno
    import os

    path, _lines, recs = _three(tmp_path)

    class FailingDisk:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def fileno(self) -> int:
            return int(self.fh.fileno())

        def close(self) -> None:
            self.fh.close()

        def __iter__(self) -> Any:
            for i, raw in enumerate(self.fh):
                if i == 2:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                yield raw

    real_open = audit.open_regular
    monkeypatch.setattr(audit, "open_regular", lambda p: FailingDisk(real_open(p)) if p == path else real_open(p))
    result = verify([path])
    assert result.problem == audit.Problem("unreadable", path, 3, os.strerror(errno.EIO))
    assert (result.records, result.head) == (2, recs[1]["hash"])


def test_verify_results_of_whole_and_partial_chains(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = make_log(path, 12, rotate_bytes=3000)
    files = log.files()
    assert len(files) >= 3
    recs = [json.loads(line) for f in files for line in lines_of(f)]
    assert verify(files) == audit.VerifyResult(True, 12, tuple(files), recs[-1]["hash"])
    # The newest files alone: a tail of the chain, whose older files are archived.
    tail = files[1:]
    count = sum(len(lines_of(f)) for f in tail)
    assert verify(tail, from_genesis=False) == audit.VerifyResult(True, count, tuple(tail), recs[-1]["hash"])
    whole = verify(tail)
    assert whole.problem is not None and (whole.problem.kind, whole.problem.line) == ("seq-gap", 1)
    assert whole.problem.message == (f"seq {12 - count + 1} where 1 was expected: records deleted, inserted or "
                                     "reordered")
    assert (whole.records, whole.head) == (0, GENESIS)
    # Checked from its start a chain begins at 64 zeros; a partial check that found nothing has no head.
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert verify([empty]) == audit.VerifyResult(True, 0, (empty,), GENESIS)
    assert verify([empty], from_genesis=False) == audit.VerifyResult(True, 0, (empty,), None)
    assert verify([]) == audit.VerifyResult(True, 0, (), GENESIS)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{}\n")
    assert verify([bad], from_genesis=False).head is None


def test_an_anchor_is_found_anywhere_in_the_chain_or_reported_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    make_log(path, 12, rotate_bytes=3000)
    files = AuditLog(path).files()
    recs = [json.loads(line) for f in files for line in lines_of(f)]
    for rec in (recs[0], recs[5], recs[-1]):
        assert verify(files, anchor=rec["hash"]).ok
    unknown = "e" * 64
    result = verify(files, anchor=unknown)
    assert result.problem == audit.Problem(
        "head-missing", files[-1], len(lines_of(files[-1])),
        f"no record has the anchored hash {unknown}: records were cut off or the log rewritten")
    assert (result.ok, result.records, result.head) == (False, 12, recs[-1]["hash"])
    # The head of an empty log (64 zeros) anchors nothing: an empty log still verifies against it ...
    assert verify([], anchor=GENESIS).ok
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert verify([empty], anchor=GENESIS).ok
    # ... but a log whose files are all gone no longer holds any anchored record.
    gone = verify([], anchor=recs[-1]["hash"])
    assert gone.problem is not None and (gone.problem.kind, gone.problem.line) == ("head-missing", 0)
