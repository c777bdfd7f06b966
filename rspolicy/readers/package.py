"""Delivery packages: vetted extraction and atomic writing of ``.tar.gz`` files.

A delivery package comes from outside, so it is treated as hostile until
proven otherwise. :func:`extract_package` reads it in a single forward pass
and, for every member, first decides whether the member may exist at all:

* only regular files and directories are allowed: symbolic links, hard
  links, device nodes, FIFOs, sparse files and unknown member types are
  refused, because a package of products never needs them and each of them
  is a known way to write outside the extraction directory or to lie about
  size;
* names must be relative, without ``..``, backslashes, drive letters,
  control or bidirectional-override characters, valid UTF-8, within length
  limits, and unique (also when case and Unicode normalisation are ignored,
  so that a recipient on macOS or Windows gets the same files);
* member sizes, the number of members, the total size and the expansion
  ratio are checked against :class:`PackageLimits` from the headers before a
  member is written, and again from the bytes actually decompressed and
  written, because a header can lie;
* nothing may follow the end-of-archive marker except zero padding: data
  there would be invisible to rspolicy but visible to ``tar -i``.

Any refusal raises :class:`~rspolicy.errors.UnsafePackageError` and the whole
package is blocked. A damaged archive raises
:class:`~rspolicy.errors.ProductReadError`. :func:`tarfile.data_filter` is
applied to every member as a second, independent check.

Files are created through directory file descriptors, with ``O_EXCL`` and
``O_NOFOLLOW``, so nothing can be written outside the extraction directory
even if it were tampered with during extraction. This needs a POSIX system.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Self

from rspolicy.errors import OutputError, ProductReadError, RSPolicyError, UnsafePackageError

__all__ = [
    "PackageLimits",
    "PackageMember",
    "extract_package",
    "is_package",
    "opened_package",
    "write_package",
]

_GIB = 1024**3
_MIB = 1024**2

#: File name endings recognised as packages (compared case-insensitively).
PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstandard",
}

#: Compressed bytes read per call, and decompressed bytes produced per call.
#: Small enough that a header read does not copy megabytes of pending input.
_RAW_CHUNK = 256 * 1024
_INFLATE_CHUNK = 1 * _MIB
#: Bytes copied per read when writing a member.
_COPY_CHUNK = 1 * _MIB

#: Pax and GNU long-name headers are read into memory whole by tarfile, so
#: they are capped before tarfile gets to them. Real ones are a few hundred
#: bytes; chains of them are parsed recursively, hence the chain cap.
_MAX_META_BYTES = 1 * _MIB
_MAX_META_CHAIN = 8
_META_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)

#: Zero padding allowed after the end-of-archive marker. GNU tar pads to its
#: record size (10 KiB by default, 1 MiB with ``-b 2048``).
_MAX_TRAILING_BYTES = 16 * _MIB

#: Headers, padding and pax data on top of member data in the decompressed
#: stream; only a backstop, the precise checks use member sizes.
_STREAM_SLACK_BYTES = 64 * _MIB
_STREAM_SLACK_PER_MEMBER = 4096

#: Longest single path component most file systems accept (NAME_MAX).
_MAX_COMPONENT_BYTES = 255

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
#: C0/C1 controls, line and paragraph separators, and bidirectional
#: overrides: names end up in reports and audit logs, where these characters
#: can forge lines or disguise a name.
_BAD_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def is_package(path: Path) -> bool:
    """Whether ``path`` names a delivery package, judged by its name only.

    Parameters
    ----------
    path
        Any path; the file need not exist.

    Returns
    -------
    bool
        True for names ending in ``.tar.gz``, ``.tgz`` or ``.tar``, in any
        letter case.

    Examples
    --------
    >>> is_package(Path("GF2_PMS1_20200101_L1A0004512345.TAR.GZ"))
    True
    >>> is_package(Path("scene.tiff"))
    False
    """
    return path.name.lower().endswith(PACKAGE_SUFFIXES)


@dataclass(frozen=True)
class PackageMember:
    """One regular file extracted from a package.

    Attributes
    ----------
    name
        The member's archive path, POSIX, normalised: no leading ``./``, no
        empty or ``.`` components.
    local
        Where the file was extracted.
    size
        Its size in bytes.
    """

    name: str
    local: Path
    size: int


@dataclass(frozen=True)
class PackageLimits:
    """Bounds a package must respect to be extracted.

    The defaults fit real GF deliveries (a GF-2 PAN L1A raster is 1.6 GB and a
    package a few GB) with a wide margin.

    Attributes
    ----------
    max_members
        Most members (files and directories) a package may hold.
    max_member_bytes
        Largest size of one member.
    max_total_bytes
        Largest total size of all members.
    max_ratio
        Largest ratio of total uncompressed size to the package's size on
        disk. Imagery compresses a few times at most, while a gzip bomb
        reaches about 1000 (deflate cannot exceed 1032), so a value far
        above 1000 would never trigger on a ``.tar.gz``.
    ratio_floor_bytes
        The ratio is enforced only once this many bytes have been expanded,
        so that small packages of text or empty test rasters, which
        compress very well, are not refused.
    max_name_bytes
        Longest member name, in UTF-8 bytes.
    """

    max_members: int = 10_000
    max_member_bytes: int = 64 * _GIB
    max_total_bytes: int = 256 * _GIB
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1 * _GIB
    max_name_bytes: int = 1024


class _RefusedError(Exception):
    """Internal: the package is unsafe; the message names member and problem."""


class _CorruptError(Exception):
    """Internal: the package is damaged; the message says how."""


class _PackageStream:
    """The decompressed package as a forward-only file for :class:`tarfile.TarFile`.

    Decompressing here rather than in tarfile lets the stream count every
    decompressed byte (headers and padding included), verify the gzip
    trailer and CRC, refuse trailing garbage, and bound memory per read.
    """

    def __init__(self, raw: BinaryIO, path: Path, limits: PackageLimits, gzipped: bool) -> None:
        self._raw = raw
        self._path = path
        self._limits = limits
        self._compressed_bytes = max(os.fstat(raw.fileno()).st_size, 1)
        self._inflater = zlib.decompressobj(wbits=31) if gzipped else None
        self._buf = b""
        self._head = 0
        self._pos = 0
        self.name = str(path)

    def _raw_read(self) -> bytes:
        try:
            return self._raw.read(_RAW_CHUNK)
        except OSError as exc:
            raise ProductReadError(self._path, f"cannot read package: {exc.strerror or exc}") from exc

    def _produce(self, max_len: int) -> bytes:
        """The next non-empty piece of the tar stream, or b'' at its clean end."""
        inflater = self._inflater
        if inflater is None:
            return self._raw_read()
        while True:
            if inflater.unconsumed_tail:
                data = inflater.unconsumed_tail
            elif inflater.eof:
                data = inflater.unused_data or self._raw_read()
                if not data:
                    return b""
                # Concatenated gzip members form one valid stream (pigz, cat);
                # anything else here fails the gzip header check.
                inflater = self._inflater = zlib.decompressobj(wbits=31)
            else:
                data = self._raw_read()
                if not data:
                    # zlib may still hold output when max_len cut it short.
                    out = inflater.decompress(b"", max_len)
                    if out:
                        return out
                    raise _CorruptError("the gzip stream ends early")
            try:
                out = inflater.decompress(data, max_len)
            except zlib.error as exc:
                raise _CorruptError(f"damaged gzip data, or trailing bytes after it: {exc}") from None
            if out:
                return out

    def _account(self) -> None:
        limits = self._limits
        cap = limits.max_total_bytes + _STREAM_SLACK_BYTES + _STREAM_SLACK_PER_MEMBER * limits.max_members
        if self._pos > cap:
            raise _RefusedError(f"the archive expands to more than {cap} bytes")
        if self._pos > limits.ratio_floor_bytes and self._pos / self._compressed_bytes > limits.max_ratio:
            raise _RefusedError(
                f"the archive expands more than {limits.max_ratio:g} times its {self._compressed_bytes} bytes"
            )

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            raise io.UnsupportedOperation("unbounded read of a package stream")
        parts: list[bytes] = []
        want = size
        while want > 0:
            if self._head >= len(self._buf):
                self._buf = self._produce(max(want, _INFLATE_CHUNK))
                self._head = 0
                if not self._buf:
                    break
            piece = self._buf[self._head : self._head + want]
            self._head += len(piece)
            want -= len(piece)
            parts.append(piece)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos += len(data)
        self._account()
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET, /) -> int:
        if whence != io.SEEK_SET or pos < self._pos:
            # Extraction never goes back, so a backward seek means tarfile
            # was handed offsets that make no sense: a damaged archive.
            raise io.UnsupportedOperation("the package stream only moves forward")
        while self._pos < pos:
            if not self.read(min(pos - self._pos, _COPY_CHUNK)):
                raise _CorruptError(f"the archive ends at offset {self._pos}, before offset {pos}")
        return self._pos

    def seekable(self) -> bool:
        return True

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("the package stream is read-only")

    def close(self) -> None:
        """The raw file belongs to the caller."""


class _HeaderWatch:
    """State shared with the :class:`tarfile.TarInfo` subclass of one extraction."""

    def __init__(self) -> None:
        self.saw_end_marker = False
        self.meta_chain = 0


def _watched_tarinfo(watch: _HeaderWatch) -> type[tarfile.TarInfo]:
    """A TarInfo class that caps metadata headers and notes the end marker.

    ``frombuf`` is the one public hook that sees every header block before
    tarfile reads the data a pax or long-name header announces into memory.
    """

    class _WatchedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            watch.saw_end_marker = len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE
            obj = super().frombuf(buf, encoding, errors)
            if obj.type in _META_TYPES:
                watch.meta_chain += 1
                if obj.size > _MAX_META_BYTES:
                    raise _RefusedError(f"extended header of {obj.size} bytes, over the {_MAX_META_BYTES}-byte limit")
                if watch.meta_chain > _MAX_META_CHAIN:
                    raise _RefusedError(f"chain of more than {_MAX_META_CHAIN} extended headers")
            else:
                watch.meta_chain = 0
            return obj

    return _WatchedTarInfo


def _name_parts(raw: str, limits: PackageLimits) -> tuple[str, ...]:
    """The components of a member name, or _RefusedError saying what is wrong."""
    where = f"member {raw!r}"
    if not raw:
        raise _RefusedError("member with an empty name")
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise _RefusedError(f"{where}: name is not valid UTF-8") from None
    if size > limits.max_name_bytes:
        raise _RefusedError(f"{where}: name is {size} bytes long, over the {limits.max_name_bytes}-byte limit")
    if _BAD_CHARACTERS.search(raw):
        raise _RefusedError(f"{where}: name holds control or bidirectional-override characters")
    if "\\" in raw:
        raise _RefusedError(f"{where}: name holds a backslash, a path separator on Windows")
    if raw.startswith("/"):
        raise _RefusedError(f"{where}: absolute path")
    if _DRIVE_LETTER.match(raw):
        raise _RefusedError(f"{where}: name starts with a drive letter")
    parts: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise _RefusedError(f"{where}: '..' component leads out of the extraction directory")
        if len(part.encode("utf-8")) > _MAX_COMPONENT_BYTES:
            raise _RefusedError(f"{where}: a name component is over {_MAX_COMPONENT_BYTES} bytes")
        parts.append(part)
    return tuple(parts)


def _kind(member: tarfile.TarInfo) -> str:
    """'file' or 'dir', or _RefusedError for every other member type."""
    where = f"member {member.name!r}"
    never = "a package of products never needs one"
    if member.issym():
        raise _RefusedError(f"{where}: symbolic link to {member.linkname!r} refused, {never}")
    if member.islnk():
        raise _RefusedError(f"{where}: hard link to {member.linkname!r} refused, {never}")
    if member.ischr() or member.isblk():
        raise _RefusedError(f"{where}: device node refused, {never}")
    if member.isfifo():
        raise _RefusedError(f"{where}: FIFO refused, {never}")
    if member.type == tarfile.GNUTYPE_SPARSE or member.sparse is not None:
        # A sparse map lets a few bytes of archive stand for gigabytes.
        raise _RefusedError(f"{where}: sparse file refused, {never}")
    if member.isdir():
        if member.size:
            raise _RefusedError(f"{where}: directory declares {member.size} bytes of data")
        return "dir"
    if member.isreg():
        return "file"
    raise _RefusedError(f"{where}: unsupported member type {member.type!r}")


def _key(parts: tuple[str, ...]) -> str:
    # Case-insensitive, normalisation-insensitive file systems (macOS,
    # Windows) would merge names that differ only in these ways.
    return unicodedata.normalize("NFC", "/".join(parts)).casefold()


class _Extraction:
    """The state of one extraction: directory descriptors and names seen."""

    def __init__(self, path: Path, into: Path, limits: PackageLimits, root_fd: int) -> None:
        self.path = path
        self.into = into
        self.limits = limits
        self.root_fd = root_fd
        #: Normalised key -> (name as first seen, is a directory).
        self.seen: dict[str, tuple[str, bool]] = {}
        self.count = 0
        self.declared = 0
        self.written = 0
        self.compressed_bytes = 1
        self._parent: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def claim(self, raw: str, parts: tuple[str, ...], is_dir: bool) -> None:
        """Record a name, refusing duplicates and file/directory conflicts."""
        where = f"member {raw!r}"
        for depth in range(1, len(parts)):
            key = _key(parts[:depth])
            earlier = self.seen.get(key)
            parent = "/".join(parts[:depth])
            if earlier is None:
                self.seen[key] = (parent, True)
            elif not earlier[1]:
                raise _RefusedError(f"{where}: lies under {earlier[0]!r}, which is a file")
            elif earlier[0] != parent:
                raise _RefusedError(f"{where}: directory {parent!r} differs from {earlier[0]!r} only by letter case")
        key = _key(parts)
        name = "/".join(parts)
        earlier = self.seen.get(key)
        if earlier is not None:
            earlier_name, earlier_dir = earlier
            if earlier_dir and is_dir and earlier_name == name:
                return  # a repeated directory entry changes nothing
            if earlier_name != name:
                raise _RefusedError(
                    f"{where}: differs from {earlier_name!r} only by letter case or Unicode normalisation"
                )
            if earlier_dir != is_dir:
                raise _RefusedError(f"{where}: is both a file and a directory")
            raise _RefusedError(f"{where}: duplicate member")
        self.seen[key] = (name, is_dir)

    def check_size(self, raw: str, size: int) -> None:
        limits = self.limits
        where = f"member {raw!r}"
        if size < 0:
            raise _RefusedError(f"{where}: negative size {size}")
        if size > limits.max_member_bytes:
            raise _RefusedError(f"{where}: declares {size} bytes, over the {limits.max_member_bytes}-byte member limit")
        self.declared += size
        if self.declared > limits.max_total_bytes:
            raise _RefusedError(
                f"{where}: brings the package to {self.declared} bytes, over the {limits.max_total_bytes}-byte limit"
            )
        if self.declared > limits.ratio_floor_bytes and self.declared / self.compressed_bytes > limits.max_ratio:
            raise _RefusedError(
                f"{where}: brings the package to {self.declared} bytes, more than {limits.max_ratio:g} times "
                f"its {self.compressed_bytes} bytes on disk"
            )

    def directory(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the directory ``into/parts``, created as needed.

        Walking with ``dir_fd`` and ``O_NOFOLLOW`` means no path component can
        be redirected by a link, whatever is in ``into``.
        """
        if self._parent is not None and self._parent[0] == parts:
            return self._parent[1]
        self.close()
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            where = "/".join(parts)
            raise OutputError(f"{self.into}: cannot create directory {where!r}: {exc.strerror or exc}") from exc
        self._parent = (parts, fd)
        return fd

    def write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        """Copy one regular member to ``into``, counting what is written."""
        where = f"member {member.name!r}"
        try:
            parent = self.directory(parts[:-1])
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
        except OSError as exc:
            raise OutputError(f"{self.into}: cannot create {where}: {exc.strerror or exc}") from exc
        with open(fd, "wb") as out, _read_member(tar, member) as source:
            written = 0
            while True:
                try:
                    chunk = source.read(_COPY_CHUNK)
                except tarfile.ReadError as exc:
                    raise _CorruptError(f"{where}: {exc}") from None
                if not chunk:
                    break
                written += len(chunk)
                self.written += len(chunk)
                if written > member.size:
                    raise _RefusedError(f"{where}: holds more than the {member.size} bytes its header declares")
                if self.written > self.limits.max_total_bytes:
                    raise _RefusedError(f"{where}: writing it exceeds the {self.limits.max_total_bytes}-byte limit")
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise OutputError(f"{self.into}: cannot write {where}: {exc.strerror or exc}") from exc
            if written != member.size:
                raise _CorruptError(f"{where}: ends after {written} of {member.size} bytes")
            try:
                out.flush()
            except OSError as exc:
                raise OutputError(f"{self.into}: cannot write {where}: {exc.strerror or exc}") from exc
            # The mtime is informational; an absurd one is no reason to block.
            with suppress(OverflowError, OSError, ValueError):
                os.utime(out.fileno(), (member.mtime, member.mtime))


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - regular members always have data
        raise _CorruptError(f"member {member.name!r}: no data")
    return source


