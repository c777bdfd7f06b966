"""``rspolicy rules`` and the request options, through the real click group, on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner, Result
from rasterio.crs import CRS

from rspolicy.cli import cli
from rspolicy.policy import load_policy, policy_names
from rspolicy.policy.testing import tests_file_for as policy_tests_file
from rspolicy.samples.gf_optical import synthetic_pixels, write_image

from .conftest import REPO, SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"
PAN05 = SAMPLE_DATA / "sv1_pan_0.5m"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _decisions(log: Path) -> list[dict[str, Any]]:
    return [r for r in _records(log) if r.get("decision_id") and "result" in r]


# --- rules list / show / check / test ----------------------------------------------------------------


def test_every_shipped_policy_is_listed_loads_and_has_tests() -> None:
    names = [name for name, _ in policy_names()]
    assert {"cnsa-2022", "de-satdsiv", "in-rsdp-2011", "us-kyl-bingaman", "jp-rsra"} <= set(names)
    result = run("rules", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = {json.loads(line)["name"]: json.loads(line) for line in result.stdout.splitlines()}
    assert set(listed) == set(names)
    for name, path in policy_names():
        assert policy_tests_file(path).is_file(), f"{name} has no tests"
        assert listed[name]["sha256"] == load_policy(name).ref.sha256
        text = path.read_text()
        assert "Source" in text or "source" in text, f"{name} cites no source"


def test_rules_test_runs_every_shipped_policy_and_passes() -> None:
    result = run("rules", "test")
    assert result.exit_code == 0, result.output
    for name, _ in policy_names():
        assert name in result.stdout
    assert " 0 failed" in result.stdout and "FAIL " not in result.stdout


def test_rules_show_renders_conditions_actions_and_zones() -> None:
    result = run("rules", "show", "us-kyl-bingaman")
    assert result.exit_code == 0, result.output
    assert "footprint intersects zone" in result.stdout and "degrade to 0.4 m" in result.stdout
    assert "zone israel" in result.stdout.lower()
    cnsa = run("rules", "show", "cnsa-2022").stdout
    assert "when class is panchromatic and ground resolution finer than 0.5 m" in cnsa
    assert "then degrade to 0.5 m" in cnsa and "unknown class: held to the strictest class" in cnsa
    assert "credit: Data provided by China National Space Administration" in cnsa


def test_rules_show_of_a_missing_policy_is_one_line_and_fails() -> None:
    result = CliRunner().invoke(cli, ["rules", "show", "no-such-policy"])
    assert result.exit_code == 1 and "no policy named 'no-such-policy'" in result.output


BAD = """\
schema = "rspolicy-policy/2"

[policy]
name = "bad"
version = "1"

[[rule]]
id = "bad/one"
when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }
action = "resample"
target_m = 0.3

[[rule]]
id = "bad/two"
when = { sattelite = "GF-2" }
action = "block"
"""


def test_rules_check_gives_file_line_key_and_expectation_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    result = run("rules", "check", str(bad))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [f"{bad}:15: rule[2].when.sattelite: unknown key 'sattelite' (expected one of: age_days, all, "
                     "any, approval, bands, class, gsd_m, imaging_mode, not, product_level, purpose, recipient_in, "
                     "sar_phase, satellite, sensor, zone_intersects, zone_within)"]
    bad.write_text(BAD.replace("sattelite", "satellite"))
    result = run("rules", "check", str(bad))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"{bad}:11: rule[1].target_m: 0.3 m is itself restricted by gsd_m < 0.5 m; "
                                     "it must be >= the limit")


def test_rules_check_passes_every_shipped_policy() -> None:
    files = [str(path) for _, path in policy_names()]
    result = run("rules", "check", *files)
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": valid") == len(files)


def test_rules_test_reports_a_failing_case_with_its_explanation(tmp_path: Path) -> None:
    policy = tmp_path / "mine.toml"
    shutil.copy(REPO / "rules" / "cnsa-2022.toml", policy)
    policy.write_text(policy.read_text().replace('name = "cnsa-2022"', 'name = "mine"'))
    policy_tests_file(policy).write_text('''schema = "rspolicy-policy-tests/1"
[[case]]
name = "right"
product = { class = "panchromatic", gsd_m = 0.3 }
expect = { action = "resample", target_m = 0.5 }
[[case]]
name = "wrong on purpose"
product = { class = "panchromatic", gsd_m = 0.3 }
expect = { action = "allow" }
''')
    result = run("rules", "test", str(policy))
    assert result.exit_code == 1
    assert "PASS  right" in result.stdout and "FAIL  wrong on purpose" in result.stdout
    assert "expected allow, got resample" in result.stdout
    assert "rules fired: cnsa-2022/panchromatic" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_a_policy_without_tests_fails_rules_test(tmp_path: Path) -> None:
    policy = tmp_path / "untested.toml"
    shutil.copy(REPO / "rules" / "cnsa-2022.toml", policy)
    result = run("rules", "test", str(policy))
    assert result.exit_code == 1 and "no tests" in result.stderr


# --- the request on screen and enforce --------------------------------------------------------------


REFER_POLICY = """\
schema = "rspolicy-policy/2"

