"""``rspolicy rules``: list, show, check and test export policies."""

from __future__ import annotations

from pathlib import Path

import click

from rspolicy.cli.options import echo_json
from rspolicy.errors import PolicyError
from rspolicy.model import Action
from rspolicy.policy import Policy, check_policy, load_policy, policy_names, schema_path
from rspolicy.policy.core import TESTS_SUFFIX
from rspolicy.policy.testing import PolicyTestReport, check_tests, run_policy_tests


def _one_line(text: str) -> str:
    # A message quoting a hostile file must not forge a second line.
    return " ".join(text.split())


@click.group("rules")
def rules() -> None:
    """List, show, check and test export policies (rules/*.toml)."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per policy, one per line.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every named policy: name, version, title and file (exit 1 if one does not load)."""
    failed = False
    for name, path in policy_names():
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            click.echo(f"rspolicy: error: {_one_line(str(exc))}", err=True)
            continue
        if as_json:
            echo_json({"name": name, "version": policy.ref.version, "title": policy.title,
                       "sha256": policy.ref.sha256, "path": str(path), "rules": len(policy.rules)})
        else:
            click.echo(f"{name:<18} {policy.ref.version:<10} {policy.title}  ({path})")
    ctx.exit(1 if failed else 0)


@rules.command("show")
@click.argument("policy", metavar="NAME|FILE")
def show_command(policy: str) -> None:
    """A readable rendering of a policy's rules, lists, zones and obligations."""
    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        raise click.ClickException(_one_line(str(exc))) from None
    click.echo("\n".join(render_policy(loaded)))


def render_policy(policy: Policy) -> list[str]:
    """The lines ``rules show`` prints."""
    ref = policy.ref
    lines = [f"{ref.name} {ref.version}: {policy.title}", f"  authority: {policy.authority}"]
    if policy.source:
        lines.append(f"  source: {policy.source}")
    lines += [f"  file: {ref.path}", f"  sha256: {ref.sha256} (over {len(policy.files)} file(s))",
              f"  schema: {policy.schema}",
              f"  what no rule covers: {policy.default.value}",
              f"  unknown class: {'held to the strictest class' if policy.unknown_class == 'strictest' else 'block'}",
              "  combination: block > refer > mask and resample (coarsest target, masks add up) > allow > default",
              "  rules:"]
    for rule in policy.rules:
        lines.append(f"    {rule.id}" + (f"  (line {rule.line})" if rule.line else ""))
        lines.append(f"      when {rule.condition.render()}")
        lines.append(f"      then {rule.asks()}")
        if rule.description:
            lines.append(f"      # {rule.description}")
    for lst in policy.lists.values():
        members = sorted([*lst.countries, *(f"{c}:{o}" for c, o in lst.organisations)])
        lines.append(f"  list {lst.shown}: {', '.join(members) or '(empty)'}" + (f"  # {lst.description}"
                                                                           if lst.description else ""))
    for zone in policy.zones.values():
        minx, miny, maxx, maxy = zone.geometry.bounds
        lines.append(f"  zone {zone.shown}: {Path(zone.file).name}, lon {minx:.3f}..{maxx:.3f}, "
                     f"lat {miny:.3f}..{maxy:.3f}" + (f"  # {zone.description}" if zone.description else ""))
    if policy.obligations:
        if policy.obligations.credit:
            lines.append(f"  credit: {policy.obligations.credit}")
        lines.extend(f"  condition of use: {c}" for c in policy.obligations.conditions)
    if policy.description:
        lines.append("  description:")
        lines.extend(f"    {line}" for line in policy.description.splitlines())
    return lines


@rules.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.pass_context
def check_command(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Validate policy files (and NAME.tests.toml files) against the published schemas (exit 1 on any error).

    Each problem is one line: FILE:LINE: KEY: what is wrong and what was expected.
    """
    failed = False
    for file in files:
        tests = file.endswith(TESTS_SUFFIX)
        problems = check_tests(file) if tests else check_policy(file)
        for problem in problems:
            click.echo(_one_line(problem), err=True)
        if problems:
            failed = True
        else:
            click.echo(f"{file}: valid ({schema_path('tests.schema.json' if tests else 'policy.schema.json').name})")
    ctx.exit(1 if failed else 0)


@rules.command("test")
@click.argument("policies", nargs=-1, metavar="[NAME|PATH...]")
@click.option("-v", "--verbose", is_flag=True, help="Show every case's outcome and reason, not only failures.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per case, one per line.")
@click.pass_context
def test_command(ctx: click.Context, policies: tuple[str, ...], verbose: bool, as_json: bool) -> None:
    """Run policies' test cases (no argument: every shipped policy); exit 1 on any failure."""
    # Every shipped policy: one without a tests file fails ("every policy needs tests").
    names = list(policies) or [str(path) for _, path in policy_names()]
    passed = failed = errors = 0
    for spec in names:
        try:
            report = run_policy_tests(spec)
        except PolicyError as exc:
            click.echo(f"rspolicy: error: {_one_line(str(exc))}", err=True)
            errors += 1
            continue
        failures = _print_report(report, verbose, as_json)
        failed += failures
        passed += len(report.results) - failures
    if not as_json:
        click.echo(f"{passed} passed, {failed} failed" + (f", {errors} policies could not be tested" if errors else ""))
    ctx.exit(1 if failed or errors else 0)


def _print_report(report: PolicyTestReport, verbose: bool, as_json: bool) -> int:
    failures = 0
    if not as_json:
        click.echo(f"{report.policy.name} {report.policy.version} ({report.tests_file})")
    for result in report.results:
        if not result.passed:
            failures += 1
        if as_json:
            echo_json({"policy": report.policy.name, **result.to_dict()})
            continue
        click.echo(f"  {'PASS' if result.passed else 'FAIL'}  {result.name}")
        if not result.passed or verbose:
            outcome = result.outcome
            got = outcome.action.value + (f" to {outcome.target_gsd_m:g} m" if outcome.target_gsd_m else "")
            if outcome.action is Action.MASK:
                got += f" zones {', '.join(outcome.mask_zones)}"
            for failure in result.failures:
                click.echo(f"        {failure}")
            click.echo(f"        got {got}: {outcome.reason}")
            click.echo(f"        rules fired: {', '.join(f.id for f in outcome.fired) or 'none'}")
    return failures
