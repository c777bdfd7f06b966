"""Delivery packages: vetted extraction and atomic writing, on real tar files."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import signal
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from rspolicy.errors import OutputError, ProductReadError, UnsafePackageError
from rspolicy.readers import package as package_module
from rspolicy.readers.package import (
    PackageLimits,
    PackageMember,
    extract_package,
    is_package,
    opened_package,
    write_package,
)

MIB = 1024 * 1024
SCENE = "GF2_PMS1_E113.5_N22.6_20200101_L1A0004512345"
MTIME = 1_577_880_000  # 2020-01-01

Entry = tuple[tarfile.TarInfo, bytes | None]


# --------------------------------------------------------------------------- helpers


def info(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Entry:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    member.mtime = MTIME
    member.mode = 0o644
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        member.size = len(data)
        return member, data
    return member, None


def tar_bytes(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for member, data in entries:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def write_tgz(path: Path, entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> Path:
    path.write_bytes(gzip.compress(tar_bytes(entries, fmt), compresslevel=6))
    return path


def gf2_entries() -> list[Entry]:
    tiff = bytes(range(256)) * 40 + b"II*\x00"
    return [
        info(f"{SCENE}/", kind=tarfile.DIRTYPE),
        info(f"{SCENE}/{SCENE}-PAN1.tiff", tiff),
        info(f"{SCENE}/{SCENE}-PAN1.xml", b"<ProductMetaData><SatelliteID>GF2</SatelliteID></ProductMetaData>"),
        info(f"{SCENE}/{SCENE}-PAN1.rpb", b"satId = GF2;\nLINE_OFF = 3600.0;\n"),
        info(f"{SCENE}/{SCENE}-PAN1.jpg", b"\xff\xd8\xff\xe0browse"),
        info("order.xml", b"<Order><OrderID>42</OrderID></Order>"),
    ]


class Sandbox:
    """A package and an extraction directory, with a record of everything around them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.into = root / "into"
        self.into.mkdir()
        self.package: Path | None = None
        self._before: set[str] = set()
        self._package_bytes = b""
        self._package_mtime = 0

    def build(self, name: str, payload: bytes) -> Path:
        self.package = self.root / name
        self.package.write_bytes(payload)
        os.utime(self.package, ns=(MTIME * 10**9, MTIME * 10**9))
        self._package_bytes = payload
        self._package_mtime = self.package.stat().st_mtime_ns
        self._before = self._outside()
        return self.package

    def _outside(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if self.into not in (p, *p.parents)}

    def assert_contained(self) -> None:
        """Nothing appeared outside ``into``; the package is untouched."""
        assert self.package is not None
        assert self._outside() == self._before
        assert not (self.root / "escape.txt").exists()
        assert not Path("/abs/path").exists()
        assert self.package.read_bytes() == self._package_bytes
        assert self.package.stat().st_mtime_ns == self._package_mtime
        for p in self.into.rglob("*"):
            assert not p.is_symlink()
            assert p.is_file() or p.is_dir()


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.tar.gz", True),
        ("A.TGZ", True),
        ("delivery.Tar", True),
        ("scene.tiff", False),
        ("scene.tar.gz.xml", False),
        ("scene.gz", False),
    ],
)
def test_is_package(name: str, expected: bool) -> None:
    assert is_package(Path(name)) is expected


# --------------------------------------------------------------------------- normal packages


def test_gf2_package_extracts_names_and_content(box: Sandbox) -> None:
    entries = gf2_entries()
    pkg = box.build("GF2.tar.gz", gzip.compress(tar_bytes(entries)))

    members = extract_package(pkg, box.into)

    expected = {m.name.rstrip("/"): data for m, data in entries if data is not None}
    assert [m.name for m in members] == list(expected)
    for member in members:
        assert isinstance(member, PackageMember)
        assert member.local == box.into / member.name
        assert member.local.read_bytes() == expected[member.name]
        assert member.size == len(expected[member.name])
        assert int(member.local.stat().st_mtime) == MTIME
        assert stat.S_IMODE(member.local.stat().st_mode) == 0o600
    assert (box.into / SCENE).is_dir()
    box.assert_contained()


