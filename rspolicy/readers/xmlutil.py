"""Safe XML access and number parsing shared by the sidecar readers.

Sidecars come from outside, so what rspolicy reads from them is only what it
parsed in full and measured:

* documents are parsed with defusedxml (no entity expansion, no external
  references) and refused outright when they carry a DTD, a comment or a
  processing instruction (other than the XML declaration) or are larger than
  any real sidecar: none of those belong in a distributor's sidecar, and each
  is a way to make two programs read one file differently;
* a field is every element at its path, not the first one: a field written
  twice with different values is a malformed sidecar, refused rather than
  read either way;
* numbers are plain ASCII decimals of bounded length, finite, and within
  the range their meaning allows (a resolution between 1 mm and 40,000 km,
  a pixel count between 1 and 10 million); anything else is refused with
  the file and the field.

Every failure is a :class:`~rspolicy.errors.ProductReadError` naming the file.
"""

from __future__ import annotations

import contextvars
import math
import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from rspolicy.errors import ProductReadError
from rspolicy.safeio import open_regular

#: Sidecars larger than this are not sidecars (a full GF-3 meta.xml is ~0.2 MB,
#: a GF-2 sidecar ~4 kB): anything past it is room for a payload to ride out in.
MAX_SIDECAR_BYTES = 4 * 1024 * 1024

#: The longest text one element, tail or attribute of a sidecar may hold (real
#: ones: under 700 characters, a file list in an order file): metadata are short
#: values, and a long one is a payload, not a description.
MAX_TEXT_CHARS = 4096

#: The finest and coarsest ground distance any field may state, in metres:
#: below a millimetre or beyond the Earth's circumference a value is absurd.
MIN_LENGTH_M = 1e-3
MAX_LENGTH_M = 4.0e7

#: The most pixels along one axis of any product.
MAX_PIXEL_COUNT = 10_000_000

#: Elements nested deeper than this are not a sidecar (real ones nest 5 deep);
#: the bound keeps every later walk of the tree far from the recursion limit.
MAX_XML_DEPTH = 64

#: A number written with more characters than this is not a measurement.
MAX_NUMBER_CHARS = 64

#: Values that distributors write for "no value".
_EMPTY_VALUES = {"", "null", "none", "n/a", "-"}

#: A plain decimal number, ASCII digits only: no hexadecimal floats, digit
#: separators, full-width digits, ``inf`` or ``nan``, which Python's
#: ``float`` would accept and other readers of the same file would not.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

#: Where a value is shown in a message, it is cut to this many characters.
_SHOWN_CHARS = 40

#: The file each parsed element came from, for error messages. Weak keys:
#: an entry goes with its tree.
_SOURCE_FILES: weakref.WeakKeyDictionary[Element, Path] = weakref.WeakKeyDictionary()


class _Refusals:
    """Expat handlers that note what a sidecar must not contain."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def comment(self, text: str) -> None:
        self.problem = self.problem or f"XML comment refused ({shown(text.strip())}): a sidecar carries none"

    def processing_instruction(self, target: str, _data: str) -> None:
        self.problem = self.problem or (f"XML processing instruction {shown(target)} refused: "
                                        "a sidecar carries none")


def _depth(root: Element) -> int:
    """How deep elements nest, counting ``root`` as 1 (iteratively: any depth)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node)
    return deepest


def shown(text: Any) -> str:
    """A value cut short for a one-line message.

    >>> shown("1" * 100)
    "'1111111111111111111111111111111111111111'... (100 characters)"
    """
    value = str(text)
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"


#: Trees parsed inside :func:`parsing_once`, by path, with the file's identity when parsed.
_PARSED: contextvars.ContextVar[dict[str, tuple[tuple[int, int, int, int], Element]] | None] = \
    contextvars.ContextVar("rspolicy_parsed_xml", default=None)


@contextmanager
def parsing_once() -> Iterator[None]:
    """Within the block, a file parsed again, unchanged, gives the tree parsed first.

    Reading one product looks at a sidecar twice (which reader, then the
    reader itself); one parse serves both. A file changed in between (inode,
    size or modification time) is parsed again.
    """
    token = _PARSED.set({})
    try:
        yield
    finally:
        _PARSED.reset(token)


