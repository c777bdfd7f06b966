"""The user's configuration file: defaults for the commands, validated strictly.

The file is ``$XDG_CONFIG_HOME/rspolicy/config.toml`` (``~/.config/rspolicy/config.toml``
when ``XDG_CONFIG_HOME`` is unset or not absolute). It is TOML with these
top-level keys, all optional:

``policy``
    A policy name (``cnsa-2022``) or policy file, used when ``--policy`` is
    not given. A file path (ending in ``.toml`` or holding a ``/``) is taken
    relative to the config file's folder; ``~`` is expanded.
``operator``
    Who takes the decisions, used when ``--operator`` is not given
    (otherwise the OS user).
``log``
    The audit log, used when neither ``--log`` nor ``$RSPOLICY_LOG`` is
    given; relative to the config file's folder, ``~`` expanded.
``rotate_bytes``
    Rotate the audit log before a record would take it past this many bytes
    (a positive integer).
``rotate_daily``
    Rotate the audit log at the first record of each new UTC day (true or
    false).

Any other key, a value of the wrong type, or a file that is not TOML is a
:class:`ConfigError` naming the file and the key. A missing file is an empty
configuration. Command-line options override the file.

Examples
--------
>>> cfg = parse_config({"policy": "cnsa-2022", "rotate_bytes": 10_000_000}, Path("/etc/rspolicy.toml"))
>>> cfg.policy, cfg.rotate_bytes, cfg.log
('cnsa-2022', 10000000, None)
>>> try:
...     parse_config({"polcy": "cnsa-2022"}, Path("/etc/rspolicy.toml"))
... except ConfigError as exc:
...     print(exc)
/etc/rspolicy.toml: unknown key 'polcy' (allowed: log, operator, policy, rotate_bytes, rotate_daily)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rspolicy.errors import RSPolicyError
from rspolicy.safeio import read_regular

__all__ = [
    "CONFIG_KEYS",
    "Config",
    "ConfigError",
    "config_path",
    "default_log_path",
    "load_config",
    "parse_config",
]

#: The keys a config file may hold.
CONFIG_KEYS = ("log", "operator", "policy", "rotate_bytes", "rotate_daily")
#: A config file larger than this is refused (it is a few lines).
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(RSPolicyError, ValueError):
    """The config file cannot be read, is not TOML, or holds an unknown key or a value of the wrong type.

    The message is one line and names the file (and the key).
    """


@dataclass(frozen=True)
class Config:
    """The settings of a config file; every field is None (or False) when the file does not set it.

    Attributes
    ----------
    source
        The file these settings came from; None when there was none.
    policy
        A policy name, or an absolute policy file path.
    operator
        Who takes the decisions.
    log
        The audit log's absolute path (``~`` expanded).
    rotate_bytes
        Size at which the audit log is rotated.
    rotate_daily
        Whether the audit log is rotated every UTC day.
    """

    source: Path | None = None
    policy: str | None = None
    operator: str | None = None
    log: Path | None = None
    rotate_bytes: int | None = None
    rotate_daily: bool = False


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _xdg_dir(env: Mapping[str, str], variable: str, *fallback: str) -> Path:
    value = env.get(variable, "")
    # The XDG base directory spec says a relative value is invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home, *fallback)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the config file is looked for.

    Parameters
    ----------
    environ
        The environment to read; :data:`os.environ` by default.

    Examples
    --------
    >>> config_path({"HOME": "/home/ana"}).as_posix()
    '/home/ana/.config/rspolicy/config.toml'
    >>> config_path({"HOME": "/home/ana", "XDG_CONFIG_HOME": "/etc/xdg"}).as_posix()
    '/etc/xdg/rspolicy/config.toml'
    """
    return _xdg_dir(_environ(environ), "XDG_CONFIG_HOME", ".config") / "rspolicy" / "config.toml"


