"""The pixel size of a browse image or thumbnail, read from its header in Python.

Browse images travel beside products (``X.jpg``, ``X.png``). They are rasters
like any other: the gate measures them against the product's grid and never
releases them. Only the size in the header is needed, so no image library
(no C decoder) sees their bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from rspolicy.errors import ProductReadError
from rspolicy.safeio import open_regular

#: Bytes read at most: a JPEG's frame header may follow metadata segments.
_MAX_HEADER_BYTES = 4 * 1024 * 1024
#: Largest side accepted; beyond it the header is not a real image's.
_MAX_SIDE = 10_000_000
_JPEG_FRAME_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})


def browse_size(path: Path) -> tuple[int, int]:
    r"""Width and height of a PNG, JPEG, GIF or BMP image.

    Raises
    ------
    ProductReadError
        When the file is none of these or its header is damaged.

    Examples
    --------
    >>> import tempfile, zlib
    >>> png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 640, 480, 8, 2, 0, 0, 0)
    >>> with tempfile.NamedTemporaryFile(suffix=".png") as f:
    ...     _ = f.write(png + b"\0" * 4); f.flush()
    ...     browse_size(Path(f.name))
    (640, 480)
    """
    try:
        with open_regular(path) as fh:
            head = fh.read(_MAX_HEADER_BYTES)
    except OSError as exc:
        raise ProductReadError(path, f"cannot read browse image ({exc.strerror or exc})") from exc
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        height = abs(height)
    elif head.startswith(b"\xff\xd8"):
        width, height = _jpeg_size(path, head)
    else:
        raise ProductReadError(path, "not a PNG, JPEG, GIF or BMP image")
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ProductReadError(path, f"browse image header gives an impossible size {width} x {height}")
    return int(width), int(height)


def _jpeg_size(path: Path, data: bytes) -> tuple[int, int]:
    """The size in a JPEG's first frame header (SOFn), walking its marker segments."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ProductReadError(path, f"damaged JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            raise ProductReadError(path, f"damaged JPEG: segment length {length} at byte {pos}")
        if marker in _JPEG_FRAME_MARKERS:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, start of scan before any frame header
            break
        pos += 2 + length
    raise ProductReadError(path, "JPEG without a frame header in its first 4 MiB")