def parse_xml(path: Path) -> Element:
    """Parse a sidecar safely and return its root element.

    Inside :func:`parsing_once`, an unchanged file is parsed once.

    Parameters
    ----------
    path
        The XML file.

    Returns
    -------
    Element
        The root; rspolicy remembers ``path`` for it and its children so
        that :func:`find_text` can name the file in its errors.

    Raises
    ------
    ProductReadError
        When the file is missing or larger than :data:`MAX_SIDECAR_BYTES`,
        is not well-formed XML, has a DTD, entities or external references,
        a comment or a processing instruction.
    """
    parsed = _PARSED.get()
    try:
        with open_regular(path) as stream:
            status = os.fstat(stream.fileno())
            identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            known = parsed.get(os.fspath(path)) if parsed is not None else None
            if known is not None and known[0] == identity:
                return known[1]
            # Read one byte past the bound: the size is decided on what was
            # read, not on a stat that a growing file could outrun.
            data = stream.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ProductReadError(path, f"cannot read sidecar: {exc.strerror or exc}") from exc
    if len(data) > MAX_SIDECAR_BYTES:
        raise ProductReadError(path, f"sidecar is larger than {MAX_SIDECAR_BYTES} bytes, more than any real sidecar")
    refusals = _Refusals()
    try:
        parser = DefusedXMLParser(target=TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
        # Expat reports comments and processing instructions (never the XML
        # declaration) wherever they are, before and after the root too.
        parser.parser.CommentHandler = refusals.comment
        parser.parser.ProcessingInstructionHandler = refusals.processing_instruction
        parser.feed(data)
        root: Element | None = parser.close()
    except DefusedXmlException as exc:
        raise ProductReadError(path, f"unsafe XML refused ({type(exc).__name__}: DTDs, entities and external "
                                     "references are not allowed in a sidecar)") from exc
    except ParseError as exc:
        raise ProductReadError(path, f"not well-formed XML ({exc})") from exc
    except (ValueError, LookupError, RecursionError, MemoryError) as exc:
        # Unknown encodings (LookupError) and absurd nesting end here too.
        raise ProductReadError(path, f"not readable XML ({type(exc).__name__}: {shown(exc)})") from exc
    if refusals.problem is not None:
        raise ProductReadError(path, refusals.problem)
    if root is None:
        raise ProductReadError(path, "empty XML document")
    if _depth(root) > MAX_XML_DEPTH:
        raise ProductReadError(path, f"elements nested more than {MAX_XML_DEPTH} deep: not a sidecar")
    _check_text_lengths(path, root)
    # The root and its children: the elements readers start their lookups from.
    for element in (root, *root):
        _SOURCE_FILES[element] = path
    if parsed is not None:
        parsed[os.fspath(path)] = (identity, root)
    return root


def _check_text_lengths(path: Path, root: Element) -> None:
    for element in root.iter():
        values = [element.text or "", element.tail or "", *element.attrib.values()]
        if any(len(value) > MAX_TEXT_CHARS for value in values):
            name = local_name(element.tag) if isinstance(element.tag, str) else "?"
            raise ProductReadError(path, f"<{name[:40]}> holds a value longer than {MAX_TEXT_CHARS} characters: "
                                         "not metadata")


def local_name(tag: str) -> str:
    """The tag without its namespace: ``{ns}prdf`` -> ``prdf``."""
    return tag.rsplit("}", 1)[-1]


def root_tag(path: Path) -> str | None:
    """The local name of an XML file's root element, or None if it is not XML."""
    try:
        return local_name(parse_xml(path).tag)
    except ProductReadError:
        return None


def sidecar_file(element: Element) -> Path | str:
    """The file an element was parsed from, for messages (``<XML>`` if unknown)."""
    return _SOURCE_FILES.get(element, "<XML>")


def element_text(node: Element) -> str | None:
    """All text of an element, stripped; None for the "no value" spellings.

    The text of child elements counts as well: ``<a>2.0<x/>0.3</a>`` is
    ``2.00.3``, never ``2.0``.

    >>> import xml.etree.ElementTree as ET
    >>> element_text(ET.fromstring("<a> 7 </a>")), element_text(ET.fromstring("<a>NULL</a>"))
    ('7', None)
    """
    text = "".join(node.itertext()).strip()
    return None if text.lower() in _EMPTY_VALUES else text


def find_all(root: Element, path: str) -> list[Element]:
    """Every element at a namespace-agnostic ``a/b/c`` path, in document order.

    Each step takes the matching children of every element of the step
    before, so a repeated parent (``<ProductInfo>`` twice) contributes all
    of its fields.

    >>> import xml.etree.ElementTree as ET
    >>> doc = ET.fromstring("<r><a><b>1</b></a><a><b>2</b><b>3</b></a></r>")
    >>> [b.text for b in find_all(doc, "a/b")]
    ['1', '2', '3']
    """
    nodes = [root]
    for part in path.split("/"):
        nodes = [child for node in nodes for child in node if local_name(child.tag) == part]
        if not nodes:
            break
    return nodes


def single_value(values: list[str | None], file: Path | str, field: str) -> str | None:
    """The one value a field holds, however often it is written.

    Parameters
    ----------
    values
        The field's value at each place it is written (None for empty).
    file
        The file, for the error.
    field
        The field's name, for the error.

    Returns
    -------
    str or None
        The value when every occurrence agrees; None when there is none.

    Raises
    ------
    ProductReadError
        When the occurrences differ (an empty one differs from a value):
        a reader taking either would let the other pass unseen.
    """
    distinct = list(dict.fromkeys(values))
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    listed = ", ".join("empty" if v is None else (v if len(v) <= _SHOWN_CHARS else shown(v)) for v in distinct[:5])
    more = f" and {len(distinct) - 5} more" if len(distinct) > 5 else ""
    raise ProductReadError(file, f"<{field}> appears {len(values)} times with different values ({listed}{more})")


def find_text(root: Element, path: str, *, file: Path | None = None) -> str | None:
    """The stripped text of a field at a namespace-agnostic ``a/b/c`` path.

    Every element at the path counts: equal repeats read as one value,
    different ones are refused.

    Parameters
    ----------
    root
        The element the path starts from.
    path
        ``/``-separated local names.
    file
        The sidecar, for errors; by default the file the element was parsed
        from.

    Returns
    -------
    str or None
        The text, or None when the field is absent or empty (``NULL``).

    Raises
    ------
    ProductReadError
        When the field is written more than once with different values.

    >>> import xml.etree.ElementTree as ET
    >>> find_text(ET.fromstring("<r><a><b> 7 </b></a><c>NULL</c></r>"), "a/b")
    '7'
    >>> find_text(ET.fromstring("<r><c>NULL</c></r>"), "c") is None
    True
    """
    nodes = find_all(root, path)
    return single_value([element_text(n) for n in nodes], file or sidecar_file(root), path)


def find_text_anywhere(root: Element, name: str, *, file: Path | None = None,
                       field: str | None = None) -> str | None:
    """The text of every element named ``name`` at any depth below ``root``, as one value.

    For fields that a sidecar writes once, wherever a copy is slipped in
    (``<Extra><ImageGSD>0.3</ImageGSD></Extra>``), it counts. ``field``
    names the field in errors (default ``name``).

    Raises
    ------
    ProductReadError
        When the copies differ.

    >>> import xml.etree.ElementTree as ET
    >>> find_text_anywhere(ET.fromstring("<r><a><g>2</g></a><g>2</g></r>"), "g")
    '2'
    """
    return single_value([element_text(n) for n in iter_named(root, name) if n is not root],
                        file or sidecar_file(root), field or name)


def find_texts(root: Element, path: str) -> list[str]:
    """The distinct non-empty texts of a list field, in document order.

    For fields that are lists by nature (one entry per polarisation), where
    repeats with different values are the point, not an error.
    """
    return list(dict.fromkeys(t for t in map(element_text, find_all(root, path)) if t is not None))


def iter_named(root: Element, name: str) -> Iterator[Element]:
    """Every element named ``name`` (local name) anywhere below and at ``root``, in document order."""
    index = _NAMED.get(root)
    if index is None:
        # Readers look up a score of fields in one tree: index it once, not once per field.
        index = {}
        for node in root.iter():
            if isinstance(node.tag, str):
                index.setdefault(local_name(node.tag), []).append(node)
        _NAMED[root] = index
    return iter(index.get(name, ()))


#: Elements of a tree by local name (trees are never changed once parsed).
_NAMED: weakref.WeakKeyDictionary[Element, dict[str, list[Element]]] = weakref.WeakKeyDictionary()


def parse_float(text: str | None, path: Path | str, field: str, *,
                lowest: float | None = None, highest: float | None = None, what: str = "value") -> float | None:
    """A finite float from sidecar text, None when the field is empty.

    Parameters
    ----------
    text
        The field's text (None: the field is empty or absent).
    path
        The file, for errors.
    field
        The field, for errors.
    lowest, highest
        The closed range the value must lie in, if any.
    what
        What the value is, for the error (``"latitude"``).

    Raises
    ------
    ProductReadError
        When the text is not a plain decimal number of at most
        :data:`MAX_NUMBER_CHARS` characters, is not finite, or is outside
        the range.

    >>> parse_float("3.240000000000000", Path("x.xml"), "ImageGSD")
    3.24
    >>> parse_float(None, Path("x.xml"), "ImageGSD") is None
    True
    """
    if text is None:
        return None
    written = text.strip()
    if len(written) > MAX_NUMBER_CHARS:
        raise ProductReadError(path, f"<{field}> is not a number: {shown(written)} is too long for a measurement")
    if not _DECIMAL.fullmatch(written):
        raise ProductReadError(path, f"<{field}> is not a number: {shown(written)}")
    value = float(written)
    if not math.isfinite(value):
        raise ProductReadError(path, f"<{field}> is absurd: {shown(written)} is not a finite number")
    if (lowest is not None and value < lowest) or (highest is not None and value > highest):
        raise ProductReadError(path, f"<{field}> is absurd: {shown(written)} is not a {what} "
                                     f"in [{lowest:g}, {highest:g}]")
    return value


def parse_positive(text: str | None, path: Path | str, field: str) -> float | None:
    """Like :func:`parse_float` but the value must be > 0."""
    value = parse_float(text, path, field)
    if value is not None and value <= 0:
        raise ProductReadError(path, f"<{field}> is absurd: must be positive, not {shown(text)}")
    return value


def check_length_m(value: float, path: Path | str, field: str, written: str | None = None) -> float:
    """A ground distance in metres, checked to lie within [1 mm, 40,000 km].

    Raises
    ------
    ProductReadError
        When the value is not finite or outside that range.

    >>> check_length_m(0.81, Path("x.xml"), "ImageGSD")
    0.81
    """
    if not (math.isfinite(value) and MIN_LENGTH_M <= value <= MAX_LENGTH_M):
        how = f"{shown(written)} = {value:g} m" if written is not None else f"{value:g} m"
        raise ProductReadError(path, f"<{field}> is absurd: {how} is not a ground distance "
                                     f"in [{MIN_LENGTH_M:g} m, {MAX_LENGTH_M / 1000:g} km]")
    return value


def parse_length_m(text: str | None, path: Path | str, field: str) -> float | None:
    """A resolution or extent in metres from sidecar text, None when empty.

    Raises
    ------
    ProductReadError
        When the text is not a number or the value is outside
        [1 mm, 40,000 km] (zero, negative, underflowed or overflowed).

    >>> parse_length_m("0.81", Path("x.xml"), "ImageGSD")
    0.81
    """
    value = parse_float(text, path, field)
    return None if value is None else check_length_m(value, path, field, text)


def check_pixel_count(value: float, path: Path | str, field: str, written: str | None = None) -> int:
    """A whole number of pixels within [1, 10^7].

    Raises
    ------
    ProductReadError
        When the value is not a whole number or is outside that range.
    """
    shown_value = shown(written if written is not None else value)
    if not (math.isfinite(value) and value == math.floor(value)):
        raise ProductReadError(path, f"<{field}> is not a whole number of pixels: {shown_value}")
    if not 1 <= value <= MAX_PIXEL_COUNT:
        raise ProductReadError(path, f"<{field}> is absurd: {shown_value} pixels is not in [1, {MAX_PIXEL_COUNT}]")
    return int(value)


def parse_pixel_count(text: str | None, path: Path | str, field: str) -> int | None:
    """A whole number of pixels within [1, 10^7] from sidecar text, None when empty.

    >>> parse_pixel_count("29200", Path("x.xml"), "WidthInPixels")
    29200
    """
    value = parse_float(text, path, field)
    return None if value is None else check_pixel_count(value, path, field, text)
