"""Options shared by several commands (rasterio style)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from rspolicy.audit import AuditLog, key_from_env, resolve_log_path
from rspolicy.errors import PolicyError
from rspolicy.policy import Policy, load_policy


class PolicyUsageError(click.UsageError):
    """A policy that cannot be used: exit 2 with one line naming the file and the problem.

    Click's usual usage error prints the usage and a hint around the message;
    a policy file's problem is one fact, and scripts grep for one line.
    """

    def show(self, file: Any = None) -> None:
        """Print ``rspolicy: error: --policy: MESSAGE`` on stderr."""
        click.echo(f"rspolicy: error: --policy: {self.format_message()}", err=True, file=file)


def _load_policy(ctx: click.Context, param: click.Parameter, value: str | None) -> Policy:
    try:
        return load_policy(value)
    except PolicyError as exc:
        # Any newline in a message from a hostile file would forge a second line.
        raise PolicyUsageError(" ".join(str(exc).split()), ctx=ctx) from None


policy_option = click.option(
    "--policy", "policy", metavar="NAME|FILE", default=None, callback=_load_policy,
    help="Policy name from rules/ or a policy file (default: cnsa-2022).")

json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per product, one per line.")

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))


def echo_json(obj: Any) -> None:
    """Print one compact JSON line."""
    click.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def log_options(f: Any) -> Any:
    """``--recipient``, ``--purpose`` and ``--operator``: who a decision is for and by."""
    f = click.option("--operator", default=None, help="Who takes the decision (default: the OS user).")(f)
    f = click.option("--purpose", default=None, help="Why the data is shared (recorded in the audit log).")(f)
    return click.option("--recipient", default=None, help="Who the data is for (recorded in the audit log).")(f)


def default_log_path() -> Path:
    """Where ``enforce`` logs when no log is configured: the user's state directory."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "rspolicy" / "decisions.jsonl"


def open_log(explicit: str | None, *, required: bool) -> AuditLog | None:
    """The audit log named by ``--log``, ``$RSPOLICY_LOG`` or the config file.

    With ``required`` (enforce) a log is always opened, at
    :func:`default_log_path` when none is configured.
    """
    path = resolve_log_path(explicit)
    if path is None and required:
        path = default_log_path()
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return AuditLog(path, key=key_from_env())
