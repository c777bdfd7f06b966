"""The HTML report (#14): built from a real batch over the sample data, parsed, and held to what it promises.

Every product is there with the right outcome and counts; nothing on the page points anywhere (no external URL in
any attribute, every image ``data:`` WebP, a CSP that forbids loads); every quicklook is coarser on the ground than
the policy's coarsest limit, checked here against the image files themselves; hostile names stay text; blocked and
failed products come first; a missing or broken log is one line and no file.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image

from rspolicy.cli import cli
from rspolicy.htmlreport import batch_report_html, log_report_html, render_report, script_json
from rspolicy.htmlreport.entries import entries_from_records
from rspolicy.htmlreport.quicklook import MAX_SIDE, MIN_SIDE, QUICKLOOK_MARGIN, coarsest_limit_m, side_for
from rspolicy.policy import load_policy, policy_names
from rspolicy.results import BatchSummary

from .conftest import SAMPLE_DATA
from .htmlreport_helpers import (
    HOSTILE_BLOCKED,
    HOSTILE_DEGRADED,
    OUTCOME_OF_ACTION,
    Batch,
    Page,
    parse,
    private_env,
    run_batch,
)

REPO = Path(__file__).resolve().parent.parent

#: What no attribute of the page may contain: a way to reach the network or the file system.
EXTERNAL = re.compile(r"https?:|ftp:|file:|//|\\\\", re.IGNORECASE)
DATA_IMAGE = re.compile(r"^data:image/webp;base64,[A-Za-z0-9+/]+={0,2}$")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    return run_batch(tmp_path_factory.mktemp("html-batch"))


@pytest.fixture(scope="module")
def pages(batch: Batch) -> dict[str, Page]:
    return {"enforce --report": parse(batch.run_html), "log report": parse(batch.log_html)}


def expected_outcomes(batch: Batch) -> dict[str, str]:
    return {r["input"]["path"]: OUTCOME_OF_ACTION[r["result"]["action"]] for r in batch.decisions}


def cnsa_limit() -> float:
    """cnsa-2022's coarsest limit, read from its rules here rather than from the code under test."""
    policy = load_policy("cnsa-2022")
    return max(r.target_m for r in policy.rules if r.target_m is not None)


# --------------------------------------------------------------------------- every product, counted right


def test_the_batch_blocks_the_hostile_file_and_degrades_the_hostile_image(batch: Batch) -> None:
    assert batch.exit_code == 4  # one product blocked
    outcomes = {Path(p).name: o for p, o in expected_outcomes(batch).items()}
    assert outcomes[HOSTILE_BLOCKED] == "blocked" and outcomes[HOSTILE_DEGRADED] == "degraded"
    assert Counter(outcomes.values()) == {"released": 11, "degraded": 5, "blocked": 1}


@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_every_product_is_there_with_its_outcome_and_the_counts_are_right(batch: Batch, pages: dict[str, Page],
                                                                          which: str) -> None:
    page = pages[which]
    expected = expected_outcomes(batch)
    shown = {row["cells"][0]: row["outcome"] for row in page.rows}
    assert shown == expected
    counts = Counter(expected.values())
    assert page.cards == dict(counts)
    # The details the rows open: one per row, each with its evidence and reasons.
    details = page.details()
    assert len(details) == len(page.rows) == len(batch.decisions)
    for row in page.rows:
        detail = details[row["i"]]
        assert detail["r"], row["cells"][0]  # reasons
        assert detail["e"] or row["outcome"] == "blocked"  # evidence
    decision_ids = {r["decision_id"] for r in batch.decisions}
    assert {row["cells"][6] for row in page.rows} == decision_ids


@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_the_summary_names_the_policy_and_the_verified_head(batch: Batch, which: str) -> None:
    html = (batch.run_html if which == "enforce --report" else batch.log_html).read_text(encoding="utf-8")
    policy = load_policy("cnsa-2022")
    assert policy.ref.sha256 in html and policy.ref.version in html and "cnsa-2022" in html
    head = batch.records[-1]["hash"]
    assert head in html
    assert '<span class="ok">verified</span>' in html and "NOT verified" not in html