def _open_package_file(path: Path) -> BinaryIO:
    # O_NONBLOCK so that a FIFO named like a package fails the check below
    # instead of hanging the open; it changes nothing for regular files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProductReadError(path, "a package must be a regular file")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_stream(raw: BinaryIO, path: Path, limits: PackageLimits) -> _PackageStream:
    magic = raw.read(6)
    raw.seek(0)
    if not magic:
        raise _CorruptError("the file is empty")
    for prefix, name in _OTHER_COMPRESSION.items():
        if magic.startswith(prefix):
            raise ProductReadError(path, f"package is compressed with {name}; only gzip and plain tar are read")
    return _PackageStream(raw, path, limits, gzipped=magic.startswith(_GZIP_MAGIC))


def _check_end(stream: _PackageStream, watch: _HeaderWatch, offset: int) -> None:
    """Require a proper end-of-archive marker followed by zeros only."""
    if not watch.saw_end_marker:
        raise _CorruptError(f"no valid header or end-of-archive marker at offset {offset}")
    trailing = 0
    while chunk := stream.read(_COPY_CHUNK):
        if chunk.count(0) != len(chunk):
            raise _RefusedError(
                f"data after the end-of-archive marker at offset {offset}: "
                "'tar -i' would find members that were never screened"
            )
        trailing += len(chunk)
        if trailing > _MAX_TRAILING_BYTES:
            raise _RefusedError(f"more than {_MAX_TRAILING_BYTES} bytes of padding after the end-of-archive marker")


