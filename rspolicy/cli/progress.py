"""Progress of a batch on the terminal, the per-product table lines, and the closing summary.

Streams: the per-product table (:func:`format_row`) goes to standard output, so that
``rspolicy enforce ... > table.txt`` keeps it; progress and the summary go to standard
error. The display is picked by :func:`progress_mode`:

* ``"bar"``, standard error is a terminal: a live rich bar (products, bytes, speed, counts
  per outcome, ETA). Lines printed meanwhile through :meth:`BatchProgress.echo`, and
  anything written to ``sys.stderr`` (or to ``sys.stdout`` when it is the same terminal),
  appear above the bar instead of through it. When standard output is not that terminal,
  :meth:`~BatchProgress.echo` writes to it directly, as in the other modes.
* ``"lines"``, standard error is not a terminal (a nightly job's log): a plain line at most
  every ``interval`` seconds, when a product ends, and one when the batch ends::

      progress: 120/300 products, 1.2 GiB/3.4 GiB, 40 released 10 degraded 3 blocked 0 failed 67 skipped, ETA 0:01:10

* ``"none"`` (``--quiet``): no progress at all.

A command uses it like this::

    mode = progress_mode(quiet, sys.stderr)
    width = table_width(sys.stdout)
    with BatchProgress(len(products), total_bytes, mode) as progress:
        for result in run_batch():
            progress.echo(format_row(result, width))
            progress.advance(result)
    for line in summary_lines(BatchSummary.of(results, seconds)):
        click.echo(line, err=True)

rich is imported only when a bar is shown: ``rich.progress`` takes 35 to 60 ms to import
(``python -X importtime``), a tenth of ``import rspolicy.cli``, which every command,
``--help`` and every run in a script would otherwise pay. This module alone takes 0.5 ms.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

import click

from rspolicy.results import BatchSummary, ProductResult, Result

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.progress import Progress, TaskID

__all__ = ["ELLIPSIS", "BatchProgress", "Mode", "format_row", "human_bytes", "human_duration", "progress_mode",
           "summary_lines", "table_width", "why_column"]

#: How progress is shown: a live bar, periodic plain lines, or not at all.
Mode = Literal["bar", "lines", "none"]

#: Marks text cut to fit a width.
ELLIPSIS = "\u2026"

#: Width of the OUTCOME column (the longest outcome, ``RELEASED``, and a space).
OUTCOME_WIDTH = 9

#: Narrowest WHY and PATH kept before the row gives up other parts (see :func:`format_row`).
_MIN_WHY = 12
_MIN_PATH = 12

_SEP = "  "
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_UNPRINTABLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


# -- text that fits a terminal -------------------------------------------------------------------------------------


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _printable(text: str) -> str:
    r"""``text`` with control and format characters (escapes, bidi overrides, line breaks) shown as ``\xNN``."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in text)


def _cell(ch: str) -> int:
    # Wide and full-width characters take two columns. Everything else counts one, zero-width
    # marks included: an overestimate, so that a row fits both in columns and in characters.
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _cells(text: str) -> int:
    return len(text) if text.isascii() else sum(_cell(ch) for ch in text)