# --------------------------------------------------------------------------- nothing points anywhere


@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_no_attribute_holds_an_external_url_and_every_image_is_a_data_image(pages: dict[str, Page], which: str) -> None:
    page = pages[which]
    assert page.images, "the degraded products have quicklooks"
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base", "form", "audio", "video", "source"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event handler attributes at all
            if tag == "img" and name == "src":
                assert DATA_IMAGE.fullmatch(value), value[:80]
                continue
            assert not EXTERNAL.search(value), (tag, name, value)
            if name in ("href", "src", "action", "xlink:href", "poster", "srcset"):
                assert value.startswith("#"), (tag, name, value)
    styles = "".join(text for attrs, text in page.scripts)  # scripts hold no URL either
    assert not re.search(r"https?:|//[a-z]", styles.replace("\\u002f", "/"), re.IGNORECASE)


def test_the_page_forbids_every_load_but_data_images(batch: Batch, pages: dict[str, Page]) -> None:
    html = batch.log_html.read_text(encoding="utf-8")
    tags = pages["log report"].tags
    metas = [i for i, (tag, attrs) in enumerate(tags) if tag == "meta" and attrs.get("http-equiv")]
    assert len(metas) == 1 and metas[0] < [t for t, _ in tags].index("style")  # before anything it governs
    csp = tags[metas[0]][1]
    assert csp["http-equiv"] == "Content-Security-Policy"
    directives = dict(d.strip().split(" ", 1) for d in csp["content"].split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    assert directives["script-src"].startswith("'sha256-") and directives["style-src"].startswith("'sha256-")
    assert "url(" not in html and "@import" not in html


# --------------------------------------------------------------------------- quicklooks never leak


def finest_recorded_gsd(rec: dict[str, Any]) -> float:
    values = [rec["result"]["gsd_m"], *(e["value"] for e in rec["result"]["evidence"]
                                        if e["fact"] in ("gsd_m", "nominal_resolution_m"))]
    return min(float(v) for v in values if isinstance(v, int | float) and v > 0)


def image_of(files: list[dict[str, Any]], named: str | None = None) -> Path:
    paths = [f["path"] for f in files]
    if named is not None:
        match = [p for p in paths if Path(p).name == Path(named).name]
        if match:
            return Path(match[0])
    return Path(next(p for p in paths if p.lower().endswith((".tif", ".tiff"))))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_every_quicklook_is_coarser_on_the_ground_than_the_policys_coarsest_limit(
        batch: Batch, pages: dict[str, Page], which: str) -> None:
    page = pages[which]
    by_path = {r["input"]["path"]: r for r in batch.decisions}
    rows = {row["i"]: row["cells"][0] for row in page.rows}
    limit = cnsa_limit()
    assert limit == 2.0
    degraded = [p for p, o in expected_outcomes(batch).items() if o == "degraded"]
    looked_at = Counter()
    for img in page.images:
        rec = by_path[rows[int(img["data-i"])]]
        role = img["data-role"]
        picture = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        assert picture.format == "WEBP"
        width, height = picture.size
        assert max(width, height) <= MAX_SIDE
        # The image it shows, measured here from the file itself, and the finest ground distance recorded for it.
        if role == "before":
            file, gsd = image_of(rec["input"]["files"], rec["input"]["path"]), finest_recorded_gsd(rec)
        else:
            file, gsd = image_of(rec["output"]["files"], rec["input"]["path"]), float(rec["output"]["gsd_m"])
        with rasterio.open(file) as ds:
            image_w, image_h = ds.width, ds.height
        assert (int(img["data-image-width"]), int(img["data-image-height"])) == (image_w, image_h)
        assert float(img["data-gsd-m"]) <= gsd * (1 + 1e-5)  # never a coarser claim than the record's finest
        # Each quicklook pixel covers image_w / width image pixels of at least gsd metres each.
        ground = min(image_w / width * gsd, image_h / height * gsd)
        assert ground > limit, (file, ground)
        assert ground >= QUICKLOOK_MARGIN * limit * (1 - 1e-9)
        assert float(img["data-ground-m"]) <= ground * (1 + 1e-5)
        looked_at[rec["input"]["path"]] += 1
    # Both quicklooks of every degraded product (none of them is a package member or masked).
    assert looked_at == dict.fromkeys(degraded, 2)


def test_before_and_after_share_one_ground_scale(pages: dict[str, Page]) -> None:
    scales: dict[str, list[float]] = {}
    for img in pages["log report"].images:
        scales.setdefault(img["data-i"], []).append(float(img["data-ground-m"]))
    for pair in scales.values():
        assert len(pair) == 2 and max(pair) / min(pair) < 1.02


def test_coarsest_limit_of_every_shipped_policy() -> None:
    limits = {name: coarsest_limit_m(load_policy(path)) for name, path in policy_names()}
    assert limits["cnsa-2022"] == 2.0
    assert limits["de-satdsiv"] == 10.0  # data of more than 49 bands at or finer than 10 m is referred
    for name, limit in limits.items():
        assert limit is not None and limit > 0, name


def test_quicklooks_are_sized_from_a_byte_budget() -> None:
    assert side_for(2) == MAX_SIDE and side_for(10**6) == MIN_SIDE
    assert [side_for(n) for n in (100, 1000, 2000)] == sorted((side_for(n) for n in (100, 1000, 2000)), reverse=True)


# --------------------------------------------------------------------------- hostile names stay text


@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_hostile_names_are_text_not_markup(batch: Batch, pages: dict[str, Page], which: str) -> None:
    html = (batch.run_html if which == "enforce --report" else batch.log_html).read_text(encoding="utf-8")
    page = pages[which]
    assert "<img src=x" not in html and "<svg onload" not in html and "<!--.tiff" not in html
    assert not [attrs for tag, attrs in page.tags if tag == "svg" and "onload" in attrs]
    names = {Path(row["cells"][0]).name for row in page.rows}
    assert {HOSTILE_BLOCKED, HOSTILE_DEGRADED} <= names  # shown as they are, as text
    # Exactly one inline script and one JSON block, the script block not broken out of.
    kinds = [attrs.get("type", "text/javascript") for attrs, _ in page.scripts]
    assert kinds == ["application/json", "text/javascript"]


def test_script_data_cannot_close_its_element() -> None:
    hostile = "</script><script>alert(1)</script>\u2028&"
    text = script_json({"p": hostile})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"p": hostile}


