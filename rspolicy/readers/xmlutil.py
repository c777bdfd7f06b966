"""Safe XML access shared by the sidecar readers.

Sidecars come from outside: they are parsed with defusedxml, which refuses
entity expansion and external references, and every failure becomes a
:class:`~rspolicy.errors.ProductReadError` naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from rspolicy.errors import ProductReadError

#: Sidecars larger than this are not sidecars (a GF-3 meta.xml is ~0.3 MB).
MAX_SIDECAR_BYTES = 64 * 1024 * 1024

#: Values that distributors write for "no value".
_EMPTY_VALUES = {"", "null", "none", "nan", "n/a", "-"}


def parse_xml(path: Path) -> Element:
    """Parse an XML file safely and return its root element.

    Raises
    ------
    ProductReadError
        When the file is missing, too large, not well-formed XML, or uses
        constructs defusedxml forbids.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProductReadError(path, f"cannot read sidecar: {exc.strerror or exc}") from exc
    if size > MAX_SIDECAR_BYTES:
        raise ProductReadError(path, f"sidecar is {size} bytes, more than any real sidecar")
    try:
        root: Element | None = SafeET.parse(str(path)).getroot()
    except DefusedXmlException as exc:
        raise ProductReadError(path, f"unsafe XML refused ({type(exc).__name__})") from exc
    except SafeET.ParseError as exc:
        raise ProductReadError(path, f"not well-formed XML ({exc})") from exc
    except OSError as exc:
        raise ProductReadError(path, f"cannot read sidecar: {exc.strerror or exc}") from exc
    if root is None:
        raise ProductReadError(path, "empty XML document")
    return root


def local_name(tag: str) -> str:
    """The tag without its namespace: ``{ns}prdf`` -> ``prdf``."""
    return tag.rsplit("}", 1)[-1]


def root_tag(path: Path) -> str | None:
    """The local name of an XML file's root element, or None if it is not XML."""
    try:
        return local_name(parse_xml(path).tag)
    except ProductReadError:
        return None


def find_text(root: Element, path: str) -> str | None:
    """Stripped text at a namespace-agnostic ``a/b/c`` path, None when empty.

    >>> import xml.etree.ElementTree as ET
    >>> find_text(ET.fromstring("<r><a><b> 7 </b></a><c>NULL</c></r>"), "a/b")
    '7'
    >>> find_text(ET.fromstring("<r><c>NULL</c></r>"), "c") is None
    True
    """
    node: Element | None = root
    for part in path.split("/"):
        if node is None:
            return None
        node = next((child for child in node if local_name(child.tag) == part), None)
    if node is None or node.text is None:
        return None
    text = node.text.strip()
    return None if text.lower() in _EMPTY_VALUES else text


def parse_float(text: str | None, path: Path, field: str) -> float | None:
    """A finite float from sidecar text, None when the field is empty.

    Raises
    ------
    ProductReadError
        When the field holds something that is not a finite number.

    >>> parse_float("3.240000000000000", Path("x.xml"), "ImageGSD")
    3.24
    >>> parse_float(None, Path("x.xml"), "ImageGSD") is None
    True
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ProductReadError(path, f"<{field}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ProductReadError(path, f"<{field}> is not finite: {text!r}")
    return value


def parse_positive(text: str | None, path: Path, field: str) -> float | None:
    """Like :func:`parse_float` but the value must be > 0 (a resolution, a size)."""
    value = parse_float(text, path, field)
    if value is not None and value <= 0:
        raise ProductReadError(path, f"<{field}> must be positive, not {text!r}")
    return value