def _head(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` columns."""
    used = 0
    for i, ch in enumerate(text):
        used += _cell(ch)
        if used > width:
            return text[:i]
    return text


def _tail(text: str, width: int) -> str:
    """The longest end of ``text`` that takes at most ``width`` columns."""
    used = 0
    for i in range(len(text) - 1, -1, -1):
        used += _cell(text[i])
        if used > width:
            return text[i + 1:]
    return text


def why_column(text: str, width: int, *, ellipsis: str = ELLIPSIS) -> str:
    r"""``text`` made printable and cut to at most ``width`` terminal columns, ending in an ellipsis if cut.

    Parameters
    ----------
    text
        The reason to show.
    width
        Columns available (0 or less gives an empty string).
    ellipsis
        Marks a cut (``"..."`` for a terminal that cannot show ``…``).

    Returns
    -------
    str
        ``text`` unchanged when it fits, else its start and ``ellipsis``. Control and format
        characters are shown as escapes (``\x1b``), wide characters count two columns.

    Examples
    --------
    >>> why_column("0.5 m is finer than the 1 m limit", 20)
    '0.5 m is finer than…'
    >>> why_column("within limit", 80)
    'within limit'
    """
    text = _printable(text)
    if _cells(text) <= width:
        return text
    if width <= _cells(ellipsis):
        return _head(ellipsis, max(width, 0))
    return _head(text, width - _cells(ellipsis)) + ellipsis


def _cut_start(text: str, width: int, ellipsis: str) -> str:
    """``text`` (printable) cut at its start to ``width`` columns: a path keeps its file name."""
    if _cells(text) <= width:
        return text
    if width <= _cells(ellipsis):
        return _head(ellipsis, max(width, 0))
    return ellipsis + _tail(text, width - _cells(ellipsis))


def _resolution(result: ProductResult) -> str:
    src = f"{result.gsd_m:g} m" if result.gsd_m is not None else ""
    out = result.output_gsd_m if result.output_gsd_m is not None else result.target_gsd_m
    if out is None or out == result.gsd_m:
        return src
    return f"{src or '?'} -> {out:g} m"


def format_row(result: ProductResult, width: int, *, ellipsis: str = ELLIPSIS) -> str:
    """One line of the per-product table, at most ``width`` columns: it never wraps.

    ``OUTCOME  PATH  GSD[ -> TARGET]  WHY``: the outcome padded to 9 characters, the
    product's path, its resolution and what it was released at, and the reason. When the
    line is too long the reason is cut first (down to 12 columns), then the path (at its
    start, so the file name stays), then the reason is left out, then the resolution, and
    at last the path and the outcome are cut.

    Parameters
    ----------
    result
        The product's result.
    width
        Columns available (see :func:`table_width`); a huge width cuts nothing.
    ellipsis
        Marks a cut.

    Returns
    -------
    str
        The line, without a newline. Control and format characters of the path and reason
        are shown as escapes; wide characters count two columns, so the line takes at most
        ``width`` columns and has at most ``width`` characters.

    Examples
    --------
    >>> from rspolicy.results import ProductResult, Result
    >>> r = ProductResult("in/GF2_PMS1.tiff", Result.DEGRADED, "pan finer than 1 m", gsd_m=0.8, target_gsd_m=1.0)
    >>> format_row(r, 200)
    'DEGRADED in/GF2_PMS1.tiff  0.8 m -> 1 m  pan finer than 1 m'
    >>> format_row(r, 55)
    'DEGRADED in/GF2_PMS1.tiff  0.8 m -> 1 m  pan finer tha…'
    >>> format_row(r, 50)
    'DEGRADED …F2_PMS1.tiff  0.8 m -> 1 m  pan finer t…'
    >>> format_row(r, 20)
    'DEGRADED …_PMS1.tiff'
    """
    if width <= 0:
        return ""
    head = f"{result.result.value.upper():<{OUTCOME_WIDTH}}"
    path = _printable(result.path)
    res = _resolution(result)
    why = _printable(result.reason)
    mid = _SEP + res if res else ""
    full = head + path + mid + (_SEP + why if why else "")
    if _cells(full) <= width:
        return full
    fixed = _cells(head) + _cells(mid)
    # 1. cut the reason
    room = width - fixed - _cells(path) - len(_SEP)
    if why and room >= min(_MIN_WHY, _cells(why)):
        return head + path + mid + _SEP + why_column(why, room, ellipsis=ellipsis)
    # 2. a short reason, and cut the path
    short_why = _SEP + why_column(why, _MIN_WHY, ellipsis=ellipsis) if why else ""
    room = width - fixed - _cells(short_why)
    if room >= _MIN_PATH:
        return head + _cut_start(path, room, ellipsis) + mid + short_why
    # 3. no reason
    room = width - fixed
    if room >= min(_MIN_PATH, _cells(path)):
        return head + _cut_start(path, room, ellipsis) + mid
    # 4. outcome and path only
    room = width - _cells(head)
    if room >= 1:
        return head + _cut_start(path, room, ellipsis)
    return _head(head, width).rstrip()


def table_width(stream: TextIO | None = None) -> int:
    """Columns for the table on ``stream`` (default: standard output): the terminal's, or no limit when not a terminal.

    Parameters
    ----------
    stream
        Where the table goes.

    Returns
    -------
    int
        The terminal width (``$COLUMNS`` if set, see :func:`shutil.get_terminal_size`),
        or :data:`sys.maxsize` when ``stream`` is a file or pipe, so that nothing is cut.
    """
    return shutil.get_terminal_size().columns if _isatty(sys.stdout if stream is None else stream) else sys.maxsize


# -- numbers for people ---------------------------------------------------------------------------------------------


def human_bytes(n: int) -> str:
    """A byte count in binary units, one decimal.

    Examples
    --------
    >>> human_bytes(512), human_bytes(1536), human_bytes(3 * 2**30 + 2**29)
    ('512 B', '1.5 KiB', '3.5 GiB')
    """
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """A duration as ``H:MM:SS`` (whole seconds; hours go past 24).

    Examples
    --------
    >>> human_duration(70.4), human_duration(90061)
    ('0:01:10', '25:01:01')
    """
    s = max(round(seconds), 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _counts_text(counts: Mapping[Result, int], sep: str = " ") -> str:
    return sep.join(f"{counts.get(r, 0)} {r.value}" for r in Result)


def _rate(products: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    rate = products / seconds
    return f"{rate:.0f}" if rate >= 1000 else f"{rate:.3g}"


def summary_lines(summary: BatchSummary) -> list[str]:
    r"""The closing summary of a batch: counts per outcome, bytes read and released, time and rate.

    Parameters
    ----------
    summary
        The batch's totals.

    Returns
    -------
    list of str
        Three lines, without newlines.

    Examples
    --------
    >>> from rspolicy.results import BatchSummary, Result
    >>> s = BatchSummary({Result.RELEASED: 40, Result.DEGRADED: 10, Result.BLOCKED: 3, Result.SKIPPED: 67},
    ...                  bytes_in=3 * 2**30, bytes_out=2**30 + 2**29, seconds=75)
    >>> print("\n".join(summary_lines(s)))
    120 products: 40 released, 10 degraded, 3 blocked, 0 failed, 67 skipped
    3.0 GiB read, 1.5 GiB released
    0:01:15, 1.6 products/s
    """
    return [
        f"{summary.total} products: {_counts_text(summary.counts, ', ')}",
        f"{human_bytes(summary.bytes_in)} read, {human_bytes(summary.bytes_out)} released",
        f"{human_duration(summary.seconds)}, {_rate(summary.total, summary.seconds)} products/s",
    ]


# -- the display ----------------------------------------------------------------------------------------------------


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


def _same_terminal(a: object, b: object) -> bool:
    """Whether two streams are the same terminal (then lines to one must not cross a bar drawn on the other)."""
    if a is b:
        return True
    if not (_isatty(a) and _isatty(b)):
        return False
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return True  # two terminals we cannot tell apart: assume one screen, the safe side


def progress_mode(quiet: bool, stream: TextIO | None) -> Mode:
    """How to show progress on ``stream`` (standard error).

    Parameters
    ----------
    quiet
        ``--quiet``: no progress.
    stream
        Where progress goes; None (no standard error, e.g. ``pythonw``) shows none.

    Returns
    -------
    Mode
        ``"none"`` when quiet or there is no stream, ``"bar"`` when ``stream`` is a terminal
        (other than ``TERM=dumb``), else ``"lines"``.

    Examples
    --------
    >>> import io
    >>> progress_mode(False, io.StringIO()), progress_mode(True, io.StringIO())
    ('lines', 'none')
    """
    if quiet or stream is None:
        return "none"
    if _isatty(stream) and os.environ.get("TERM", "") != "dumb":
        return "bar"
    return "lines"


class BatchProgress:
    """Progress of a batch, as a context manager: ``advance`` once per product, ``echo`` for table lines.

    Parameters
    ----------
    total_products
        Products in the batch (0 if unknown).
    total_bytes
        Their input bytes (0 if unknown: the ETA then counts products).
    mode
        See :func:`progress_mode`.
    stream
        Where progress goes (default: standard error).
    out
        Where :meth:`echo` writes (default: standard output).
    interval
        ``"lines"`` mode: the least number of seconds between two lines.
    clock
        Monotonic seconds (tests pass a fake one; the bar uses it as well).
    console
        ``"bar"`` mode: the rich console to draw on (default: one on ``stream``).

    Notes
    -----
    The ETA is the bytes (or products) still to do at the rate of the products done so
    far, skipped ones left out: a rerun that skips the first half of a batch does not
    promise to finish the rest as fast. ``advance`` may be called from several threads.
    """

    def __init__(self, total_products: int, total_bytes: int, mode: Mode, *, stream: TextIO | None = None,
                 out: TextIO | None = None, interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 console: Console | None = None) -> None:
        if mode not in ("bar", "lines", "none"):
            raise ValueError(f"progress mode must be 'bar', 'lines' or 'none', not {mode!r}")
        self.total_products = max(total_products, 0)
        self.total_bytes = max(total_bytes, 0)
        self.mode: Mode = mode
        self.interval = interval
        self.counts: dict[Result, int] = dict.fromkeys(Result, 0)
        self.done = 0
        self.bytes_done = 0
        self._work_products = 0  # products done other than skipped, and their bytes: the rate
        self._work_bytes = 0
        self._stream = sys.stderr if stream is None else stream
        self._out = sys.stdout if out is None else out
        self._clock = clock
        self._console = console
        self._lock = threading.RLock()
        self._start = self._last_line = clock()
        self._live: Live | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._echo_above_bar = False

    # -- state

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started (entered)."""
        return max(self._clock() - self._start, 0.0)

    def eta(self) -> float | None:
        """Seconds still to go, or None while there is nothing to estimate from.

        Examples
        --------
        >>> from rspolicy.results import ProductResult, Result
        >>> now = [0.0]
        >>> with BatchProgress(4, 400, "none", clock=lambda: now[0]) as p:
        ...     now[0] = 10.0
        ...     p.advance(ProductResult("a.tif", Result.RELEASED, "ok", bytes_in=100))
        ...     p.eta()
        30.0
        """
        with self._lock:
            if self.total_products and self.done >= self.total_products:
                return 0.0
            elapsed = self.elapsed
            if self.total_bytes and self._work_bytes:
                return max(self.total_bytes - self.bytes_done, 0) * elapsed / self._work_bytes
            if self.total_products and self._work_products:
                return max(self.total_products - self.done, 0) * elapsed / self._work_products
            return None

    def status_line(self) -> str:
        """The ``"lines"`` mode's line for the current state (``progress: ...``)."""
        with self._lock:
            eta = self.eta()
            return (f"progress: {self._products_text()}, {self._bytes_text()}, {_counts_text(self.counts)}, "
                    f"ETA {human_duration(eta) if eta is not None else '?'}")

    def _products_text(self) -> str:
        return f"{self.done}/{self.total_products or '?'} products"

    def _bytes_text(self) -> str:
        total = human_bytes(self.total_bytes) if self.total_bytes else "?"
        return f"{human_bytes(self.bytes_done)}/{total}"

    # -- context

    def __enter__(self) -> BatchProgress:
        self._start = self._last_line = self._clock()
        if self.mode == "bar":
            self._start_bar()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            if self.mode == "bar" and self._live is not None:
                self._update_bar()
                self._live.stop()
                self._live = None
            elif self.mode == "lines" and exc_type is None:
                # After an error the command's one-line message is all that is said (scripts grep for one line).
                line = (f"progress: {self._products_text()}, {self._bytes_text()}, {_counts_text(self.counts)}, "
                        f"finished in {human_duration(self.elapsed)}")
                self._write(self._stream, line)

    def advance(self, result: ProductResult) -> None:
        """Count one product's end: its outcome and input bytes; update the display.

        Parameters
        ----------
        result
            The product's result.
        """
        with self._lock:
            self.counts[result.result] += 1
            self.done += 1
            if self.total_products and self.done > self.total_products:
                # A delivery package counts as one product until it is opened and found to hold several.
                self.total_products = self.done
            self.bytes_done += result.bytes_in
            if result.result is not Result.SKIPPED:
                self._work_products += 1
                self._work_bytes += result.bytes_in
            if self.mode == "bar":
                self._update_bar()
            elif self.mode == "lines" and not (self.total_products and self.done >= self.total_products):
                now = self._clock()  # (the last product's line is the closing one)
                if now - self._last_line >= self.interval:
                    self._last_line = now
                    self._write(self._stream, self.status_line())

    def echo(self, line: str) -> None:
        """Print one table line: above the bar when it shares its terminal, else plainly to standard output.

        Parameters
        ----------
        line
            The line, without a newline; control characters are shown as escapes.
        """
        line = _printable(line)
        with self._lock:
            if self._live is not None and self._echo_above_bar:
                from rich.text import Text  # noqa: PLC0415  (rich is loaded only for a bar, see the module doc)

                self._live.console.print(Text(line), soft_wrap=True)
            else:
                self._write(self._out, line)

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        click.echo(line, file=stream)

    # -- the bar

    def _start_bar(self) -> None:
        # rich takes 35 to 60 ms to import: only a bar pays for it (see the module doc).
        from rich.console import Console, Group  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        console = self._console or Console(file=self._stream)
        bar = Progress(SpinnerColumn(), BarColumn(bar_width=None), TextColumn("{task.description}"),
                       TimeElapsedColumn(), console=console, get_time=self._clock, expand=True)
        total = self.total_bytes or self.total_products or None
        self._task = bar.add_task(self._bar_text(), total=total)
        self._bar = bar

        def render() -> RenderableType:
            return Group(bar, Text(f"  {_counts_text(self.counts, '  ')}", no_wrap=True, overflow="ellipsis"))

        # Output to standard error while the bar is drawn goes above it; so does standard output,
        # and echo, when it is the bar's own terminal. Output to anywhere else is left alone.
        on_stderr = console.file is sys.stderr
        self._echo_above_bar = self._out is console.file or _same_terminal(self._out, console.file)
        self._live = Live(console=console, get_renderable=render, refresh_per_second=4, transient=False,
                          redirect_stderr=on_stderr, redirect_stdout=on_stderr and self._echo_above_bar)
        self._live.start(refresh=True)

    def _bar_text(self) -> str:
        speed = self._work_bytes / self.elapsed if self.elapsed > 0 else 0.0
        eta = self.eta()
        return (f"{self._products_text()}  {self._bytes_text()}  {human_bytes(round(speed))}/s  "
                f"ETA {human_duration(eta) if eta is not None else '-:--:--'}")

    def _update_bar(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.bytes_done if self.total_bytes else self.done,
                             description=self._bar_text())