def _run(path: Path, into: Path, limits: PackageLimits, raw: BinaryIO, root_fd: int) -> list[PackageMember]:
    stream = _open_stream(raw, path, limits)
    watch = _HeaderWatch()
    state = _Extraction(path, into, limits, root_fd)
    state.compressed_bytes = max(os.fstat(raw.fileno()).st_size, 1)
    members: list[PackageMember] = []
    dest = str(into)
    try:
        tar = tarfile.TarFile(
            fileobj=stream, mode="r", tarinfo=_watched_tarinfo(watch), encoding="utf-8", errors="surrogateescape"
        )
        while True:
            member = tar.next()
            if member is None:
                _check_end(stream, watch, tar.offset)
                return members
            state.count += 1
            if state.count > limits.max_members:
                raise _RefusedError(f"member {member.name!r}: more than {limits.max_members} members")
            parts = _name_parts(member.name, limits)
            kind = _kind(member)
            if not parts:
                if kind == "dir":
                    continue  # './', the extraction directory itself
                raise _RefusedError(f"member {member.name!r}: empty name")
            state.claim(member.name, parts, is_dir=kind == "dir")
            try:
                tarfile.data_filter(member, dest)
            except tarfile.FilterError as exc:
                raise _RefusedError(f"member {member.name!r}: refused by tarfile's data filter: {exc}") from None
            if kind == "dir":
                state.directory(parts)
                continue
            state.check_size(member.name, member.size)
            state.write(tar, member, parts)
            members.append(PackageMember("/".join(parts), into.joinpath(*parts), member.size))
    finally:
        state.close()


