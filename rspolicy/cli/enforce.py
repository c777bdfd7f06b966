"""``rspolicy enforce``: the batch step. Release, degrade or refuse each product, writing only what may leave."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from rspolicy.batch import logged_enforce
from rspolicy.cli.options import (
    RequestUsageError,
    cli_request,
    jobs_option,
    json_option,
    log_options,
    open_log,
    policy_option,
)
from rspolicy.cli.progress import BatchProgress, format_row, progress_mode, summary_lines
from rspolicy.enforce import (
    EnforceOptions,
    Outcome,
    OutputFolder,
    WorkItem,
    check_release_time,
    item_bytes,
    resume_scope,
    work_items,
)
from rspolicy.errors import OutputError, PolicyError, RSPolicyError
from rspolicy.policy import Policy
from rspolicy.readers.discover import FoundPackage, FoundProduct
from rspolicy.records import (
    Requester,
    display_text,
)
from rspolicy.report import REPORT_FORMATS, write_report
from rspolicy.results import EXIT_USAGE, BatchSummary, batch_exit_status


class ToolFailure(click.ClickException):
    """The command could not complete: one line on standard error, exit status 1."""

    def show(self, file: Any = None) -> None:
        """Print ``rspolicy: error: MESSAGE``."""
        click.echo(f"rspolicy: error: {display_text(self.format_message())}", err=True)


class BatchUsageError(click.UsageError):
    """A batch that names nothing to do: one line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        """Print ``rspolicy: error: MESSAGE``."""
        click.echo(f"rspolicy: error: {display_text(self.format_message())}", err=True)


def _creation_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx=ctx, param=param)
        if key.strip().lower() == "driver":
            raise click.BadParameter("the driver is not a creation option (degraded images are GeoTIFF or COG)",
                                     ctx=ctx, param=param)
        options[key.strip().upper()] = setting.strip()
    return options