def record(path: str, action: str = "allow", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "decision_id": f"id-{abs(hash(path))}", "command": "enforce", "timestamp": "2026-01-01T00:00:00Z",
        "policy": {"name": "cnsa-2022", "version": "2022.2", "sha256": load_policy("cnsa-2022").ref.sha256},
        "input": {"path": path, "files": [], "satellite": "GF2"},
        "result": {"action": action, "product_class": "panchromatic", "gsd_m": 0.8, "target_gsd_m": None,
                   "reasons": [f"why {path}"], "evidence": [
                       {"fact": "footprint_wkt", "source": path, "field": "corners",
                        "value": "POLYGON((116 39, 116.1 39, 116.1 39.1, 116 39.1, 116 39))"}]},
    }
    rec.update(extra)
    return rec


def test_names_that_would_close_the_script_or_open_a_url_are_inert(tmp_path: Path) -> None:
    hostile = ["</script><script>alert(1)</script>.tif", '"><img src=http://x>.tif', "javascript:alert(1).tif",
               "<style>@import url(//x)</style>.tif"]
    records = [record(p) for p in hostile]
    records.append({"event": "failed", "decision_id": None, "command": "enforce", "error": "disk full <b>",
                    "input": {"path": "//evil.example/x.tif", "files": []}})
    from rspolicy.htmlreport import LogState

    html = render_report(entries_from_records(records), LogState("log.jsonl"))
    (tmp_path / "r.html").write_text(html, encoding="utf-8")
    page = parse(tmp_path / "r.html")
    assert page.rows[0]["cells"][0] == "//evil.example/x.tif"  # failed first
    assert {row["cells"][0] for row in page.rows} == {*hostile, "//evil.example/x.tif"}
    assert page.attention == [("failed", "//evil.example/x.tif")]
    for tag, attrs in page.tags:
        assert tag not in ("style", "link") or (tag == "style" and not attrs)
        for value in attrs.values():
            assert not EXTERNAL.search(value) and "javascript:" not in value.lower()
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert html.count("<style>") == 1
    details = page.details()
    assert details[0]["n"] == [] and "disk full <b>" in [row["cells"][5] for row in page.rows]