def extract_package(path: Path, into: Path, limits: PackageLimits = PackageLimits()) -> list[PackageMember]:
    """Vet and extract every regular file of a package into ``into``.

    The package is read once, front to back. Each member is vetted from its
    header before anything of it is written; a bad member found after good
    ones still blocks the whole package, and what was extracted before it
    stays in ``into``. On any error the caller must discard ``into``:
    :func:`opened_package` does so. Nothing is ever written outside ``into``
    and the package file is only read.

    Parameters
    ----------
    path
        The package: gzip-compressed or plain tar, whatever its name.
    into
        An existing, empty directory, created privately by the caller (for
        example with :func:`tempfile.mkdtemp`). Files are created ``0600``
        and directories ``0700``; file mtimes are taken from the archive.
    limits
        Bounds on member count and sizes.

    Returns
    -------
    list of PackageMember
        The regular files in archive order. Directories are created but not
        listed.

    Raises
    ------
    UnsafePackageError
        A member must not be extracted (link, device, FIFO, sparse file,
        unsafe or duplicate name, over a limit, more data than declared, or
        data after the end of the archive). The message names the member.
    ProductReadError
        The package cannot be read, or it is corrupt or truncated.
    OutputError
        ``into`` is not an empty directory, or a file cannot be written there.
    """
    try:
        if not into.is_dir() or into.is_symlink() or any(into.iterdir()):
            raise OutputError(f"{into}: extraction directory must be an existing, empty directory")
        root_fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, RSPolicyError):
            raise
        raise OutputError(f"{into}: cannot use as extraction directory: {exc.strerror or exc}") from exc
    try:
        with _open_package_file(path) as raw:
            return _run(path, into, limits, raw, root_fd)
    except RSPolicyError:
        raise
    except _RefusedError as exc:
        raise UnsafePackageError(path, str(exc)) from None
    except _CorruptError as exc:
        raise ProductReadError(path, f"corrupt or truncated package: {exc}") from None
    except (tarfile.TarError, zlib.error, EOFError, ValueError, IndexError, UnicodeError, RecursionError) as exc:
        # tarfile reports damaged headers with any of these.
        raise ProductReadError(path, f"corrupt or truncated package: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise ProductReadError(path, f"cannot read package: {exc.strerror or exc}") from exc
    finally:
        os.close(root_fd)


@contextmanager
def opened_package(
    path: Path,
    limits: PackageLimits = PackageLimits(),
) -> Iterator[tuple[Path, list[PackageMember]]]:
    """Extract a package into a private temporary directory for the ``with`` block.

    The directory is made by :func:`tempfile.mkdtemp` (mode ``0700``) and
    removed when the block ends, whether it ends normally or by an error,
    including an error during extraction.

    Parameters
    ----------
    path
        The package.
    limits
        Passed to :func:`extract_package`.

    Yields
    ------
    tuple of (Path, list of PackageMember)
        The temporary directory and the extracted files.

    Raises
    ------
    UnsafePackageError, ProductReadError, OutputError
        As :func:`extract_package`.
    """
    tmp = Path(tempfile.mkdtemp(prefix="rspolicy-pkg-"))
    try:
        members = extract_package(path, tmp, limits)
        yield tmp, members
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Outside the handler so that a failure to remove extracted products is
    # reported rather than silently leaving them behind.
    try:
        shutil.rmtree(tmp)
    except OSError as exc:
        raise OutputError(f"{tmp}: cannot remove extracted package: {exc}") from exc


def write_package(members: Sequence[tuple[Path, str]], dest: Path) -> None:
    """Write a package from local files, atomically and deterministically.

    The archive is written to a temporary file next to ``dest``, synced to
    disk, then renamed onto ``dest``, so ``dest`` is either the old file or
    the complete new one. Members are sorted by archive name and get the
    mtime of their source file (whole seconds), owner 0:0 with empty owner
    names, and mode ``0644``; the gzip header holds no name or time. Equal
    inputs therefore give equal bytes. A ``.tar`` destination is written
    uncompressed; the package file itself gets mode ``0644``.

    Parameters
    ----------
    members
        Pairs of (local regular file, archive name). Archive names must pass
        the same checks :func:`extract_package` applies.
    dest
        The package to write, ending in ``.tar.gz``, ``.tgz`` or ``.tar``;
        an existing file is replaced.

    Raises
    ------
    OutputError
        When an archive name is unsafe or repeated, a source is not a
        regular file, or anything fails while writing; no temporary file is
        left behind and ``dest`` is untouched.
    """
    if not is_package(dest):
        raise OutputError(f"{dest}: a package must end in .tar.gz, .tgz or .tar")
    gzipped = not dest.name.lower().endswith(".tar")
    entries = _package_entries(members)
    # The folder is opened once and everything below happens relative to it:
    # a link swapped in for the folder later cannot redirect the package, and
    # a link at ``dest`` itself is replaced by the rename, never followed.
    try:
        folder = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot open its folder: {exc.strerror or exc}") from exc
    try:
        _write_package_in(folder, entries, dest, gzipped)
    finally:
        os.close(folder)


def _create_temporary(folder: int, dest: Path) -> tuple[int, str]:
    for _ in range(100):
        name = f".{dest.name}.{secrets.token_hex(6)}.part"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=folder)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{dest}: cannot create a temporary file beside it: {exc.strerror or exc}") from exc
        return fd, name
    raise OutputError(f"{dest}: cannot create a temporary file beside it: every name tried exists")


