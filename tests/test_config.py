"""The config file: its keys are checked, and what it sets is used unless the command line says otherwise."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rspolicy.cli import cli
from rspolicy.config import CONFIG_KEYS, Config, ConfigError, config_path, load_config, parse_config

from .conftest import REPO, SAMPLE_DATA

PAN05 = str(SAMPLE_DATA / "sv1_pan_0.5m")  # allowed under the default policy
PAN03 = str(SAMPLE_DATA / "svn1_pan_0.3m")  # resampled under the default policy


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The config file the commands read (the conftest points $XDG_CONFIG_HOME into tmp_path)."""
    path = tmp_path / "config" / "rspolicy" / "config.toml"
    path.parent.mkdir(parents=True)
    assert config_path() == path
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line_error(result: Result) -> str:
    """The one line a failed command printed, after checking there is exactly one and nothing else."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rspolicy: error: "), result.stderr
    return lines[0]


def enforced(result: Result) -> None:
    """An enforce run that completed: every product released or degraded (exit status 0)."""
    assert result.exit_code == 0, result.output


def strict_policy(folder: Path, name: str = "site-strict") -> Path:
    """The default policy renamed, with the panchromatic limit raised to 0.6 m (so a 0.5 m product is resampled)."""
    text = (REPO / "rules" / "cnsa-2022.toml").read_text()
    assert text.count('{ "<" = 0.5 }') == 1 and text.count('name = "cnsa-2022"') == 1
    text = text.replace('name = "cnsa-2022"', f'name = "{name}"').replace('{ "<" = 0.5 }', '{ "<" = 0.6 }')
    text = text.replace("target_m = 0.5\n", "target_m = 0.6\n")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the library object


def test_a_missing_config_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config() == Config()
    assert load_config(tmp_path / "nope.toml") == Config()


def test_the_config_is_a_frozen_typed_object(config_file: Path) -> None:
    config_file.write_text('policy = "cnsa-2022"\noperator = " officer-7 "\nlog = "~/audit/d.jsonl"\n'
                           "rotate_bytes = 1_000_000\nrotate_daily = true\n")
    config = load_config()
    assert config == Config(source=config_file, policy="cnsa-2022", operator="officer-7",
                            log=Path("~/audit/d.jsonl").expanduser(), rotate_bytes=1_000_000, rotate_daily=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.policy = "other"  # type: ignore[misc]
    assert {f.name for f in dataclasses.fields(Config)} == {"source", *CONFIG_KEYS}


def test_relative_paths_are_relative_to_the_config_file(config_file: Path) -> None:
    config_file.write_text('policy = "policies/site.toml"\nlog = "logs/d.jsonl"\n')
    config = load_config()
    assert config.policy == str(config_file.parent / "policies" / "site.toml")
    assert config.log == config_file.parent / "logs" / "d.jsonl"
    # A name stays a name, looked up among the rules.
    assert parse_config({"policy": "cnsa-2022"}, config_file).policy == "cnsa-2022"


@pytest.mark.parametrize(("text", "message"), [
    ('polcy = "cnsa-2022"\n', "unknown key 'polcy' (allowed: log, operator, policy, rotate_bytes, rotate_daily)"),
    ('[log]\npath = "x"\n', "log: must be a non-empty string, not a table"),
    ("policy = 1\n", "policy: must be a non-empty string, not an integer (1)"),
    ('operator = ""\n', "operator: must be a non-empty string, not an empty string"),
    ('operator = "  "\n', "operator: must be a non-empty string, not only white space"),
    ("log = []\n", "log: must be a non-empty string, not an array"),
    ('log = "a\\u0000b"\n', "log: must not hold a NUL character"),
    ('log = "~no-such-user-of-rspolicy/d.jsonl"\n', "log: cannot expand '~' (no such user)"),
    ("rotate_bytes = 0\n", "rotate_bytes: must be a positive integer (bytes), not an integer (0)"),
    ("rotate_bytes = -5\n", "rotate_bytes: must be a positive integer (bytes), not an integer (-5)"),
    ("rotate_bytes = true\n", "rotate_bytes: must be a positive integer (bytes), not a boolean (true)"),
    ('rotate_bytes = "10MB"\n', "rotate_bytes: must be a positive integer (bytes), not a string"),
    ("rotate_bytes = 1.5\n", "rotate_bytes: must be a positive integer (bytes), not a float (1.5)"),
    ('rotate_daily = "yes"\n', "rotate_daily: must be true or false, not a string"),
    ("rotate_daily = 2025-03-01\n", "rotate_daily: must be true or false, not a date or time"),
])
def test_unknown_keys_and_wrong_types_are_errors_naming_the_key(config_file: Path, text: str, message: str) -> None:
    config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value) == f"{config_file}: {message}"
    # Every command says so in one line, exit status 2, and does nothing.
    for args in (["screen", PAN05], ["log", "show"], ["enforce", PAN05, "-o", str(config_file.parent / "out")]):
        assert one_line_error(invoke(*args)) == f"rspolicy: error: {config_file}: {message}"
    assert not (config_file.parent / "out").exists()


@pytest.mark.parametrize("data", [b"policy = \n", b"[x\n", b'policy = "a"\npolicy = "b"\n', b'policy = "\xff"\n'])
def test_a_config_file_that_is_not_toml_is_one_line(config_file: Path, data: bytes) -> None:
    config_file.write_bytes(data)
    line = one_line_error(invoke("screen", PAN05))
    assert line.startswith(f"rspolicy: error: {config_file}: not valid TOML (")


def test_an_unreadable_config_file_is_one_line(config_file: Path) -> None:
    config_file.mkdir()
    line = one_line_error(invoke("screen", PAN05))
    assert line.startswith(f"rspolicy: error: {config_file}: cannot read the config file (")


def test_a_key_with_a_line_break_stays_on_one_line(config_file: Path) -> None:
    config_file.write_text('"bad\\nkey" = 1\n')
    assert one_line_error(invoke("screen", PAN05)) == \
        f"rspolicy: error: {config_file}: unknown key 'bad\\nkey' (allowed: log, operator, policy, rotate_bytes, " \
        "rotate_daily)"


# --------------------------------------------------------------------------- what the commands take from it


def test_screen_and_enforce_use_the_config_policy_unless_given_one(config_file: Path, tmp_path: Path) -> None:
    strict_policy(config_file.parent)
    config_file.write_text('policy = "site-strict.toml"\n')
    screened = invoke("screen", "--json", PAN05)
    assert screened.exit_code == 3, screened.output
    [decision] = [json.loads(line) for line in screened.stdout.splitlines()]
    assert decision["policy"]["name"] == "site-strict" and decision["target_gsd_m"] == 0.6

    enforced(invoke("enforce", PAN05, "-o", str(tmp_path / "out")))
    [record] = [r for r in read_log(tmp_path / "state" / "rspolicy" / "decisions.jsonl") if "event" not in r]
    assert record["policy"]["name"] == "site-strict" and record["result"]["action"] == "resample"

    overridden = invoke("screen", "--json", "--policy", "cnsa-2022", PAN05)
    assert overridden.exit_code == 0
    assert json.loads(overridden.stdout)["policy"]["name"] == "cnsa-2022"


def test_a_config_policy_that_cannot_be_used_names_the_config_file(config_file: Path) -> None:
    config_file.write_text('policy = "no-such-policy"\n')
    line = one_line_error(invoke("screen", PAN05))
    assert line.startswith(f"rspolicy: error: {config_file}: policy: no policy named 'no-such-policy'")
    # --policy replaces it, so the command runs.
    assert invoke("screen", "--policy", "cnsa-2022", PAN05).exit_code == 0


def test_screen_and_enforce_record_the_config_operator_unless_given_one(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text('operator = "officer-7"\nlog = "audit.jsonl"\n')
    log = config_file.parent / "audit.jsonl"
    assert invoke("screen", PAN05).exit_code == 0
    assert [(r["command"], r["operator"]) for r in read_log(log)] == [("screen", "officer-7")]
    enforced(invoke("enforce", PAN03, "-o", str(tmp_path / "out1")))
    first = read_log(log)[1:]
    assert {r["command"] for r in first} == {"enforce"} and "released" in {r.get("event") for r in first}
    assert {r["operator"] for r in first} == {"officer-7"}
    enforced(invoke("enforce", PAN03, "-o", str(tmp_path / "out2"), "--operator", "officer-9"))
    second = read_log(log)[1 + len(first):]
    assert second and {r["operator"] for r in second} == {"officer-9"}


def test_the_config_rotation_settings_rotate_the_log(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text("rotate_bytes = 4000\n")
    products = [PAN03, PAN05, str(SAMPLE_DATA / "gf2_pms1_l1a")]
    enforced(invoke("enforce", *products, "-o", str(tmp_path / "out")))
    log = tmp_path / "state" / "rspolicy" / "decisions.jsonl"
    rotated = sorted(log.parent.glob("decisions.jsonl.*.*"))
    assert rotated, "rotate_bytes in the config file did not rotate the log"
    assert all(f.stat().st_size <= 4000 or len(read_log(f)) == 1 for f in [*rotated, log])
    records = sum(len(read_log(f)) for f in [*rotated, log])
    verify = invoke("log", "verify")
    assert verify.exit_code == 0 and verify.stdout.startswith(f"OK: {records} records")


def test_the_readme_example_is_a_valid_config(tmp_path: Path) -> None:
    import tomllib

    readme = (REPO / "README.md").read_text()
    example = readme.split("### Config file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(tomllib.loads(example), tmp_path / "config.toml")
    assert set(tomllib.loads(example)) == set(CONFIG_KEYS)
    assert config.policy == "cnsa-2022" and config.rotate_daily and config.rotate_bytes == 100 * 2**20