def test_plain_tar_with_dot_prefix_and_gnu_format(box: Sandbox) -> None:
    entries = [info("./", kind=tarfile.DIRTYPE), info("./sub/", kind=tarfile.DIRTYPE), info("./sub/x.xml", b"<x/>")]
    pkg = box.build("p.tar", tar_bytes(entries, fmt=tarfile.GNU_FORMAT))

    members = extract_package(pkg, box.into)

    assert [(m.name, m.size) for m in members] == [("sub/x.xml", 4)]
    assert (box.into / "sub" / "x.xml").read_bytes() == b"<x/>"
    box.assert_contained()


def test_long_names_via_pax_are_fine(box: Sandbox) -> None:
    name = "d" * 120 + "/" + "f" * 150 + ".tiff"
    pkg = box.build("p.tgz", gzip.compress(tar_bytes([info(name, b"data")])))

    assert [m.name for m in extract_package(pkg, box.into)] == [name]


def test_concatenated_gzip_members_are_one_stream(box: Sandbox) -> None:
    raw = tar_bytes(gf2_entries())
    half = len(raw) // 2
    pkg = box.build("p.tar.gz", gzip.compress(raw[:half]) + gzip.compress(raw[half:]))

    assert len(extract_package(pkg, box.into)) == 5


def test_large_member_round_trips_in_chunks(box: Sandbox) -> None:
    data = os.urandom(3 * MIB + 7)
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info("big.tiff", data)]), compresslevel=1))

    (member,) = extract_package(pkg, box.into)

    assert member.local.read_bytes() == data


def test_empty_archive_gives_no_members(box: Sandbox) -> None:
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([])))
    assert extract_package(pkg, box.into) == []


def test_into_must_be_empty(box: Sandbox) -> None:
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes(gf2_entries())))
    (box.into / "left-over").write_text("x")
    with pytest.raises(OutputError, match="empty"):
        extract_package(pkg, box.into)


# --------------------------------------------------------------------------- attacks


ATTACKS: dict[str, tuple[Callable[[], list[Entry]], str, str]] = {
    # id: (entries, member named in the message, problem in the message)
    "dotdot": (lambda: [info("ok.xml", b"<ok/>"), info("../escape.txt", b"pwned")], "../escape.txt", "'..'"),
    "dotdot-deep": (lambda: [info("a/b/../../../escape.txt", b"pwned")], "a/b/../../../escape.txt", "'..'"),
    "absolute": (lambda: [info("/abs/path", b"pwned")], "/abs/path", "absolute path"),
    "symlink": (
        lambda: [info("passwd", kind=tarfile.SYMTYPE, linkname="/etc/passwd")],
        "passwd",
        "symbolic link to '/etc/passwd'",
    ),
    "symlink-then-write-through": (
        lambda: [info("link", kind=tarfile.SYMTYPE, linkname=".."), info("link/escape.txt", b"pwned")],
        "link",
        "symbolic link",
    ),
    "hardlink": (
        lambda: [info("order.xml", b"<o/>"), info("hard", kind=tarfile.LNKTYPE, linkname="/etc/passwd")],
        "hard",
        "hard link",
    ),
    "chardev": (lambda: [info("dev/null", kind=tarfile.CHRTYPE)], "dev/null", "device node"),
    "blockdev": (lambda: [info("sda", kind=tarfile.BLKTYPE)], "sda", "device node"),
    "fifo": (lambda: [info("pipe", kind=tarfile.FIFOTYPE)], "pipe", "FIFO"),
    "backslash": (lambda: [info("..\\escape.txt", b"pwned")], "..\\\\escape.txt", "backslash"),
    "drive-letter": (lambda: [info("C:/Windows/evil.dll", b"MZ")], "C:/Windows/evil.dll", "drive letter"),
    "duplicate": (lambda: [info("a.xml", b"1"), info("a.xml", b"2")], "a.xml", "duplicate"),
    "duplicate-after-normalising": (lambda: [info("d/a.xml", b"1"), info("./d//a.xml", b"2")], "./d//a.xml", "dup"),
    "case-collision": (lambda: [info("A.xml", b"1"), info("a.xml", b"2")], "a.xml", "letter case"),
    "file-then-dir": (lambda: [info("x", b"1"), info("x/y.xml", b"2")], "x/y.xml", "which is a file"),
    "dir-then-file": (lambda: [info("x/y.xml", b"1"), info("x", b"2")], "x", "both a file and a directory"),
    "newline-in-name": (lambda: [info("a\nFORGED LOG LINE", b"1")], "a\\nFORGED", "control"),
    "bidi-override": (lambda: [info("evil\u202egpj.exe", b"1")], "evil", "bidirectional"),
    "name-too-long": (lambda: [info("n" * 200 + "/" + "m" * 900, b"1")], "nnnn", "over the 1024-byte limit"),
    "component-too-long": (lambda: [info("c" * 300, b"1")], "cccc", "over 255 bytes"),
    "empty-file-name": (lambda: [info("./", b"1", kind=tarfile.REGTYPE)], "member", "empty name"),
    "unknown-type": (lambda: [info("vol", kind=b"V")], "vol", "unsupported member type"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_and_contained(box: Sandbox, attack: str) -> None:
    entries, member, problem = ATTACKS[attack]
    pkg = box.build("attack.tar.gz", gzip.compress(tar_bytes(entries())))

    with pytest.raises(UnsafePackageError) as caught:
        extract_package(pkg, box.into)

    message = str(caught.value)
    assert caught.value.path == str(pkg)
    assert member in message
    assert problem in message
    assert "\n" not in message
    box.assert_contained()


def test_sparse_member_is_refused(box: Sandbox) -> None:
    member, _ = info("sparse.tiff", kind=tarfile.GNUTYPE_SPARSE)
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([(member, None)], fmt=tarfile.GNU_FORMAT)))

    with pytest.raises(UnsafePackageError, match=r"'sparse\.tiff': sparse file"):
        extract_package(pkg, box.into)
    box.assert_contained()