# --------------------------------------------------------------------------- order: what needs a look first


@pytest.mark.parametrize("which", ["enforce --report", "log report"])
def test_blocked_and_failed_come_first_with_their_reasons(batch: Batch, pages: dict[str, Page], which: str) -> None:
    page = pages[which]
    ranks = {"failed": 0, "blocked": 1, "degraded": 2, "released": 3}
    order = [ranks[row["outcome"]] for row in page.rows]
    assert order == sorted(order) and page.rows[0]["outcome"] == "blocked"
    blocked = next(r for r in batch.decisions if r["result"]["action"] == "block")
    assert page.attention == [("blocked", blocked["input"]["path"])]
    reason = blocked["result"]["why"]
    assert reason in page.rows[0]["cells"][5]


# --------------------------------------------------------------------------- what is missing is said


def test_a_changed_or_missing_file_shows_no_image_and_says_why(tmp_path: Path) -> None:
    with private_env(tmp_path):
        log = tmp_path / "log.jsonl"
        out = tmp_path / "out"
        result = CliRunner().invoke(cli, ["enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(out), "--log",
                                          str(log), "-q"])
        assert result.exit_code == 0
        image = next(out.rglob("*.tiff"))
        image.write_bytes(image.read_bytes() + b"\0")  # no longer what was released
        html = log_report_html([log])
    assert html.count('data-role="before"') == 1 and 'data-role="after"' not in html
    assert "has changed since the decision (its sha256 differs from the record)" in html
    image.unlink()
    html = log_report_html([log])
    assert 'data-role="after"' not in html and "No such file or directory" in html


def test_an_unknown_policy_shows_no_quicklook(tmp_path: Path) -> None:
    rec = record(str(SAMPLE_DATA / "svn1_pan_0.3m" / "x.tiff"), "resample")
    rec["policy"] = {"name": "mine", "version": "1", "sha256": "0" * 64}
    from rspolicy.htmlreport import LogState

    html = render_report(entries_from_records([rec]), LogState("log.jsonl", verified=True))
    assert "data:image" not in html and "is not available here, so no quicklook scale can be shown to be safe" in html


