"""``rspolicy enforce``: release, degrade or refuse each product, writing only what may leave."""

from __future__ import annotations

from pathlib import Path

import click

from rspolicy.cli.options import echo_json, json_option, paths_argument, policy_option
from rspolicy.enforce import EnforceOptions, Outcome, enforce
from rspolicy.model import exit_status
from rspolicy.policy import Policy


def _line(outcome: Outcome) -> str:
    d = outcome.decision
    target = f" to {d.target_gsd_m:g} m" if d.target_gsd_m else ""
    written = f" -> {len(outcome.outputs)} file(s)" if outcome.outputs else ""
    why = d.reasons[-1] if d.reasons else ""
    return f"{d.action.value.upper():<9}{d.path}{target}{written}  ({why})"


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
@click.pass_context
def enforce_command(ctx: click.Context, paths: tuple[str, ...], outdir: Path, policy: Policy, output_format: str,
                    overwrite: bool, threads: int | None, as_json: bool) -> None:
    """Release, degrade or refuse each product according to its decision.

    Allowed products are copied unchanged with their sidecars; products to
    resample are written degraded to the policy's target with rewritten
    sidecars; blocked products write nothing. Packages in, packages out.
    Exit status: 0 all released as they are, 3 some degraded, 4 some
    blocked, 2 usage error.
    """
    opts = EnforceOptions(outdir=outdir, policy=policy, output_format="cog" if output_format == "cog" else "gtiff",
                          overwrite=overwrite, threads=threads)

    def report(outcome: Outcome) -> None:
        if as_json:
            echo_json({**outcome.decision.to_dict(), "outputs": list(outcome.outputs),
                       "output_gsd_m": outcome.output_gsd_m, "notes": list(outcome.notes)})
        else:
            click.echo(_line(outcome))
            for note in outcome.notes:
                click.echo(f"note {outcome.decision.path}: {note}", err=True)

    outcomes = enforce(paths, opts, record=report)
    ctx.exit(exit_status(o.decision.action for o in outcomes))