def test_oversized_extended_header_is_refused_before_it_is_read(box: Sandbox) -> None:
    member, data = info("a.xml", b"1")
    member.pax_headers = {"comment": "x" * (2 * MIB)}
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([(member, data)])))

    with pytest.raises(UnsafePackageError, match="extended header"):
        extract_package(pkg, box.into)


def test_too_many_members(box: Sandbox) -> None:
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info(f"f{i}.xml", b"x") for i in range(5)])))

    with pytest.raises(UnsafePackageError, match=r"'f3.xml': more than 3 members"):
        extract_package(pkg, box.into, PackageLimits(max_members=3))
    box.assert_contained()


def test_gzip_bomb_member_over_the_limit_is_never_written(box: Sandbox) -> None:
    bomb = bytes(50 * MIB)
    payload = gzip.compress(tar_bytes([info("ok.xml", b"<ok/>"), info("bomb.tiff", bomb)]), compresslevel=9)
    assert len(payload) < MIB  # it is a bomb: tiny on disk
    pkg = box.build("bomb.tar.gz", payload)

    with pytest.raises(UnsafePackageError, match=r"'bomb.tiff': declares 52428800 bytes, over"):
        extract_package(pkg, box.into, PackageLimits(max_member_bytes=10 * MIB, max_total_bytes=10 * MIB))
    assert not (box.into / "bomb.tiff").exists()
    box.assert_contained()


def test_total_over_the_limit(box: Sandbox) -> None:
    six = bytes(6 * MIB)
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info("a.tiff", six), info("b.tiff", six)])))

    with pytest.raises(UnsafePackageError, match=r"'b.tiff': brings the package to 12582912 bytes, over"):
        extract_package(pkg, box.into, PackageLimits(max_total_bytes=10 * MIB))
    assert not (box.into / "b.tiff").exists()


def test_expansion_ratio_over_the_limit(box: Sandbox) -> None:
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info("zeros.tiff", bytes(20 * MIB))])))

    with pytest.raises(UnsafePackageError, match="times"):
        extract_package(pkg, box.into, PackageLimits(max_ratio=50, ratio_floor_bytes=MIB))
    # The default floor lets small, very compressible packages through.
    assert len(extract_package(pkg, box.into)) == 1