def test_a_tampered_log_is_reported_as_not_verified(tmp_path: Path) -> None:
    with private_env(tmp_path):
        log = tmp_path / "log.jsonl"
        assert CliRunner().invoke(cli, ["enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(tmp_path / "out"),
                                        "--log", str(log), "-q"]).exit_code == 0
        intact = CliRunner().invoke(cli, ["log", "report", str(log), "-o", str(tmp_path / "intact.html")])
        assert intact.exit_code == 0 and "data:image" in (tmp_path / "intact.html").read_text(encoding="utf-8")
        lines = log.read_text(encoding="utf-8").splitlines()
        lines[0] = lines[0].replace('"operator":"', '"operator":"x')
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = CliRunner().invoke(cli, ["log", "report", str(log), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "NOT verified" in html and "hash-mismatch" in html
    # Records the chain does not vouch for could name any file at any scale: nothing is read for them.
    assert "data:image" not in html and "its records cannot vouch for the files they name" in html


@pytest.mark.parametrize("content", [None, "{not json\n", "\xff\xfe garbage\n"])
def test_a_missing_or_corrupt_log_is_one_line_and_no_file(tmp_path: Path, content: str | None) -> None:
    log = tmp_path / "log.jsonl"
    if content is not None:
        log.write_bytes(content.encode("latin-1"))
    out = tmp_path / "r.html"
    with private_env(tmp_path):
        result = CliRunner().invoke(cli, ["log", "report", str(log), "-o", str(out)])
    assert result.exit_code == (2 if content is None else 1)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(log) in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["log.jsonl"])


def test_log_report_without_log_reads_the_default_log(tmp_path: Path) -> None:
    with private_env(tmp_path):
        result = CliRunner().invoke(cli, ["log", "report", "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "LOG not given" in result.output


def test_enforce_report_html_reads_the_log_named_by_log_and_a_policy_given_as_a_file(tmp_path: Path) -> None:
    """``enforce --log FILE --policy FILE.toml --report FILE.html``: the page finds the records and the limits."""
    policy = tmp_path / "mine.toml"
    policy.write_text((REPO / "rules" / "cnsa-2022.toml").read_text(encoding="utf-8").replace(
        'name = "cnsa-2022"', 'name = "mine"'), encoding="utf-8")
    with private_env(tmp_path):
        log = tmp_path / "elsewhere.jsonl"
        result = CliRunner().invoke(cli, ["enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(tmp_path / "out"),
                                          "--policy", str(policy), "--log", str(log), "--report",
                                          str(tmp_path / "r.html"), "-q"])
        assert result.exit_code == 0, result.output
    page = parse(tmp_path / "r.html")
    assert len(page.images) == 2 and page.details()[0]["e"]
    assert [row["outcome"] for row in page.rows] == ["degraded"]


def test_batch_report_of_no_products(tmp_path: Path) -> None:
    html = batch_report_html(BatchSummary.of([], 0.0), [], log=tmp_path / "none.jsonl")
    assert "No product was blocked and none failed." in html and "no such log" in html


def test_zones_a_decision_masked_or_a_fired_rule_tested_are_drawn(tmp_path: Path) -> None:
    from rspolicy.htmlreport import LogState

    policy = load_policy("us-kyl-bingaman")
    over = record("tel-aviv.tif", "resample")
    over["policy"] = policy.ref.to_dict()
    over["result"]["rules_fired"] = [{"id": "us-kyl-bingaman/israel", "action": "resample", "why": "over israel"}]
    over["result"]["evidence"][0]["value"] = "POLYGON((34.7 32, 34.9 32, 34.9 32.2, 34.7 32.2, 34.7 32))"
    masked = record("elsewhere.tif", "mask")
    masked["policy"] = {"name": "mine", "version": "1", "sha256": "1" * 64}
    masked["result"]["mask_zones"] = ["secret-base"]
    html = render_report(entries_from_records([over, masked]), LogState("log.jsonl"))
    (tmp_path / "r.html").write_text(html, encoding="utf-8")
    page = parse(tmp_path / "r.html")
    zones = [attrs for tag, attrs in page.tags if tag == "path" and attrs.get("class") == "zone"]
    assert len(zones) == 1 and "<title>zone israel</title>" in html
    assert "Zones not drawn (their policy is not available here): secret-base." in html
    fps = [attrs for tag, attrs in page.tags if tag == "g" and "fp" in attrs.get("class", "")]
    assert len(fps) == 2


def test_a_file_that_is_not_an_image_shows_no_quicklook_and_the_report_still_writes(tmp_path: Path) -> None:
    import hashlib

    from rspolicy.htmlreport import LogState

    fake = tmp_path / "fake.tiff"
    fake.write_bytes(b"II*\0" + b"\xff" * 200)
    rec = record(str(fake), "resample")
    rec["input"]["files"] = [{"path": str(fake), "size": fake.stat().st_size,
                              "sha256": hashlib.sha256(fake.read_bytes()).hexdigest()}]
    rec["result"]["evidence"].append({"fact": "gsd_m", "source": str(fake), "field": "x", "value": 0.3})
    html = render_report(entries_from_records([rec]), LogState("log.jsonl", verified=True))
    assert "data:image" not in html
    notes = re.findall(r'<p class="nolook">([^<]*)</p>', html)
    # The record's 0.3 m alone is no scale: the file itself must give one.
    assert len(notes) == 2 and "its files give no ground scale" in notes[0] and "no image file written" in notes[1]