def _write_package_in(folder: int, entries: list[tuple[str, Path]], dest: Path, gzipped: bool) -> None:
    fd, tmp_name = _create_temporary(folder, dest)
    done = False
    try:
        with open(fd, "wb") as raw:
            if gzipped:
                # No file name and a zero mtime in the gzip header keep the
                # output byte-identical for equal inputs.
                with _gzip_writer(raw) as gz, _tar_writer(gz) as tar:
                    _add_entries(tar, entries)
            else:
                with _tar_writer(raw) as tar:
                    _add_entries(tar, entries)
            raw.flush()
            os.fchmod(raw.fileno(), 0o644)
            os.fsync(raw.fileno())
        os.replace(tmp_name, dest.name, src_dir_fd=folder, dst_dir_fd=folder)
        done = True
    except OutputError:
        raise
    except Exception as exc:
        raise OutputError(f"{dest}: cannot write package: {exc}") from exc
    finally:
        if not done:
            with suppress(FileNotFoundError):
                os.unlink(tmp_name, dir_fd=folder)
    # Makes the rename durable; some file systems cannot sync a folder, and
    # the package is complete either way.
    with suppress(OSError):
        os.fsync(folder)


def _gzip_writer(raw: BinaryIO) -> gzip.GzipFile:
    # Level 6 rather than tarfile's 9: packages are gigabytes, and 9 is
    # several times slower for a few per cent.
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)