def test_lying_header_with_bomb_behind_it(box: Sandbox) -> None:
    # The header declares 10 bytes; 50 MB of zeros follow, which tar reads as
    # an end-of-archive marker followed by "padding".
    head = tar_bytes([info("small.xml", b"0123456789")])[: 2 * 512]
    payload = gzip.compress(head + bytes(50 * MIB), compresslevel=9)
    pkg = box.build("lie.tar.gz", payload)

    with pytest.raises(UnsafePackageError, match="padding after the end-of-archive marker"):
        extract_package(pkg, box.into)
    box.assert_contained()


def test_lying_header_bomb_is_stopped_by_the_stream_count(box: Sandbox) -> None:
    # Same bomb, but the decompressed-stream ratio check fires first.
    head = tar_bytes([info("small.xml", b"0123456789")])[: 2 * 512]
    pkg = box.build("lie.tar.gz", gzip.compress(head + bytes(50 * MIB), compresslevel=9))

    with pytest.raises(UnsafePackageError, match="the archive expands more than 50 times"):
        extract_package(pkg, box.into, PackageLimits(max_ratio=50, ratio_floor_bytes=MIB))
    box.assert_contained()


def test_member_yielding_more_than_declared_is_stopped(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # tarfile itself never returns more than the header says; simulate a
    # reader that does, to prove the write-side count is enforced.
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info("a.tiff", b"12345")])))
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: io.BytesIO(bytes(3 * MIB)))

    with pytest.raises(UnsafePackageError, match=r"'a.tiff': holds more than the 5 bytes"):
        extract_package(pkg, box.into)
    assert (box.into / "a.tiff").stat().st_size <= 5
    box.assert_contained()


def test_hidden_archive_after_end_marker(box: Sandbox) -> None:
    first = tar_bytes([info("clean.xml", b"<ok/>")])
    hidden = tar_bytes([info("secret-0.5m.tiff", b"II*\x00")])
    pkg = box.build("p.tar.gz", gzip.compress(first + hidden))

    with pytest.raises(UnsafePackageError, match="after the end-of-archive marker"):
        extract_package(pkg, box.into)


def test_data_filter_is_a_second_layer(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # Disable rspolicy's own name vetting: tarfile's data filter must still refuse.
    monkeypatch.setattr(package_module, "_name_parts", lambda raw, limits: tuple(raw.strip("/").split("/")))
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([info("../escape.txt", b"pwned")])))

    with pytest.raises(UnsafePackageError, match="data filter"):
        extract_package(pkg, box.into)
    box.assert_contained()


def test_bad_member_after_good_ones_blocks_the_package(box: Sandbox) -> None:
    pkg = box.build("p.tar.gz", gzip.compress(tar_bytes([*gf2_entries(), info("../escape.txt", b"x")])))

    with pytest.raises(UnsafePackageError):
        extract_package(pkg, box.into)
    box.assert_contained()  # the good ones stayed inside ``into``


# --------------------------------------------------------------------------- damaged packages


def _assert_corrupt(box: Sandbox) -> str:
    assert box.package is not None
    with pytest.raises(ProductReadError) as caught:
        extract_package(box.package, box.into)
    assert not isinstance(caught.value, UnsafePackageError)
    assert caught.value.path == str(box.package)
    box.assert_contained()
    return caught.value.problem


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.999])
def test_truncated_gzip_is_corrupt(box: Sandbox, fraction: float) -> None:
    payload = gzip.compress(tar_bytes([info("a.tiff", os.urandom(200_000)), info("b.xml", b"<b/>")]))
    box.build("t.tar.gz", payload[: int(len(payload) * fraction)])
    assert _assert_corrupt(box).startswith("corrupt or truncated package: ")


def test_plain_tar_truncated_inside_a_member_is_corrupt(box: Sandbox) -> None:
    raw = tar_bytes([info("a.xml", b"x" * 512), info("b.xml", b"y" * 512)])
    box.build("t.tar", raw[: 3 * 512 + 100])  # a.xml whole, b.xml's header and part of its data
    assert "b.xml" in _assert_corrupt(box)


