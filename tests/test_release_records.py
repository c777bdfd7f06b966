"""Release bookkeeping: which recorded releases are still pending, and what of them is not in place.

An ``enforce`` record is written before its files are moved into place
(``output.release`` = ``after-record``); a ``released`` or ``reconcile``
record for the same decision settles it. These tests read hand-made logs
shaped like enforce's (the chain accepts any JSON object, so the records
here also include the malformed ones a log can hold) and real files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rspolicy.audit import AuditLog
from rspolicy.cli import cli
from rspolicy.records import (
    PendingRelease,
    ReleaseProblem,
    Requester,
    failure_record,
    pending_releases,
    reconcile_releases,
    release_problems,
)

REQUESTER = Requester("officer-7", "ws1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def enforce_record(decision_id: str, product: str, files: list[Any], *, release: str | None = "after-record",
                   **extra: Any) -> dict[str, Any]:
    """An enforce decision record; ``files`` are ``(path, sha256)`` pairs or raw entries."""
    output: dict[str, Any] = {"files": [{"path": f[0], "size": 1, "sha256": f[1]} if isinstance(f, tuple) else f
                                        for f in files], "gsd_m": 2.0, "notes": []}
    if release is not None:
        output["release"] = release
    return {"decision_id": decision_id, "command": "enforce", "input": {"path": product, "files": []},
            "result": {"action": "resample"}, "output": output, **extra}


def event(kind: str, decision_id: str) -> dict[str, Any]:
    return {"event": kind, "decision_id": decision_id, "command": "enforce", "input": {"path": "p"}}


# --------------------------------------------------------------------------- pending_releases


def test_a_recorded_release_is_pending_until_a_released_or_reconcile_record_follows() -> None:
    records = [
        enforce_record("a", "/in/a.tif", [("/out/a.tif", "1" * 64)]),
        enforce_record("b", "/in/b.tif", [("/out/b.tif", "2" * 64), ("/out/b.tif.aux.xml", "3" * 64)]),
        event("released", "a"),
        enforce_record("c", "/in/c.tif", [("/out/c.tif", "4" * 64)]),
        enforce_record("d", "/in/d.tif", [("/out/d.tif", "5" * 64)]),
        event("reconcile", "c"),
        enforce_record("e", "/in/e.tif", [("/out/e.tif", "6" * 64)]),
    ]
    assert pending_releases(records) == [
        PendingRelease("b", "/in/b.tif", (("/out/b.tif", "2" * 64), ("/out/b.tif.aux.xml", "3" * 64))),
        PendingRelease("d", "/in/d.tif", (("/out/d.tif", "5" * 64),)),
        PendingRelease("e", "/in/e.tif", (("/out/e.tif", "6" * 64),)),
    ]
    assert pending_releases([*records, event("released", "d"), event("released", "b"), event("released", "e")]) == []


def test_records_that_announce_no_later_release_are_never_pending() -> None:
    records = [
        # screen and batch decisions release nothing and have no output member
        {"decision_id": "s", "command": "screen", "input": {"path": "/in/s.tif"}, "result": {"action": "allow"}},
        {"decision_id": "t", "command": "batch", "input": {"path": "/in/t.tif"}, "result": {"action": "allow"}},
        # enforce records written before this bookkeeping existed: placed first, recorded after
        enforce_record("old", "/in/old.tif", [("/out/old.tif", "1" * 64)], release=None),
        # a blocked product: nothing to place
        enforce_record("blocked", "/in/x.tif", []),
        # an event that is not a decision, even one carrying an output member
        {**enforce_record("q", "/in/q.tif", [("/out/q.tif", "2" * 64)]), "event": "torn-tail-quarantined"},
        {**enforce_record("f", "/in/f.tif", [("/out/f.tif", "3" * 64)]), "event": "failed"},
        # an output member that is not an object, or that names no files
        {**enforce_record("n", "/in/n.tif", []), "output": "after-record"},
        {**enforce_record("m", "/in/m.tif", []), "output": {"release": "after-record"}},
        # no (usable) decision id: nothing could settle it
        {k: v for k, v in enforce_record("x", "/in/x.tif", [("/out/x.tif", "4" * 64)]).items() if k != "decision_id"},
        {**enforce_record("x", "/in/x.tif", [("/out/x.tif", "4" * 64)]), "decision_id": 7},
    ]
    assert pending_releases(records) == []


def test_a_record_without_a_decision_id_does_not_hide_the_releases_recorded_after_it() -> None:
    """A product rspolicy could not even decide is logged as ``failed`` with no decision id; reading goes on."""
    records = [failure_record("/in/broken.tif", "cannot read: I/O error", REQUESTER),
               enforce_record("a", "/in/a.tif", [("/out/a.tif", "1" * 64)])]
    assert records[0]["decision_id"] is None
    assert [p.decision_id for p in pending_releases(records)] == ["a"]


def test_the_records_of_a_partial_chain_settle_decisions_it_does_not_hold() -> None:
    """``log verify --partial`` reads a chain whose first files are archived: its events may settle older records."""
    tail = [event("released", "archived-1"), event("reconcile", "archived-2"),
            enforce_record("b", "/in/b.tif", [("/out/b.tif", "2" * 64)]), event("released", "b"),
            event("released", "b")]
    assert pending_releases(tail) == []


def test_a_pending_release_names_its_product_even_from_a_malformed_input_member() -> None:
    [named] = pending_releases([enforce_record("a", "/in/a b.tif", [("/out/a.tif", "1" * 64)])])
    assert named.path == "/in/a b.tif"
    # The chain accepts any object: an input that is not one still leaves the release pending.
    odd = [{**enforce_record(i, "", [("/out/a.tif", "1" * 64)]), "input": value}
           for i, value in (("list", ["/in/a.tif"]), ("text", "/in/a.tif"), ("none", None))]
    assert [(p.decision_id, p.files) for p in pending_releases(odd)] == [
        (i, (("/out/a.tif", "1" * 64),)) for i in ("list", "text", "none")]


def test_a_package_is_checked_through_its_package_file_only() -> None:
    """Members (``package!member``) are inside the package file; only the package and loose files are on disk."""
    pkg, loose = "/out/p.tar.gz", "/out/x.tif"
    files = [(pkg, "1" * 64), (f"{pkg}!p/img.tif", "2" * 64), (f"{pkg}!p/img.tif.aux.xml", "3" * 64),
             (f"{pkg}!p/odd!name.xml", "4" * 64), (loose, "5" * 64), (f"{loose}.aux.xml", "6" * 64)]
    [pending] = pending_releases([enforce_record("a", "/in/p.tar.gz", files)])
    assert pending.files == ((pkg, "1" * 64), (loose, "5" * 64), (f"{loose}.aux.xml", "6" * 64))


def test_a_package_in_a_folder_whose_name_holds_the_separator(tmp_path: Path) -> None:
    """``!`` in the output folder's name is not where a package's member names start.

    A run stopped after placing the package: the next run finds it in place and confirms the release
    (it would otherwise look for the members as files, and record them absent).
    """
    out = Path(os.path.realpath(tmp_path)) / "out!2024"
    out.mkdir()
    (out / "p.tar.gz").write_bytes(b"package bytes")
    (out / "x.tif").write_bytes(b"loose bytes")
    pkg = str(out / "p.tar.gz")
    files = [(pkg, sha(b"package bytes")), (f"{pkg}!p/img.tif", "2" * 64), (str(out / "x.tif"), sha(b"loose bytes"))]
    [pending] = pending_releases([enforce_record("a", "/in/p.tar.gz", files)])
    assert pending.files == (files[0], files[2])
    log = AuditLog(tmp_path / "log.jsonl", fsync=False)
    log.append(enforce_record("a", "/in/p.tar.gz", files))
    assert [r["event"] for r in reconcile_releases(log, out, REQUESTER)] == ["released"]


def test_file_entries_without_a_usable_path_are_skipped() -> None:
    files = ["/out/a.tif", None, {"path": 5, "sha256": "1" * 64}, {"sha256": "2" * 64},
             {"path": "/out/b.tif", "sha256": "3" * 64}]
    [pending] = pending_releases([enforce_record("a", "/in/a.tif", files)])
    assert pending.files == (("/out/b.tif", "3" * 64),)


# --------------------------------------------------------------------------- release_problems


@pytest.fixture
def placed(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """An output folder as a release recorded it: names -> the recorded bytes (not all of them placed)."""
    out = tmp_path / "out"
    out.mkdir()
    recorded = {name: f"{name}: recorded content\n".encode() for name in
                ("intact.tif", "absent.tif", "one-byte.tif", "also-absent.tif", "folder.tif", "link.tif")}
    (out / "intact.tif").write_bytes(recorded["intact.tif"])
    changed = bytearray(recorded["one-byte.tif"])
    changed[3] ^= 0x01  # same size, one byte differs
    (out / "one-byte.tif").write_bytes(bytes(changed))
    (out / "folder.tif").mkdir()
    # a symbolic link to a file with exactly the recorded bytes is still not the recorded file
    (tmp_path / "elsewhere.tif").write_bytes(recorded["link.tif"])
    (out / "link.tif").symlink_to(tmp_path / "elsewhere.tif")
    return out, recorded


def _pending(out: Path, recorded: dict[str, bytes]) -> PendingRelease:
    return PendingRelease("a", "/in/a.tif", tuple((str(out / name), sha(data)) for name, data in recorded.items()))


def test_release_problems_names_every_absent_file_in_record_order(placed: tuple[Path, dict[str, bytes]]) -> None:
    out, recorded = placed
    assert release_problems(_pending(out, recorded), compare_digest=False) == [
        ReleaseProblem(str(out / "absent.tif"), "absent"), ReleaseProblem(str(out / "also-absent.tif"), "absent")]


def test_release_problems_with_digests_names_files_that_differ(placed: tuple[Path, dict[str, bytes]]) -> None:
    out, recorded = placed
    assert release_problems(_pending(out, recorded), compare_digest=True) == [
        ReleaseProblem(str(out / "absent.tif"), "absent"),
        ReleaseProblem(str(out / "one-byte.tif"), "differs"),
        ReleaseProblem(str(out / "also-absent.tif"), "absent"),
        ReleaseProblem(str(out / "folder.tif"), "differs"),
        ReleaseProblem(str(out / "link.tif"), "differs"),
    ]


def test_a_release_whose_files_are_all_in_place_has_no_problems(placed: tuple[Path, dict[str, bytes]]) -> None:
    out, recorded = placed
    intact = {"intact.tif": recorded["intact.tif"]}
    for compare in (False, True):
        assert release_problems(_pending(out, intact), compare_digest=compare) == []


# --------------------------------------------------------------------------- both, as enforce and log verify use them


def test_the_next_run_settles_each_pending_release_of_its_folder(tmp_path: Path) -> None:
    tmp_path = Path(os.path.realpath(tmp_path))  # recorded paths are resolved ones
    out, other = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    other.mkdir()
    for name in ("done.tif", "bad.tif"):
        (out / name).write_bytes(b"released bytes")
    (out / "done.tif.aux.xml").write_bytes(b"<aux/>")
    log = AuditLog(tmp_path / "log.jsonl", fsync=False)
    log.append(enforce_record("done", "/in/done.tif", [(str(out / "done.tif"), sha(b"released bytes")),
                                                       (str(out / "done.tif.aux.xml"), sha(b"<aux/>"))]))
    log.append(enforce_record("bad", "/in/bad.tif", [(str(out / "bad.tif"), sha(b"other bytes")),
                                                     (str(out / "gone.tif"), sha(b"gone"))]))
    log.append(enforce_record("other", "/in/o.tif", [(str(other / "o.tif"), sha(b"o"))]))

    appended = reconcile_releases(log, out, REQUESTER)
    assert [(r["event"], r["decision_id"]) for r in appended] == [("released", "done"), ("reconcile", "bad")]
    assert appended[0]["input"]["path"] == "/in/done.tif"
    assert (appended[1]["absent"], appended[1]["differs"]) == ([str(out / "gone.tif")], [str(out / "bad.tif")])
    assert appended[1]["input"]["path"] == "/in/bad.tif"
    assert reconcile_releases(log, out, REQUESTER) == []  # settled decisions are never looked at again
    # The release into another folder is still pending, and `log verify` says which file is missing.
    verify = CliRunner().invoke(cli, ["log", "verify", str(log.path)])
    assert verify.exit_code == 1
    assert f"release not completed: decision other, {other / 'o.tif'} absent" in verify.stdout
    assert "1 recorded file(s) were never placed" in verify.stdout
    (other / "o.tif").write_bytes(b"o")
    assert CliRunner().invoke(cli, ["log", "verify", str(log.path)]).exit_code == 0


def test_verify_lists_only_files_that_are_absent(tmp_path: Path) -> None:
    """``log verify`` does not hash outputs: a present file is not reported, whatever its bytes."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "changed.tif").write_bytes(b"changed since")
    log = AuditLog(tmp_path / "log.jsonl", fsync=False)
    log.append(enforce_record("a", "/in/a.tif", [(str(out / "changed.tif"), sha(b"recorded")),
                                                 (str(out / "gone.tif"), sha(b"gone")),
                                                 (str(out / "gone.tif.aux.xml"), sha(b"aux"))]))
    verify = CliRunner().invoke(cli, ["log", "verify", str(log.path)])
    assert verify.exit_code == 1
    lines = [line for line in verify.stdout.splitlines() if line.startswith("release not completed")]
    assert lines == [f"release not completed: decision a, {out / 'gone.tif'} absent",
                     f"release not completed: decision a, {out / 'gone.tif.aux.xml'} absent"]
