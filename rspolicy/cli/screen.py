"""``rspolicy screen``: what each product is, how fine, and what may happen to it."""

from __future__ import annotations

import click

from rspolicy.cli.options import (
    cli_request,
    echo_json,
    jobs_option,
    json_option,
    log_options,
    open_log,
    paths_argument,
    policy_option,
)
from rspolicy.model import Decision, Fact, exit_status
from rspolicy.policy import Policy
from rspolicy.readers.discover import Skipped
from rspolicy.records import Requester, decision_record
from rspolicy.screen import iter_screen


def _fmt_m(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g} m"


def _table(decisions: list[Decision]) -> list[str]:
    header = ("PRODUCT", "SATELLITE", "SENSOR", "CLASS", "GSD", "ACTION", "TARGET", "WHY")
    rows = [(d.path, d.satellite or "-", d.sensor or "-", d.product_class.value, _fmt_m(d.gsd_m),
             d.action.value.upper(), _fmt_m(d.target_gsd_m), d.reasons[-1] if d.reasons else "") for d in decisions]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return lines


def _explain(decision: Decision) -> list[str]:
    lines = [f"{decision.path}", f"  decision: {decision.action.value.upper()}"
             + (f" to {decision.target_gsd_m:g} m" if decision.target_gsd_m else "")
             + (f" zones {', '.join(z.name for z in decision.mask_zones)}" if decision.mask_zones else "")
             + f" under {decision.policy.name} {decision.policy.version} (rule {decision.rule or 'none'})"]
    lines.append(f"  class: {decision.product_class.value}")
    lines.extend(f"    because {e.source} {e.field} = {e.value} ({e.detail}, {e.strength.name.lower()})"
                 for e in decision.evidence if e.fact is Fact.CLASS_HINT)
    lines.append(f"  resolution used: {_fmt_m(decision.gsd_m)} (the finest of:)")
    lines.extend(f"    {e.value:.6g} m  {e.fact.value}  {e.source} {e.field}  {e.detail}"
                 for e in decision.evidence if e.fact in (Fact.GSD, Fact.NOMINAL_RESOLUTION)
                 and isinstance(e.value, float | int))
    if decision.fired:
        lines.append("  rules fired:")
        lines.extend(f"    {f.id}  [{f.action.value}"
                     + (f" to {f.target_gsd_m:g} m" if f.target_gsd_m is not None else "")
                     + (f" zones {', '.join(f.zones)}" if f.zones else "") + f"]  {f.why}" for f in decision.fired)
    else:
        lines.append("  rules fired: none")
    if decision.mask_zones:
        lines.append(f"  masked zones: {', '.join(z.name for z in decision.mask_zones)}")
    if decision.request is not None:
        r = decision.request
        lines.append(f"  request: recipient {r.recipient or 'not given'}, purpose {r.purpose or 'not given'}, "
                     f"approval {r.approval or 'none'}, release time {r.at.isoformat(timespec='seconds')}")
    if decision.obligations:
        lines.append("  obligations: " + "; ".join(filter(None, [decision.obligations.credit,
                                                                 *decision.obligations.conditions])))
    lines.append("  reasons:")
    lines.extend(f"    - {r}" for r in decision.reasons)
    if decision.warnings:
        lines.append("  warnings:")
        lines.extend(f"    ! {w}" for w in decision.warnings)
    lines.append("  evidence:")
    lines.extend(f"    {e.fact.value:<22} {e.value!s:<24} {e.source} [{e.field}]" for e in decision.evidence)
    return lines


@click.command("screen")
@paths_argument
@policy_option
@json_option
@click.option("--explain", is_flag=True, help="List every piece of evidence and the rule that decided.")
@jobs_option
@click.option("--log", "log_path", default=None, metavar="FILE",
              help="Record every decision in this audit log (also done when $RSPOLICY_LOG or the config file "
                   "names one).")
@log_options
@click.pass_context
def screen(ctx: click.Context, paths: tuple[str, ...], policy: Policy, as_json: bool, explain: bool, jobs: int,
           log_path: str | None, recipient: str | None, purpose: str | None, approval: str | None, at: str | None,
           operator: str | None) -> None:
    """Read products' metadata (never their pixels) and decide what may leave.

    PATHS are images, sidecars, directories or delivery packages (.tar.gz).
    Exit status: 0 all may leave as they are, 3 some must be degraded or
    masked, 4 some are blocked (or referred without --approval), 2 usage error.
    """
    request = cli_request(recipient, purpose, approval, at)
    decisions: list[Decision] = []
    skipped: list[Skipped] = []
    log = open_log(log_path, required=False)
    requester = Requester.current(operator=operator, recipient=recipient, purpose=purpose)
    for item in iter_screen(paths, policy, jobs=jobs, request=request):
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        decisions.append(item)
        if log is not None:
            # Logged while the product's files (a package member's too) are still on disk to be hashed.
            log.append(decision_record(item, requester, command="screen"))
        if as_json:
            echo_json(item.to_dict())
        elif explain:
            click.echo("\n".join(_explain(item)) + "\n")
    if not as_json and not explain:
        click.echo("\n".join(_table(decisions)))
    for s in skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)
    if not as_json:
        for d in decisions:
            for w in d.warnings:
                click.echo(f"warning {d.path}: {w}", err=True)
    if log is not None:
        log.close()
    ctx.exit(exit_status(d.action for d in decisions))
