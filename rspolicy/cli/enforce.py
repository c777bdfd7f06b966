"""``rspolicy enforce``: release, degrade or refuse each product, writing only what may leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rspolicy.cli.options import json_option, log_options, open_log, paths_argument, policy_option
from rspolicy.enforce import EnforceOptions, Outcome, enforce, other_runs
from rspolicy.errors import RSPolicyError
from rspolicy.model import exit_status
from rspolicy.policy import Policy
from rspolicy.records import Requester, decision_record, display_text, reconcile_releases, released_record


class ToolFailure(click.ClickException):
    """The command could not complete: one line on standard error, exit status 1."""

    def show(self, file: Any = None) -> None:
        """Print ``rspolicy: error: MESSAGE``."""
        click.echo(f"rspolicy: error: {display_text(self.format_message())}", err=True)


def _line(outcome: Outcome) -> str:
    d = outcome.decision
    target = f" to {d.target_gsd_m:g} m" if d.target_gsd_m else ""
    written = f" -> {len(outcome.outputs)} file(s)" if outcome.outputs else ""
    why = d.reasons[-1] if d.reasons else ""
    return display_text(f"{d.action.value.upper():<9}{d.path}{target}{written}  ({why})")


@click.command("enforce")
@paths_argument
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for released and degraded products.")
@policy_option
@click.option("--format", "output_format", type=click.Choice(["gtiff", "cog"]), default="gtiff", show_default=True,
              help="Format of degraded images.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Worker threads (default: all cores).")
@json_option
@click.option("--log", "log_path", default=None, metavar="FILE",
              help="Audit log (default: $RSPOLICY_LOG, the config file, or ~/.local/state/rspolicy/decisions.jsonl).")
@log_options
@click.pass_context
def enforce_command(ctx: click.Context, paths: tuple[str, ...], outdir: Path, policy: Policy, output_format: str,
                    overwrite: bool, threads: int | None, as_json: bool, log_path: str | None,
                    recipient: str | None, purpose: str | None, operator: str | None) -> None:
    """Release, degrade or refuse each product according to its decision.

    Allowed products are copied unchanged with their sidecars; products to
    resample are written degraded to the policy's target with rewritten
    sidecars; blocked products write nothing. Packages in, packages out.
    Exit status: 0 all released as they are, 3 some degraded, 4 some
    blocked, 2 usage error, 1 the audit log or an output could not be
    written. A product's record is written before its files are moved into
    place: when it cannot be written, nothing of that product is placed.
    Every decision is appended to the audit log; a release a killed run
    recorded but did not complete is reconciled in the log first.
    """
    opts = EnforceOptions(outdir=outdir, policy=policy, output_format="cog" if output_format == "cog" else "gtiff",
                          overwrite=overwrite, threads=threads)
    try:
        log = open_log(log_path, required=True)
    except OSError as exc:  # AuditLogError included
        raise ToolFailure(display_text(f"cannot open the audit log: {exc}")) from None
    assert log is not None
    requester = Requester.current(operator=operator, recipient=recipient, purpose=purpose)

    def report(outcome: Outcome) -> None:
        log.append(decision_record(outcome.decision, requester, command="enforce",
                                   outputs=[o.__dict__ for o in outcome.outputs],
                                   output_gsd_m=outcome.output_gsd_m, notes=outcome.notes,
                                   inputs=[i.__dict__ for i in outcome.inputs]))
        if as_json:
            click.echo(json.dumps({**outcome.decision.to_dict(), "outputs": [o.path for o in outcome.outputs],
                                   "output_gsd_m": outcome.output_gsd_m, "notes": list(outcome.notes)},
                                  ensure_ascii=True, separators=(",", ":")))
        else:
            click.echo(_line(outcome))
            for note in outcome.notes:
                click.echo(display_text(f"note {outcome.decision.path}: {note}"), err=True)

    def released(outcome: Outcome) -> None:
        log.append(released_record(outcome.decision.decision_id, outcome.decision.path, requester))

    try:
        with log:
            # A run killed between a record and its renames left records whose files are absent:
            # say so in the log before this run adds its own.
            busy = other_runs(outdir)
            if busy:
                click.echo(f"note: not reconciling the log: another run (pid {', '.join(map(str, busy))}) is "
                           f"writing into {display_text(str(outdir))}", err=True)
            for rec in ([] if busy else reconcile_releases(log, outdir, requester)):
                if rec.get("event") == "reconcile":
                    click.echo(display_text(f"reconciled: decision {rec['decision_id']} was recorded but not "
                                            f"released ({', '.join(rec['absent'] + rec['differs'])})"), err=True)
            outcomes = enforce(paths, opts, record=report, released=released)
    except (RSPolicyError, OSError) as exc:
        # A tool failure (output folder, audit log): one line, exit 1, never a traceback.
        raise ToolFailure(display_text(str(exc))) from None
    ctx.exit(exit_status(o.decision.action for o in outcomes))