[policy]
name = "refer-test"
version = "1"

[evaluation]
default = "allow"
unknown_class = "strictest"

[lists.friends]
recipients = ["DE", "FR:CNES"]

[[rule]]
id = "refer-test/fine-to-strangers"
when = { gsd_m = { "<" = 1.0 }, not = { recipient_in = "friends" } }
action = "refer"
"""


@pytest.fixture
def refer_policy(tmp_path: Path) -> Path:
    path = tmp_path / "refer-test.toml"
    path.write_text(REFER_POLICY)
    return path


def test_a_referred_product_is_blocked_without_approval_and_explained(refer_policy: Path) -> None:
    result = run("screen", "--policy", str(refer_policy), "--recipient", "BR", "--explain", str(PAN03))
    assert result.exit_code == 4, result.output
    assert "rules fired:" in result.stdout and "refer-test/fine-to-strangers  [refer]" in result.stdout
    assert "no approval reference was given" in result.stdout
    assert "recipient BR is not on friends" in result.stdout


@pytest.mark.parametrize("recipient", ["DE", "de:DLR", "FR:CNES", "fr: cnes"])
def test_a_listed_recipient_is_not_referred(refer_policy: Path, recipient: str) -> None:
    result = run("screen", "--policy", str(refer_policy), "--recipient", recipient, "--json", str(PAN03))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "allow"


@pytest.mark.parametrize("recipient", [None, "ESA", "FR:ONERA"])
def test_no_recipient_or_an_unlisted_one_is_referred(refer_policy: Path, recipient: str | None) -> None:
    args = ["--recipient", recipient] if recipient else []
    result = run("screen", "--policy", str(refer_policy), *args, "--json", str(PAN03))
    assert result.exit_code == 4, result.output
    assert json.loads(result.stdout)["rules_fired"][0]["id"] == "refer-test/fine-to-strangers"


def test_an_approval_releases_a_referral_and_is_recorded(refer_policy: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    out = tmp_path / "out"
    result = run("enforce", "--policy", str(refer_policy), "--recipient", "BR:INPE", "--approval", "EXP-2026-117",
                 str(PAN03), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert decision["approval"] == "EXP-2026-117" and decision["recipient"] == "BR:INPE"
    assert decision["result"]["action"] == "allow"
    assert decision["result"]["rules_fired"][0]["action"] == "refer"
    assert "approved under EXP-2026-117" in decision["result"]["why"]
    assert list(out.rglob("*.tiff"))


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--recipient", "XX:Someone", "'XX' is not an ISO 3166-1 alpha-2 country code"),
    ("--recipient", "DE:", "no organisation after ':'"),
    ("--at", "2026-12-03T10:00:00", "has no timezone"),
    ("--at", "yesterday", "is not an ISO 8601 time"),
    ("--approval", " ", "--approval: must not be empty"),
])
def test_bad_request_options_are_one_line_usage_errors(option: str, value: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["screen", option, value, str(PAN05)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("rspolicy: error: --") and message in line


AGE_POLICY = """\
schema = "rspolicy-policy/2"
[policy]
name = "age-test"
version = "1"
[evaluation]
default = "allow"
[[rule]]
id = "age-test/fresh"
when = { age_days = { "<" = 5 } }
action = "block"
"""


def test_the_age_of_the_data_is_counted_to_the_release_time(tmp_path: Path) -> None:
    policy = tmp_path / "age.toml"
    policy.write_text(AGE_POLICY)
    # The sample's sidecar says it was acquired at 2020-05-11 01:03:20 (UTC).
    fresh = run("screen", "--policy", str(policy), "--at", "2020-05-16T01:03:19Z", "--json", str(PAN03))
    old = run("screen", "--policy", str(policy), "--at", "2020-05-16T09:03:21+08:00", "--json", str(PAN03))
    assert (fresh.exit_code, old.exit_code) == (4, 0), fresh.output + old.output
    assert "days old" in json.loads(fresh.stdout)["why"]


# --- unknown class and obligations ------------------------------------------------------------------


def _plain_single_band(path: Path, gsd: float) -> Path:
    pixels = synthetic_pixels(1, 64, 64)
    return write_image(path, pixels, crs=CRS.from_epsg(32650), transform=Affine(gsd, 0, 500000, 0, -gsd, 4400000))


@pytest.mark.parametrize(("gsd", "action", "target"), [(3.0, "allow", None), (0.8, "resample", 2.0),
                                                       (0.3, "resample", 2.0)])
def test_an_unknown_class_is_held_to_the_strictest_class(tmp_path: Path, gsd: float, action: str,
                                                         target: float | None) -> None:
    image = _plain_single_band(tmp_path / "scene.tif", gsd)
    result = run("screen", "--json", str(image))
    decision = json.loads(result.stdout)
    assert decision["product_class"] == "unknown"
    assert (decision["action"], decision["target_gsd_m"]) == (action, target)
    blocked = run("screen", "--json", "--policy", str(_with(tmp_path, 'unknown_class = "strictest"',
                                                            'unknown_class = "block"')), str(image))
    assert json.loads(blocked.stdout)["action"] == "block"


def _with(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "rules" / "cnsa-2022.toml").read_text()
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new))
    return path


def test_an_unknown_class_output_degraded_to_the_strictest_limit_re_screens(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    image = _plain_single_band(tmp_path / "in" / "scene.tif", 0.8)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = run("enforce", str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "resample" and decision["result"]["target_gsd_m"] == 2.0
    assert decision["output"]["gsd_m"] >= 2.0


def test_obligations_are_stamped_into_tags_sidecars_and_records(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = run("enforce", str(PAN03), str(PAN05), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    credit = "Data provided by China National Space Administration"
    images = sorted(out.rglob("*.tiff"))
    assert len(images) == 2
    for image in images:  # one degraded, one allowed (rebuilt pixel-exact to carry them)
        with rasterio.open(image) as ds:
            tags = ds.tags()
        assert tags["RSPOLICY_CREDIT"] == credit
        assert "not for military use" in tags["RSPOLICY_CONDITIONS"]
    sidecars = sorted(out.rglob("*.xml"))
    assert sidecars and all(f"<Credit>{credit}</Credit>" in s.read_text() for s in sidecars)
    for decision in _decisions(log):
        assert decision["obligations"]["credit"] == credit
    allowed_in = next(PAN05.glob("*.tiff"))
    allowed_out = next(p for p in images if p.name == allowed_in.name)
    with rasterio.open(allowed_in) as a, rasterio.open(allowed_out) as b:
        assert np.array_equal(a.read(), b.read())  # pixel-exact


def test_a_policy_without_obligations_copies_allowed_products_byte_for_byte(tmp_path: Path) -> None:
    text = (REPO / "rules" / "cnsa-2022.toml").read_text()
    start = text.index("[obligations]")
    end = text.index("[[rule]]")
    policy = tmp_path / "plain.toml"
    policy.write_text(text[:start] + text[end:])
    out = tmp_path / "out"
    result = run("enforce", "--policy", str(policy), str(PAN05), "-o", str(out), "--log", str(tmp_path / "l.jsonl"))
    assert result.exit_code == 0, result.output
    for source in PAN05.iterdir():
        copy = next(out.rglob(source.name))
        assert copy.read_bytes() == source.read_bytes()


def test_every_decision_carries_the_policy_identity_and_the_rules_that_fired(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    result = run("screen", "--log", str(log), str(PAN03))
    assert result.exit_code == 3
    (decision,) = _decisions(log)
    policy = load_policy()
    assert decision["policy"] == {"name": "cnsa-2022", "version": policy.ref.version, "sha256": policy.ref.sha256}
    fired = decision["result"]["rules_fired"]
    assert fired[0] == {"id": "cnsa-2022/panchromatic", "action": "resample", "target_gsd_m": 0.5,
                        "why": "panchromatic at 0.3 m is finer than the limit 0.5 m (cnsa-2022/panchromatic)"}


def test_a_refer_expectation_needs_a_referral_not_any_block(tmp_path: Path) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text(REFER_POLICY.replace('name = "refer-test"', 'name = "strict"') + '''
[[rule]]
id = "refer-test/tiny"
when = { gsd_m = { "<" = 0.1 } }
action = "block"
''')
    policy_tests_file(policy).write_text('''schema = "rspolicy-policy-tests/1"
[[case]]
name = "referred"
product = { class = "panchromatic", gsd_m = 0.5 }
request = { recipient = "BR" }
expect = { action = "refer", rules = ["refer-test/fine-to-strangers"] }
[[case]]
name = "blocked by a block rule is not a referral"
product = { class = "panchromatic", gsd_m = 0.05 }
request = { recipient = "BR" }
expect = { action = "refer" }
[[case]]
name = "a referral is also a block"
product = { class = "panchromatic", gsd_m = 0.5 }
expect = { action = "block" }
''')
    result = run("rules", "test", str(policy))
    assert result.exit_code == 1
    assert "PASS  referred" in result.stdout and "PASS  a referral is also a block" in result.stdout
    assert "FAIL  blocked by a block rule is not a referral" in result.stdout
    assert "expected refer, got block" in result.stdout


def test_enforce_refuses_a_release_time_in_the_future_and_screen_may_look_ahead(tmp_path: Path) -> None:
    policy = tmp_path / "age.toml"
    policy.write_text(AGE_POLICY)
    result = CliRunner().invoke(cli, ["enforce", "--policy", str(policy), "--at", "2099-01-01T00:00:00Z", str(PAN03),
                                      "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl")])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("rspolicy: error: --at: 2099-01-01T00:00:00+00:00 is later than now")
    assert not (tmp_path / "out").exists() and not (tmp_path / "log.jsonl").exists()
    ahead = run("screen", "--policy", str(policy), "--at", "2099-01-01T00:00:00Z", "--json", str(PAN03))
    assert ahead.exit_code == 0


def test_a_sidecar_claiming_old_data_cannot_hide_a_fresh_date_in_the_file_name(tmp_path: Path) -> None:
    """The file name says the scene was taken on 2020-05-10 (the whole day counts); the sidecar says 2014.
    Two days after the file name's date, the data may be fresh: the freshness rule applies."""
    src = tmp_path / "src"
    shutil.copytree(SAMPLE_DATA / "gf2_pms1_l1a", src)
    for xml in src.glob("*.xml"):
        text = xml.read_text()
        for tag in ("StartTime", "EndTime", "CenterTime"):
            text = text.replace(f"<{tag}>2020-05-11", f"<{tag}>2014-05-11")
        xml.write_text(text)
    pan = next(src.glob("*-PAN1.tiff"))
    policy = tmp_path / "age.toml"
    policy.write_text(AGE_POLICY)
    result = run("screen", "--policy", str(policy), "--at", "2020-05-15T23:00:00Z", "--json", str(pan))
    decision = json.loads(result.stdout)
    assert decision["action"] == "block", decision["why"]
    times = {e["value"] for e in decision["evidence"] if e["fact"] == "acquisition_time"}
    assert "2020-05-10" in times and any(t.startswith("2014-05-11") for t in times)
    # Five days after the end of the file name's day, no reading is fresh any more.
    later = run("screen", "--policy", str(policy), "--at", "2020-05-16T00:00:01Z", "--json", str(pan))
    assert json.loads(later.stdout)["action"] == "allow"


def test_a_zone_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "policy"
    folder.mkdir()
    os.mkfifo(folder / "site.geojson")
    policy = folder / "fifo.toml"
    policy.write_text('''schema = "rspolicy-policy/2"
[policy]
name = "fifo"
version = "1"
[zones.site]
file = "site.geojson"
[[rule]]
id = "fifo/site"
when = { zone_intersects = "site" }
action = "block"
''')
    result = run("rules", "check", str(policy))
    assert result.exit_code == 1
    fifo = folder / "site.geojson"
    assert result.stderr.splitlines()[0] == f"{policy}:6: zones.site.file: {fifo}: not a regular file"
