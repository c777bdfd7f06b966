"""Opening files that come from outside: regular files only, refused before a byte is read.

A path rspolicy reads (a log, a policy, a config file, a sidecar, a STAC
document) may name a FIFO, which blocks the open until a writer comes, or a
device such as ``/dev/zero``, whose reading never ends. Every such read goes
through :func:`open_regular`, which opens without blocking, checks the kind
of file on the open descriptor (so a swap after a check cannot slip past) and
only then reads.
"""

from __future__ import annotations

import errno
import io
import os
import stat


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open a regular file for reading in binary mode.

    Raises
    ------
    OSError
        ``EINVAL`` "not a regular file" for a FIFO, device, socket or
        folder (and whatever ``open`` raises for a missing or unreadable
        file); nothing has been read.

    Examples
    --------
    >>> open_regular("/dev/zero")
    Traceback (most recent call last):
    ...
    OSError: [Errno 22] not a regular file: '/dev/zero'
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a regular file: more than ``limit`` tells the caller it is too large."""
    with open_regular(path) as stream:
        return stream.read(limit + 1)


__all__ = ["open_regular", "read_regular"]