def _named_paths(paths: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """The paths named on the command line, with ``-`` replaced by the lines of standard input.

    Returns the paths and the ones typed on the command line (which must exist).
    """
    named: list[str] = []
    typed: set[str] = set()
    for raw in paths:
        if raw == "-":
            data = sys.stdin.buffer.read()
            named.extend(os.fsdecode(line) for line in data.split(b"\n") if line.strip())
        else:
            named.append(raw)
            typed.add(raw)
    return named, typed


def _check_found(named: list[str], typed: set[str], items: list[WorkItem]) -> None:
    for raw in typed:
        if not os.path.lexists(raw):
            raise BatchUsageError(f"{raw}: no such file or directory")
    if not items:
        raise BatchUsageError(f"no products found under {' '.join(named) or '-'}")
    owned = [Path(os.path.abspath(i.files.main if isinstance(i, FoundProduct) else i.path))
             for i in items if isinstance(i, FoundProduct | FoundPackage)]
    for raw in typed:
        folder = Path(os.path.abspath(raw))
        if folder.is_dir() and not any(p.is_relative_to(folder) for p in owned):
            raise BatchUsageError(f"no products found under {raw}")


class _Stop:
    """SIGINT/SIGTERM: the first stops starting new products (those in flight finish); the second ends at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()

    @contextmanager
    def installed(self) -> Iterator[_Stop]:
        """Handle both signals inside the block (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


class _Out:
    """Standard output that goes quiet when its reader goes away (``| head``): the batch carries on."""

    def __init__(self) -> None:
        self.closed = False

    def echo(self, line: str) -> None:
        if self.closed:
            return
        try:
            click.echo(line)
        except BrokenPipeError:
            self.closed = True
            # Later flushes at exit must not complain either.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def _row(outcome: Outcome, width: int) -> str:
    return display_text(format_row(outcome.to_result(), width))


@click.command("enforce")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for released and degraded products (outputs mirror the input tree).")
@policy_option
@click.option("--format", "output_format", type=click.Choice(["gtiff", "cog"]), default="gtiff", show_default=True,
              help="Format of degraded images.")
@click.option("--co", "creation_options", multiple=True, metavar="KEY=VALUE", callback=_creation_option,
              help="GDAL creation option for degraded images, e.g. COMPRESS=DEFLATE, ZLEVEL=1 (repeatable; "
                   "default: the source's compression).")
@click.option("--stac", is_flag=True,
              help="Write a STAC Item (NAME.stac.json) beside every released product, validated offline.")
@click.option("--force", is_flag=True, help="Redo products an earlier run completed; replace existing outputs.")
@click.option("--overwrite", "force_alias", is_flag=True, hidden=True)
@jobs_option
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Threads inside one product (default: cores / jobs).")
@click.option("--scheduler", default=None, metavar="local|ADDRESS",
              help="Run on dask.distributed: a LocalCluster, or an existing scheduler (tcp://host:8786).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a report of the batch: FILE.json, FILE.csv, or FILE.html (a page for people).")
@click.option("-q", "--quiet", is_flag=True, help="No per-product lines, no progress, no summary.")
@json_option
@click.option("--log", "log_path", default=None, metavar="FILE",
              help="Audit log (default: $RSPOLICY_LOG, the config file, or ~/.local/state/rspolicy/decisions.jsonl).")
@log_options
@click.pass_context
def enforce_command(ctx: click.Context, paths: tuple[str, ...], outdir: Path, policy: Policy, output_format: str,
                    creation_options: dict[str, str], stac: bool, force: bool, force_alias: bool, jobs: int,
                    threads: int | None, scheduler: str | None, report_path: Path | None, quiet: bool,
                    as_json: bool, log_path: str | None, recipient: str | None, purpose: str | None,
                    approval: str | None, at: str | None, operator: str | None) -> None:
    """Release, degrade or refuse every product under PATH... (files, folders, packages, STAC Items; - reads stdin).

    Each product is decided once however many of its files are named, and
    ends in one outcome: released, degraded, blocked (the policy said so),
    failed (rspolicy could not complete: I/O, permissions, disk full) or
    skipped (an earlier run with this log completed it: same inputs, same
    policy, outputs intact; --force redoes it). Outputs mirror the input
    tree. A product's record is written before its files are moved into
    place; a failure is logged as a failure, never as a block.

    Exit status: 0 every product released, degraded or skipped; 4 some
    blocked; 1 some failed (or the log could not be written); 2 usage
    error (no products found); 130/143 stopped by SIGINT/SIGTERM.
    """
    request = cli_request(recipient, purpose, approval, at)
    try:
        check_release_time(request)
    except PolicyError as exc:
        raise RequestUsageError(str(exc)) from None
    named, typed = _named_paths(paths)
    items = work_items(named)
    _check_found(named, typed, items)
    cores = os.cpu_count() or 1
    opts = EnforceOptions(outdir=outdir, policy=policy, output_format="cog" if output_format == "cog" else "gtiff",
                          force=force or force_alias, threads=threads or max(1, cores // jobs), jobs=jobs,
                          creation_options=creation_options, request=request, stac=stac,
                          resume_scope=resume_scope(policy, request, explicit_time=at is not None))
    if report_path is not None and report_path.suffix.lower() not in REPORT_FORMATS:
        raise BatchUsageError(f"--report {report_path}: the report is FILE.json, FILE.csv or FILE.html")
    try:
        OutputFolder(outdir).close()  # an unusable output folder is one line before anything starts
    except OutputError as exc:
        raise ToolFailure(display_text(str(exc))) from None
    try:
        log = open_log(log_path, required=True)
    except OSError as exc:  # AuditLogError included
        raise ToolFailure(display_text(f"cannot open the audit log: {exc}")) from None
    assert log is not None
    requester = Requester.current(operator=operator, recipient=recipient, purpose=purpose)
    out = _Out()
    width = 10_000 if not sys.stdout.isatty() else os.get_terminal_size(sys.stdout.fileno()).columns

    total_bytes = sum(item_bytes(i) for i in items)
    started = time.monotonic()
    stop = _Stop()
    outcomes: list[Outcome] = []
    mode = progress_mode(quiet, sys.stderr)
    try:
        with log, stop.installed(), BatchProgress(len(items), total_bytes, mode) as bar:
            def show(outcome: Outcome) -> None:
                outcomes.append(outcome)
                bar.advance(outcome.to_result())
                if as_json:
                    entry = {**(outcome.decision.to_dict() if outcome.decision is not None else {}),
                             **outcome.to_result().to_dict()}
                    out.echo(json.dumps(entry, ensure_ascii=True, separators=(",", ":")))
                elif not quiet:
                    line = _row(outcome, width)
                    if mode == "bar":
                        bar.echo(line)
                    else:
                        out.echo(line)
                    for note in outcome.notes:
                        if not quiet:
                            click.echo(display_text(f"note {outcome.display}: {note}"), err=True)

            logged_enforce(items, opts, log, requester, progress=show, stop=stop.event, scheduler=scheduler,
                           notice=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        stop.signum = stop.signum or signal.SIGINT
    except (RSPolicyError, OSError) as exc:
        # A tool failure (output folder, audit log): one line, exit 1, never a traceback.
        raise ToolFailure(display_text(str(exc))) from None
    summary = BatchSummary.of((o.to_result() for o in outcomes), time.monotonic() - started)
    if report_path is not None:
        try:
            write_report(report_path, summary, [o.to_result() for o in outcomes],
                         policy=policy.ref.to_dict(), log=log.path, policies=[policy])
        except (RSPolicyError, OSError) as exc:
            raise ToolFailure(display_text(f"cannot write the report: {exc}")) from None
    if not quiet and not as_json:
        for line in summary_lines(summary):
            click.echo(line, err=True)
    if stop.signum is not None:
        click.echo(f"rspolicy: stopped by {signal.Signals(stop.signum).name}: {len(outcomes)} of {len(items)} "
                   "product(s) done; rerun the same command to finish", err=True)
        ctx.exit(128 + stop.signum)
    ctx.exit(batch_exit_status(o.result for o in outcomes))
