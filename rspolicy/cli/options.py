"""Options shared by several commands (rasterio style)."""

from __future__ import annotations

import json
from typing import Any

import click

from rspolicy.errors import PolicyError
from rspolicy.policy import Policy, load_policy


def _load_policy(ctx: click.Context, param: click.Parameter, value: str | None) -> Policy:
    try:
        return load_policy(value)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


policy_option = click.option(
    "--policy", "policy", metavar="NAME|FILE", default=None, callback=_load_policy,
    help="Policy name from rules/ or a policy file (default: cnsa-2022).")

json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per product, one per line.")

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))


def echo_json(obj: Any) -> None:
    """Print one compact JSON line."""
    click.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
