"""Options shared by several commands (rasterio style)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rspolicy.audit import AuditLog, open_audit_log
from rspolicy.config import Config, ConfigError, default_log_path, load_config
from rspolicy.errors import PolicyError
from rspolicy.model import Request
from rspolicy.policy import Policy, load_policy, request_from

__all__ = [
    "OneLineUsageError",
    "PolicyUsageError",
    "RequestUsageError",
    "cli_config",
    "cli_request",
    "default_log_path",
    "echo_json",
    "jobs_option",
    "json_option",
    "log_options",
    "open_log",
    "paths_argument",
    "policy_option",
]

_CONFIG_KEY = "rspolicy.config"

F = TypeVar("F", bound=Callable[..., Any])


def jobs_option(fn: F) -> F:
    """``-j/--jobs N``: products worked on at once, each in a worker process of its own (default: all cores)."""
    option = click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=os.cpu_count() or 1,
                          show_default="all cores",
                          help="Products worked on at once, each in a worker process of its own.")
    return option(fn)


class OneLineUsageError(click.UsageError):
    """A usage error that is one line on standard error, exit status 2.

    Click's usual usage error prints the usage and a hint around the message;
    a problem with a file (a policy, the config file, a log) is one fact, and
    scripts grep for one line.
    """

    prefix = ""

    def show(self, file: Any = None) -> None:
        """Print ``rspolicy: error: [PREFIX]MESSAGE`` on stderr."""
        message = self.format_message().replace("\r", "\\r").replace("\n", "\\n")
        click.echo(f"rspolicy: error: {self.prefix}{message}", err=True, file=file)


class PolicyUsageError(OneLineUsageError):
    """A policy that cannot be used: ``rspolicy: error: --policy: FILE: problem``, exit 2."""

    prefix = "--policy: "


def cli_config(ctx: click.Context | None = None) -> Config:
    """The config file's settings, read once per command line.

    Raises
    ------
    OneLineUsageError
        When the config file cannot be used: one line naming the file and the
        key, exit status 2.
    """
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is not None and _CONFIG_KEY in ctx.meta:
        cached: Config = ctx.meta[_CONFIG_KEY]
        return cached
    try:
        config = load_config()
    except ConfigError as exc:
        raise OneLineUsageError(str(exc), ctx=ctx) from None
    if ctx is not None:
        ctx.meta[_CONFIG_KEY] = config
    return config


def _load_policy(ctx: click.Context, param: click.Parameter, value: str | None) -> Policy:
    config = cli_config(ctx)
    if value is None and config.policy is not None:
        try:
            return load_policy(config.policy)
        except PolicyError as exc:
            raise OneLineUsageError(f"{config.source}: policy: {' '.join(str(exc).split())}", ctx=ctx) from None
    try:
        return load_policy(value)
    except PolicyError as exc:
        # Any newline in a message from a hostile file would forge a second line.
        raise PolicyUsageError(" ".join(str(exc).split()), ctx=ctx) from None


def _operator(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    config = cli_config(ctx)
    return value if value is not None else config.operator


policy_option = click.option(
    "--policy", "policy", metavar="NAME|FILE", default=None, callback=_load_policy,
    help="Policy name from rules/ or a policy file (default: the config file's policy, else cnsa-2022).")

json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per product, one per line.")

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))


def echo_json(obj: Any) -> None:
    """Print one compact JSON line."""
    click.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def log_options(f: Any) -> Any:
    """``--recipient``, ``--purpose``, ``--approval``, ``--at`` and ``--operator``: the request, and who decides."""
    f = click.option("--operator", default=None, callback=_operator,
                     help="Who takes the decision (default: the config file's operator, else the OS user).")(f)
    f = click.option("--at", "at", default=None, metavar="TIME",
                     help="Release time the data's age is counted to, ISO 8601 with a timezone "
                          "(default: now).")(f)
    f = click.option("--approval", default=None, metavar="REF",
                     help="A person's approval reference for products the policy refers (recorded).")(f)
    f = click.option("--purpose", default=None,
                     help="Why the data is shared (rules may test it; recorded in the audit log).")(f)
    return click.option("--recipient", default=None, metavar="CC[:ORG]",
                        help="Who the data is for: ISO 3166 country code and organisation, e.g. DE:DLR "
                             "(rules test it against the policy's lists; recorded in the audit log).")(f)


class RequestUsageError(OneLineUsageError):
    """A request option that cannot be used: ``rspolicy: error: --recipient: ...``, exit 2."""


def cli_request(recipient: str | None, purpose: str | None, approval: str | None, at: str | None) -> Request:
    """The request the command line describes, or a one-line usage error.

    A recipient that is not written ``CC`` or ``CC:ORG`` is an organisation
    of unknown country: rules about recipient lists then hold either way.
    """
    try:
        return request_from(recipient, purpose, approval, at)
    except PolicyError as exc:
        text = str(exc)
        raise RequestUsageError(text if text.startswith("--") else f"--recipient: {text}") from None


def open_log(explicit: str | None, *, required: bool) -> AuditLog | None:
    """The audit log named by ``--log``, ``$RSPOLICY_LOG`` or the config file.

    With ``required`` (enforce) a log is always opened, at
    :func:`default_log_path` when none is configured
    (:func:`rspolicy.audit.resolve_log_path` decides). The config file's
    rotation settings apply.
    """
    return open_audit_log(explicit, required=required, config=cli_config())
