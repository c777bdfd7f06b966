"""``rspolicy log``: verify, read, export, report and anchor the decision audit log.

A thin layer over :mod:`rspolicy.audit`. LOG defaults to the log ``enforce``
writes, found by :func:`rspolicy.audit.resolve_log_path` in the same order
(``$RSPOLICY_LOG``, the config file's ``log``, then the default
``$XDG_STATE_HOME/rspolicy/decisions.jsonl``, i.e.
``~/.local/state/rspolicy/decisions.jsonl``); a LOG that is the log's own path
stands for all its rotated files too. The key of a keyed log is read from
``$RSPOLICY_LOG_KEY``. A log that does not exist, a key or a config file that
cannot be used is one line on standard error, exit status 2.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import click

from rspolicy import audit, records
from rspolicy.cli.options import OneLineUsageError, PolicyUsageError, cli_config
from rspolicy.errors import AuditLogError, PolicyError, RSPolicyError
from rspolicy.policy import load_policy

_HEX64 = re.compile(r"[0-9a-f]{64}")

log_argument = click.argument("log_path", metavar="[LOG]", required=False, type=click.Path(path_type=str))


def _parse_since(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time",
                                 ctx=ctx, param=param) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _filters(func: Any) -> Any:
    func = click.option("--satellite", metavar="S", help="Only records of this satellite (case-insensitive).")(func)
    func = click.option("--action", metavar="A", type=click.Choice(["allow", "resample", "block"],
                                                                   case_sensitive=False),
                        help="Only records with this action.")(func)
    return click.option("--since", metavar="DATE", callback=_parse_since,
                        help="Only records from this UTC date or ISO 8601 time on.")(func)


def _key() -> bytes | None:
    try:
        return audit.key_from_env()
    except AuditLogError as exc:
        raise OneLineUsageError(str(exc)) from None


def _default_log(log_path: str | None) -> Path:
    """LOG, or the log ``enforce`` writes when LOG is not given (the same resolution)."""
    try:
        return audit.resolve_log_path(log_path, config=cli_config(), default=True)
    except AuditLogError as exc:
        raise OneLineUsageError(str(exc)) from None


def _existing_log(log_path: str | None) -> Path:
    """:func:`_default_log`, which must exist: one line naming the path otherwise."""
    path = _default_log(log_path)
    if not path.exists():
        if log_path:
            raise OneLineUsageError(f"{path}: no such log")
        raise OneLineUsageError(f"{path}: no such log (LOG not given: this is where `rspolicy enforce` logs)")
    return path


def _files(log_paths: Iterable[str | None]) -> list[Path]:
    """The files LOG arguments stand for, in chain order; usage error when there are none."""
    paths = [_existing_log(p) for p in log_paths] or [_existing_log(None)]
    return audit.expand_log_paths(paths)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _row(rec: Mapping[str, Any]) -> tuple[str, ...]:
    flat = audit.flatten(rec)
    # An event is not a decision, even when it carries one (a "failed" record does).
    action = f"({rec['event']})" if "event" in rec else flat["action"]
    target = f" -> {_fmt(flat['target_gsd_m'])} m" if flat["target_gsd_m"] is not None else ""
    gsd = f"{_fmt(flat['gsd_m'])} m" if flat["gsd_m"] is not None else "-"
    return (_fmt(flat["seq"]), _fmt(flat["timestamp"])[:19].replace("T", " "), _fmt(action).upper() + target,
            _fmt(flat["satellite"]), _fmt(flat["product_class"]), gsd, _fmt(flat["recipient"]), _fmt(flat["path"]))


@click.group("log")
def log() -> None:
    """Verify, read and export the decision audit log."""


@log.command("verify")
@click.argument("log_paths", metavar="[LOG]...", nargs=-1, type=click.Path(path_type=str))
@click.option("--anchor", metavar="HASH",
              help="Fail unless the chain still holds the record with this hash (a head noted earlier).")
@click.option("--partial", is_flag=True, help="Accept a chain whose first files are elsewhere (archived).")
@click.option("--fast", is_flag=True, help="Hash the stored bytes without re-canonicalising each record.")
def verify_cmd(log_paths: tuple[str, ...], anchor: str | None, partial: bool, fast: bool) -> None:
    """Check the hash chain of LOG (all its files), or of the files given, in order.

    Prints "OK: N records, head HASH" and exits 0 when every record verifies
    and every release recorded by `enforce` happened; prints the first broken
    record as FILE:LINE and exits 1 otherwise. A record whose files a killed
    run never placed is listed ("release not completed: decision ID, PATH
    absent") and makes the exit status 1 until the next `enforce` run with
    this log reconciles it.
    """
    if anchor is not None and not _HEX64.fullmatch(anchor):
        raise click.BadParameter("must be 64 lowercase hex digits", param_hint="--anchor")
    key = _key()
    files = _files(log_paths)
    result = audit.verify(files, key=key, from_genesis=not partial, anchor=anchor, strict=not fast)
    if result.ok:
        # A record whose release did not happen is not a leak, but it says files left that did not:
        # the log is not clean until a later enforce run has reconciled it.
        try:
            unreleased = [(p, problem) for p in records.pending_releases(audit.iter_records(files))
                          for problem in records.release_problems(p, compare_digest=False)]
        except AuditLogError as exc:
            raise click.ClickException(str(exc)) from None
        for pending, problem in unreleased:
            click.echo(records.display_text(f"release not completed: decision {pending.decision_id}, "
                                            f"{problem.path} {problem.problem}"))
        if unreleased:
            click.echo(f"chain OK ({result.records} records, head {result.head}), but {len(unreleased)} recorded "
                       "file(s) were never placed: run `rspolicy enforce` with this log and output folder to "
                       "reconcile")
            raise click.exceptions.Exit(1)
        click.echo(f"OK: {result.records} records, head {result.head}")
        return
    click.echo(f"BROKEN: {result.problem}")
    click.echo(f"({result.records} records verified before it)")
    raise click.exceptions.Exit(1)


@log.command("show")
@log_argument
@_filters
@click.option("--json", "as_json", is_flag=True, help="The records as stored, one JSON object per line.")
def show_cmd(log_path: str | None, as_json: bool, **filters: Any) -> None:
    """List the records of LOG, oldest first (not verified: see `log verify`)."""
    records = audit.iter_records(_files([log_path]), **filters)
    try:
        if as_json:
            for rec in records:
                click.echo(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            return
        header = ("SEQ", "TIME (UTC)", "ACTION", "SATELLITE", "CLASS", "GSD", "RECIPIENT", "PRODUCT")
        rows = [_row(rec) for rec in records]
    except AuditLogError as exc:
        raise click.ClickException(str(exc)) from None
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


@log.command("export")
@log_argument
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), required=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default="-",
              help="Write here instead of standard output.")
@_filters
def export_cmd(log_path: str | None, fmt: Literal["csv", "jsonl"], output: str, **filters: Any) -> None:
    """Write the records of LOG as CSV (one flat row each) or JSON Lines (as stored)."""
    records = audit.iter_records(_files([log_path]), **filters)
    try:
        if output == "-":
            audit.export_records(records, fmt, sys.stdout)
        else:
            # newline="": the csv module writes its own line ends.
            with open(output, "w", encoding="utf-8", newline="") as out:
                audit.export_records(records, fmt, out)
    except (AuditLogError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@log.command("report")
@log_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The page to write (FILE.html); replaced atomically.")
@click.option("--policy", "policy_refs", multiple=True, metavar="NAME|FILE",
              help="A policy the records were decided under that is not a policy of rules/ by name "
                   "(repeatable): needed to show its products' quicklooks.")
@click.option("--base", "base_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the records' relative input paths are relative to (default: the current one).")
@_filters
def report_cmd(log_path: str | None, output: Path, policy_refs: tuple[str, ...], base_dir: Path | None,
               **filters: Any) -> None:
    """Write a self-contained HTML report of LOG: summary, map, quicklooks, every decision.

    One file that opens offline: counts per outcome, class and satellite,
    bytes in and out, the policies, the log's head hash and whether its chain
    verified; the blocked and failed products first; the footprints on a map;
    before and after quicklooks of every degraded product, at a ground scale
    coarser than every limit of the policy; and a sortable, filterable table
    of every decision, each row opening its evidence.
    """
    path = _existing_log(log_path)
    key = _key()
    policies = []
    for ref in policy_refs:
        try:
            policies.append(load_policy(ref))
        except PolicyError as exc:
            raise PolicyUsageError(" ".join(str(exc).split())) from None
    from rspolicy.htmlreport import log_report_html, write_html_report  # noqa: PLC0415 - Jinja2, shapely, GDAL

    try:
        page = log_report_html([path], key=key, policies=policies, base_dir=base_dir, **filters)
        write_html_report(output, page)
    except (RSPolicyError, OSError) as exc:
        raise click.ClickException(records.display_text(" ".join(str(exc).split()))) from None
    click.echo(records.display_text(f"wrote {output}"), err=True)


@log.command("head")
@log_argument
def head_cmd(log_path: str | None) -> None:
    """Print the newest record's hash, the record count and the file holding it.

    Note the hash somewhere else: `log verify --anchor HASH` then detects
    records cut off the end, which the chain alone cannot.
    """
    path = _existing_log(log_path)
    if path.is_dir():
        raise OneLineUsageError(f"{path}: give the log file, not a folder")
    try:
        head = audit.AuditLog(path, key=_key()).head()
    except AuditLogError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{head.hash}  {head.count} records  {head.path}")


@log.command("repair")
@log_argument
def repair_cmd(log_path: str | None) -> None:
    """Move a torn last line (an interrupted write) into LOG.torn and record that in the chain."""
    path = _existing_log(log_path)
    if not path.is_file():
        raise OneLineUsageError(f"{path}: give the log file, not a folder")
    config = cli_config()
    try:
        result = audit.AuditLog(path, key=_key(), rotate_bytes=config.rotate_bytes,
                                rotate_daily=config.rotate_daily).repair()
    except AuditLogError as exc:
        raise click.ClickException(str(exc)) from None
    if result is None:
        click.echo("nothing to repair: the log ends with a complete line")
    else:
        click.echo(f"moved {result.length} bytes from offset {result.offset} to {result.quarantine} "
                   f"(sha256 {result.sha256}); recorded as seq {result.record['seq']}")