@pytest.mark.parametrize("blocks", [2, 4])
def test_tar_cut_at_a_member_boundary_is_corrupt(box: Sandbox, blocks: int) -> None:
    # Cut right after a member: tarfile alone would call this a clean end.
    raw = tar_bytes([info("a.xml", b"x" * 512), info("b.xml", b"y" * 512)])
    box.build("t.tar.gz", gzip.compress(raw[: blocks * 512]))
    assert "end-of-archive marker" in _assert_corrupt(box)


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_gzip_trailer_cut_off_is_corrupt(box: Sandbox, cut: int) -> None:
    # All tar data is there; only the gzip trailer (CRC, length) is missing.
    payload = gzip.compress(tar_bytes(gf2_entries()))
    box.build("t.tar.gz", payload[:-cut])
    assert "gzip stream ends early" in _assert_corrupt(box)


def test_gzip_crc_mismatch_is_corrupt(box: Sandbox) -> None:
    payload = bytearray(gzip.compress(tar_bytes(gf2_entries())))
    payload[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    box.build("crc.tar.gz", bytes(payload))
    _assert_corrupt(box)


def test_damaged_header_mid_archive_is_corrupt(box: Sandbox) -> None:
    raw = bytearray(tar_bytes([info("a.xml", b"x" * 100), info("b.xml", b"y" * 100)]))
    raw[1024 + 10] ^= 0xFF  # inside the name of the second header: checksum fails
    box.build("h.tar.gz", gzip.compress(bytes(raw)))
    _assert_corrupt(box)


def test_garbage_after_gzip_stream_is_corrupt(box: Sandbox) -> None:
    box.build("g.tar.gz", gzip.compress(tar_bytes(gf2_entries())) + b"GARBAGE!")
    assert "trailing bytes" in _assert_corrupt(box)


@pytest.mark.parametrize(
    "payload",
    [b"", b"this is not a tar archive at all" * 40, os.urandom(4096), bz2.compress(b"x" * 2048)],
    ids=["empty", "text", "random", "bzip2"],
)
def test_not_a_package_is_a_read_error(box: Sandbox, payload: bytes) -> None:
    box.build("x.tar.gz", payload)
    _assert_corrupt(box)


def test_fifo_named_like_a_package_is_a_read_error(box: Sandbox) -> None:
    fifo = box.root / "fifo.tar.gz"
    os.mkfifo(fifo)
    signal.alarm(10)  # fail rather than hang if the open blocks
    try:
        with pytest.raises(ProductReadError, match="regular file"):
            extract_package(fifo, box.into)
    finally:
        signal.alarm(0)


def test_missing_package_is_a_read_error(box: Sandbox) -> None:
    with pytest.raises(ProductReadError, match="cannot read package"):
        extract_package(box.root / "nope.tar.gz", box.into)


# --------------------------------------------------------------------------- opened_package


def test_opened_package_removes_its_directory(tmp_path: Path) -> None:
    pkg = write_tgz(tmp_path / "p.tar.gz", gf2_entries())
    with opened_package(pkg) as (root, members):
        assert root.name.startswith("rspolicy-pkg-")
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert len(members) == 5
        assert all(root in m.local.parents for m in members)
    assert not root.exists()


def test_opened_package_removes_its_directory_on_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real_mkdtemp = package_module.tempfile.mkdtemp

    def spy(*args: object, **kwargs: str) -> str:
        made.append(real_mkdtemp(**kwargs))
        return made[-1]

    monkeypatch.setattr(package_module.tempfile, "mkdtemp", spy)
    pkg = write_tgz(tmp_path / "p.tar.gz", [*gf2_entries(), info("../escape.txt", b"x")])
    with pytest.raises(UnsafePackageError), opened_package(pkg):
        pytest.fail("the body must not run")
    assert made
    assert not Path(made[0]).exists()


def test_opened_package_removes_its_directory_when_the_body_fails(tmp_path: Path) -> None:
    pkg = write_tgz(tmp_path / "p.tar.gz", gf2_entries())
    with pytest.raises(RuntimeError), opened_package(pkg) as (root, _):
        raise RuntimeError("boom")
    assert not root.exists()


# --------------------------------------------------------------------------- write_package


def _sources(tmp_path: Path) -> list[tuple[Path, str]]:
    src = tmp_path / "src"
    src.mkdir()
    pairs = []
    for i, (name, data) in enumerate(
        [("b/scene.tiff", os.urandom(5000)), ("a/scene.xml", b"<x/>"), ("order.xml", b"<o/>")]
    ):
        local = src / f"f{i}"
        local.write_bytes(data)
        os.utime(local, (MTIME + i, MTIME + i))
        pairs.append((local, name))
    return pairs


def _listing(path: Path) -> list[tuple[str, int, int, int, int, int, str, str]]:
    with tarfile.open(path) as tar:
        return [(m.name, m.size, int(m.mtime), m.mode, m.uid, m.gid, m.uname, m.gname) for m in tar]


def test_write_package_round_trip(tmp_path: Path) -> None:
    pairs = _sources(tmp_path)
    dest = tmp_path / "out" / "delivery.tar.gz"
    dest.parent.mkdir()

    write_package(pairs, dest)

    into = tmp_path / "into"
    into.mkdir()
    members = extract_package(dest, into)
    assert [m.name for m in members] == ["a/scene.xml", "b/scene.tiff", "order.xml"]
    by_name = {name: local for local, name in pairs}
    for m in members:
        assert m.local.read_bytes() == by_name[m.name].read_bytes()
        assert int(m.local.stat().st_mtime) == int(by_name[m.name].stat().st_mtime)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["delivery.tar.gz"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_write_package_is_deterministic(tmp_path: Path) -> None:
    pairs = _sources(tmp_path)
    first, second, plain = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz", tmp_path / "3.tar"

    write_package(pairs, first)
    write_package(list(reversed(pairs)), second)
    write_package(pairs, plain)

    expected = [
        ("a/scene.xml", 4, MTIME + 1, 0o644, 0, 0, "", ""),
        ("b/scene.tiff", 5000, MTIME, 0o644, 0, 0, "", ""),
        ("order.xml", 4, MTIME + 2, 0o644, 0, 0, "", ""),
    ]
    assert _listing(first) == _listing(second) == _listing(plain) == expected
    assert first.read_bytes() == second.read_bytes()
    header = first.read_bytes()[:10]
    assert header[3] == 0  # no FNAME: the temporary file's name is not recorded
    assert header[4:8] == bytes(4)  # no timestamp
    assert gzip.decompress(first.read_bytes()) == plain.read_bytes()


def test_write_package_replaces_atomically_and_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = _sources(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "delivery.tar.gz"
    calls = 0
    real_addfile = tarfile.TarFile.addfile

    def failing_addfile(self: tarfile.TarFile, tarinfo: tarfile.TarInfo, fileobj: object = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        real_addfile(self, tarinfo, fileobj)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(OutputError, match="No space left"):
        write_package(pairs, dest)
    assert calls == 2
    assert list(out.iterdir()) == []  # no dest, no temporary file

    dest.write_bytes(b"previous delivery")
    calls = 0
    with pytest.raises(OutputError):
        write_package(pairs, dest)
    assert dest.read_bytes() == b"previous delivery"
    assert list(out.iterdir()) == [dest]


@pytest.mark.parametrize(
    ("name", "problem"),
    [("../x.tiff", "'..'"), ("/abs.tiff", "absolute"), ("a\\b.tiff", "backslash"), ("", "empty")],
)
def test_write_package_refuses_unsafe_names(tmp_path: Path, name: str, problem: str) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    dest = tmp_path / "p.tar.gz"
    with pytest.raises(OutputError, match=problem):
        write_package([(local, name)], dest)
    assert not dest.exists()


def test_write_package_refuses_duplicates_and_non_files(tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    dest = tmp_path / "p.tar.gz"
    with pytest.raises(OutputError, match="collides"):
        write_package([(local, "a.xml"), (local, "A.xml")], dest)
    with pytest.raises(OutputError, match="not a regular file"):
        write_package([(tmp_path, "dir.xml")], dest)
    with pytest.raises(OutputError, match=r"\.tar\.gz"):
        write_package([(local, "a.xml")], tmp_path / "p.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