def default_log_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the audit log is when nothing names one: the user's state directory.

    Parameters
    ----------
    environ
        The environment to read; :data:`os.environ` by default.

    Examples
    --------
    >>> default_log_path({"HOME": "/home/ana"}).as_posix()
    '/home/ana/.local/state/rspolicy/decisions.jsonl'
    >>> default_log_path({"HOME": "/home/ana", "XDG_STATE_HOME": "/var/lib/ana"}).as_posix()
    '/var/lib/ana/rspolicy/decisions.jsonl'
    """
    return _xdg_dir(_environ(environ), "XDG_STATE_HOME", ".local", "state") / "rspolicy" / "decisions.jsonl"


class _Reader:
    """Typed access to the config table; errors name the file and the key."""

    def __init__(self, doc: Mapping[str, Any], source: Path) -> None:
        self.doc, self.source = doc, source
        for key in doc:
            if key not in CONFIG_KEYS:
                raise ConfigError(_one_line(f"{source}: unknown key {key!r} (allowed: {', '.join(CONFIG_KEYS)})"))

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(_one_line(f"{self.source}: {key}: {problem}"))

    def string(self, key: str) -> str | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, not {_kind(value)}")
        if "\0" in value:
            self.fail(key, "must not hold a NUL character")
        return value

    def path(self, key: str) -> Path | None:
        """A path value, ``~`` expanded, relative to the config file's folder."""
        value = self.string(key)
        if value is None:
            return None
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # ~user of no such user
            self.fail(key, "cannot expand '~' (no such user)")
        return path if path.is_absolute() else self.source.parent / path

    def positive_int(self, key: str) -> int | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"must be a positive integer (bytes), not {_kind(value)}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.doc.get(key, False)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    """How a wrong value is named in a message: its TOML type, and the value when it is short."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    if isinstance(value, str) and not value.strip():
        return "an empty string" if not value else "only white space"
    name = names.get(type(value), "a date or time")
    if isinstance(value, bool):
        return f"{name} ({str(value).lower()})"
    if isinstance(value, int | float) and len(repr(value)) <= 24:
        return f"{name} ({value!r})"
    return name


def _one_line(text: str) -> str:
    # A key or a path may hold a line break; the message must stay one line.
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _looks_like_file(spec: str) -> bool:
    # The same test as rspolicy.policy.find_policy_file, without touching the file system.
    return spec.endswith(".toml") or "/" in spec or os.sep in spec or spec.startswith("~")


def parse_config(doc: Mapping[str, Any], source: Path) -> Config:
    """Validate a parsed config document.

    Parameters
    ----------
    doc
        The document, as :func:`tomllib.load` returns it.
    source
        The file it came from: named in errors, and the base of relative paths.

    Returns
    -------
    Config
        The settings.

    Raises
    ------
    ConfigError
        For an unknown key or a value of the wrong type (one line, naming the
        file and the key).
    """
    reader = _Reader(doc, source)
    policy = reader.string("policy")
    if policy is not None and _looks_like_file(policy):
        policy = os.fspath(reader.path("policy") or policy)
    operator = reader.string("operator")
    return Config(source=source, policy=policy, operator=operator.strip() if operator else None,
                  log=reader.path("log"),
                  rotate_bytes=reader.positive_int("rotate_bytes"), rotate_daily=reader.boolean("rotate_daily"))


def load_config(path: str | os.PathLike[str] | None = None, *,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file.

    Parameters
    ----------
    path
        The file; :func:`config_path` by default.
    environ
        The environment that locates the default file; :data:`os.environ` by default.

    Returns
    -------
    Config
        The settings; an empty :class:`Config` when the file does not exist.

    Raises
    ------
    ConfigError
        When the file cannot be read, is not TOML, or does not validate.
    """
    source = Path(path) if path is not None else config_path(environ)
    try:
        raw = read_regular(source, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(_one_line(f"{source}: cannot read the config file ({exc.strerror or exc})")) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(_one_line(f"{source}: larger than {MAX_CONFIG_BYTES} bytes, not a config file"))
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(_one_line(f"{source}: not valid TOML ({' '.join(str(exc).split())})")) from None
    except (RecursionError, ValueError, ArithmeticError, MemoryError) as exc:
        # tomllib lets some failures through as plain builtins (a too deeply nested document,
        # an integer of more digits than int() accepts).
        raise ConfigError(_one_line(f"{source}: not valid TOML ({type(exc).__name__})")) from None
    return parse_config(doc, source)