def _tar_writer(out: BinaryIO | gzip.GzipFile) -> tarfile.TarFile:
    return tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", copybufsize=_COPY_CHUNK)


def _package_entries(members: Sequence[tuple[Path, str]]) -> list[tuple[str, Path]]:
    limits = PackageLimits()
    seen: dict[str, str] = {}
    entries: list[tuple[str, Path]] = []
    for local, name in members:
        try:
            parts = _name_parts(name, limits)
        except _RefusedError as exc:
            raise OutputError(f"cannot write package: {exc}") from None
        if not parts:
            raise OutputError(f"cannot write package: member {name!r}: empty name")
        clean = "/".join(parts)
        key = _key(parts)
        if key in seen:
            raise OutputError(f"cannot write package: member {name!r} collides with {seen[key]!r}")
        seen[key] = name
        entries.append((clean, local))
    entries.sort(key=lambda entry: entry[0])
    return entries


def _add_entries(tar: tarfile.TarFile, entries: list[tuple[str, Path]]) -> None:
    for name, local in entries:
        # O_NONBLOCK so that a FIFO given by mistake fails below instead of
        # hanging the open; it changes nothing for regular files.
        fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(f"{local}: not a regular file, cannot add it as {name!r}")
            source = open(fd, "rb")  # noqa: SIM115 - closed by the with below
        except BaseException:
            os.close(fd)
            raise
        with source:
            info = tarfile.TarInfo(name)
            info.size = st.st_size
            info.mtime = int(st.st_mtime)
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, source)

