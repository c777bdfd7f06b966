"""The report of a batch: one entry per product and the totals, as JSON, CSV or an HTML page.

``write_report`` picks the format from the file's suffix:

* ``.json``: ``{"summary": {...}, "policy": {...}, "products": [...]}``. ``summary`` is
  :meth:`BatchSummary.to_dict <rspolicy.results.BatchSummary.to_dict>` (a count per
  outcome, ``products``, ``bytes_in``, ``bytes_out``, ``seconds``); ``policy`` is written
  only when given; ``products`` holds one
  :meth:`ProductResult.to_dict <rspolicy.results.ProductResult.to_dict>` per product, each
  on a line of its own (so ``grep`` finds a product and the whole entry comes with it).
  This is the machine-readable form: strings are exactly the results' strings.
* ``.csv``: a header row, then one row per product with the columns of
  :data:`CSV_COLUMNS`; ``outputs`` is ``path=sha256`` per released file, joined by ``;``.
  It is for people with a spreadsheet: it has no summary (the JSON form has it, and the
  command prints it), and since file names are chosen by whoever delivered the products, a
  text cell that a spreadsheet would take for a formula (one starting with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return) is written with a leading apostrophe. A file
  name holding ``;`` or ``=`` makes ``outputs`` ambiguous: use the JSON form to process it.
* ``.html``: a self-contained page for people (:mod:`rspolicy.htmlreport`): the summary,
  the blocked and failed products first, a footprint map, quicklooks of degraded
  products, and every decision with its evidence from the audit log.

Both are UTF-8. Strings are expected to be display strings already (see
:func:`rspolicy.records.display_text`); an undecodable file-name byte that slipped through
is written backslash-escaped rather than failing the report.

A report is written atomically: into a temporary file beside it, flushed to disk, then
renamed over the target. A run that fails or is killed while writing leaves the previous
report (or none), never part of one; only a killed run can leave its temporary file
(``.NAME.*.tmp``) behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rspolicy.errors import OutputError, ReportError, RSPolicyError
from rspolicy.results import BatchSummary, ProductResult

__all__ = ["CSV_COLUMNS", "FORMULA_PREFIXES", "REPORT_FORMATS", "csv_cell", "write_report", "write_text_atomically"]

#: Report formats by file suffix (compared case-insensitively).
REPORT_FORMATS = {".json": "json", ".csv": "csv", ".html": "html", ".htm": "html"}

#: Columns of the CSV report, in order.
CSV_COLUMNS = ("path", "outcome", "decision_id", "class", "satellite", "gsd_m", "target_gsd_m", "output_gsd_m",
               "reason", "outputs", "bytes_in", "bytes_out")

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: Permissions of a new report (an existing report keeps its own).
_NEW_FILE_MODE = 0o644


def write_report(path: str | os.PathLike[str], summary: BatchSummary, results: Sequence[ProductResult], *,
                 policy: Mapping[str, Any] | None = None, log: str | os.PathLike[str] | None = None,
                 policies: Sequence[Any] = ()) -> None:
    """Write the report of a batch, as JSON, CSV or HTML by the suffix of ``path``, atomically.

    Parameters
    ----------
    path
        The report file: ``*.json``, ``*.csv`` or ``*.html`` (any case). Its folder must
        exist; an existing report is replaced, keeping its permissions (a new one is 0644).
    summary
        The batch's totals (only the JSON form carries them).
    results
        One result per product, in the order to report them.
    policy
        Describes the policy applied (e.g. name, version, sha256): written as the JSON
        form's ``"policy"``, left out when None; the CSV form ignores it.
    log
        HTML only: the audit log the batch wrote to, whose records give each product's
        evidence and footprint and whose chain the page reports. When None, the log
        ``enforce`` writes without ``--log`` (:func:`rspolicy.audit.resolve_log_path`).
    policies
        HTML only: loaded policies besides the named ones of ``rules/`` (the one applied,
        when it is a file), to find the policy's coarsest limit for quicklooks.

    Raises
    ------
    ReportError
        The suffix is none of ``.json``, ``.csv`` and ``.html``, or a value cannot be written (a
        non-finite number, an object JSON cannot represent). Nothing is written.
    OutputError
        The report cannot be written (missing or read-only folder, disk full): an
        ``OSError`` too. The target is left as it was and no temporary file remains.

    Examples
    --------
    >>> import csv, json, pathlib, tempfile
    >>> from rspolicy.results import BatchSummary, ProductResult, Result
    >>> results = [ProductResult("GF2_PMS1.tiff", Result.BLOCKED, "0.8 m finer than 1 m", bytes_in=512)]
    >>> summary = BatchSummary.of(results, seconds=2.0)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_report(folder / "night.json", summary, results, policy={"name": "default"})
    >>> report = json.loads((folder / "night.json").read_text(encoding="utf-8"))
    >>> report["summary"]["blocked"], report["policy"], report["products"][0]["reason"]
    (1, {'name': 'default'}, '0.8 m finer than 1 m')
    >>> write_report(folder / "night.csv", summary, results)
    >>> with open(folder / "night.csv", newline="", encoding="utf-8") as fh:
    ...     [row["outcome"] for row in csv.DictReader(fh)]
    ['blocked']
    """
    target = Path(path)
    kind = REPORT_FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ReportError(f"{target}: unknown report format {target.suffix or '(no suffix)'!r}: "
                          f"name the file *.json or *.csv, or *.html for a page")
    if kind == "html":
        from rspolicy.htmlreport import batch_report_html  # noqa: PLC0415 - Jinja2 and shapely load only for it

        page = batch_report_html(summary, results, log=log, policy=policy, policies=policies)
        write_text_atomically(target, page)
    elif kind == "json":
        _write_atomically(target, lambda fh: _write_json(fh, target, summary, results, policy), newline="\n")
    else:
        # The csv module ends rows with \r\n itself (RFC 4180): the file must not translate them.
        _write_atomically(target, lambda fh: _write_csv(fh, target, results), newline="")


def csv_cell(text: str) -> str:
    """A text cell of the CSV report: ``text``, with an apostrophe first if a spreadsheet would run it as a formula.

    Parameters
    ----------
    text
        The cell's text.

    Returns
    -------
    str
        ``text``, or ``"'" + text`` when it starts with one of :data:`FORMULA_PREFIXES`.

    Examples
    --------
    >>> csv_cell("=cmd|' /C calc'!A0.tiff")
    "'=cmd|' /C calc'!A0.tiff"
    >>> csv_cell("GF2_PMS1.tiff")
    'GF2_PMS1.tiff'
    """
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def _dumps(value: Any, target: Path, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{target}: cannot write {what}: {exc}") from exc


def _write_json(fh: TextIO, target: Path, summary: BatchSummary, results: Sequence[ProductResult],
                policy: Mapping[str, Any] | None) -> None:
    fh.write(f'{{"summary": {_dumps(summary.to_dict(), target, "the summary")},\n')
    if policy is not None:
        fh.write(f' "policy": {_dumps(dict(policy), target, "the policy")},\n')
    fh.write(' "products": [')
    for i, result in enumerate(results):
        fh.write(",\n  " if i else "\n  ")
        fh.write(_dumps(result.to_dict(), target, f"product {i + 1} ({result.path})"))
    fh.write("\n ]\n}\n" if len(results) else "]\n}\n")


def _csv_number(value: Any, target: Path, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{target}: cannot write {where}: not a number: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(f"{target}: cannot write {where}: {value!r} is not a finite number")
    return repr(value)  # repr: the shortest text that reads back as the same number


def _csv_text(value: Any) -> str:
    return "" if value is None else csv_cell(str(value))


def _write_csv(fh: TextIO, target: Path, results: Sequence[ProductResult]) -> None:
    writer = csv.writer(fh)
    writer.writerow(CSV_COLUMNS)
    for i, result in enumerate(results):
        d = result.to_dict()
        where = f"product {i + 1} ({result.path})"
        outputs = ";".join(f"{o['path']}={o['sha256']}" for o in d["outputs"])
        writer.writerow([
            _csv_text(d["path"]), _csv_text(d["outcome"]), _csv_text(d["decision_id"]), _csv_text(d["class"]),
            _csv_text(d["satellite"]),
            *(_csv_number(d[key], target, f"{where}: {key}") for key in ("gsd_m", "target_gsd_m", "output_gsd_m")),
            _csv_text(d["reason"]), _csv_text(outputs),
            _csv_number(d["bytes_in"], target, f"{where}: bytes_in"),
            _csv_number(d["bytes_out"], target, f"{where}: bytes_out"),
        ])


def write_text_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` as UTF-8, atomically (as every report is written).

    Parameters
    ----------
    target
        The file; its folder must exist. An existing file keeps its permissions.
    text
        What to write (undecodable file-name bytes are written backslash-escaped).

    Raises
    ------
    OSError
        The file cannot be written; the target is left as it was and no temporary file remains.
    """
    def write(fh: TextIO) -> None:
        fh.write(text)

    _write_atomically(target, write, newline="\n")


def _write_atomically(target: Path, write: Callable[[TextIO], None], *, newline: str) -> None:
    """Write ``target`` through a temporary file in its folder, renamed over it once complete and on disk."""
    folder = target.parent
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = _NEW_FILE_MODE
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the report ({exc.strerror or exc})") from exc
    try:
        with open(fd, "w", encoding="utf-8", errors="backslashreplace", newline=newline) as fh:
            write(fh)
            fh.flush()
            os.fchmod(fd, mode)
            os.fsync(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, RSPolicyError):
            raise OutputError(f"{target}: cannot write the report ({exc.strerror or exc})") from exc
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; best effort (some file systems cannot sync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
