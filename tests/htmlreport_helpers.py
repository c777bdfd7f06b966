"""Shared by the HTML report tests: a real batch over the sample data (with hostile names), and a page parser."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rspolicy.cli import cli

from .conftest import HOME_VARIABLES, SAMPLE_DATA

#: A product whose name would be markup if it were not escaped (blocked: it is not an image).
HOSTILE_BLOCKED = "\"><img src=x onerror=alert(1)>.tif"
#: A real image under a name that would break out of an attribute and a script (degraded: 0.3 m PAN).
HOSTILE_DEGRADED = "evil'\"><svg onload=alert(2)>&amp;<!--.tiff"

#: What an enforce decision's action makes its outcome.
OUTCOME_OF_ACTION = {"allow": "released", "resample": "degraded", "mask": "degraded", "block": "blocked"}


@contextmanager
def private_env(base: Path, **extra: str) -> Iterator[dict[str, str]]:
    """The environment of a test's own home (as conftest's per-test fixture gives), for module-scoped fixtures."""
    env = {"HOME": str(base / "home"), "XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "state"),
           **extra}
    with pytest.MonkeyPatch.context() as mp:
        for name in HOME_VARIABLES:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        yield env


@dataclass
class Batch:
    """A real enforce batch and its two reports."""

    base: Path
    log: Path
    out: Path
    run_html: Path
    log_html: Path
    exit_code: int
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "event" not in r]


def run_batch(base: Path) -> Batch:
    """``enforce`` over the sample data and two hostile names with ``--report run.html``, then ``log report``.

    The log is named by ``$RSPOLICY_LOG`` (as a nightly job's environment would): ``enforce --report``
    finds it there without ``--log``.
    """
    src = base / "src"
    src.mkdir(parents=True)
    (src / HOSTILE_BLOCKED).write_bytes(b"not an image at all\n")
    shutil.copy(SAMPLE_DATA / "svn1_pan_0.3m" / "SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff",
                src / HOSTILE_DEGRADED)
    log = base / "log" / "decisions.jsonl"
    run_html, log_html = base / "run.html", base / "log.html"
    with private_env(base, RSPOLICY_LOG=str(log)):
        runner = CliRunner()
        enforced = runner.invoke(cli, ["enforce", str(SAMPLE_DATA), str(src), "-o", str(base / "out"), "--report",
                                       str(run_html), "-q"], catch_exceptions=False)
        reported = runner.invoke(cli, ["log", "report", str(log), "-o", str(log_html)], catch_exceptions=False)
    assert reported.exit_code == 0, reported.output
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return Batch(base, log, base / "out", run_html, log_html, enforced.exit_code, records)


@dataclass
class Page:
    """What a report holds, as an HTML parser sees it."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, int] = field(default_factory=dict)
    scripts: list[tuple[dict[str, str], str]] = field(default_factory=list)
    attention: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images(self) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img"]

    def details(self) -> list[dict[str, Any]]:
        """Each row's details, with the string table's indices replaced by the strings."""
        data = json.loads(next(text for attrs, text in self.scripts if attrs.get("type") == "application/json"))
        strings = data["s"]

        def text(i: int | None) -> str:
            return "" if i is None else str(strings[i])

        out = []
        for d in data["r"]:
            row = {key: [text(i) for i in d.get(key, [])] for key in ("r", "w", "n", "u", "z")}
            row["e"] = [[text(i) for i in e] for e in d.get("e", [])]
            for key in ("in", "out"):
                row[key] = [[text(f[0]), f[1], text(f[2])] for f in d.get(key, [])]
            row.update({key: text(d.get(key)) for key in ("p", "t", "c", "a", "sen")})
            row.update(s=d.get("s"), og=d.get("og"))
            out.append(row)
        return out


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None
        self._card: list[str] | None = None
        self._card_outcome: str | None = None
        self._script: tuple[dict[str, str], list[str]] | None = None
        self._section: str | None = None
        self._att_cells: list[str] | None = None
        self._att_row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.append((tag, a))
        classes = a.get("class", "").split()
        if tag == "section":
            self._section = a.get("id")
        if tag == "tr" and "row" in classes:
            self._row = {"outcome": a.get("data-outcome"), "i": int(a["data-i"]), "cells": []}
        elif tag == "tr" and self._section == "attention":
            self._att_row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "td" and self._att_row is not None:
            self._att_cells = []
        elif tag == "div" and "card" in classes:
            self._card = []
            self._card_outcome = next((c[2:] for c in classes if c.startswith("o-")), None)
        elif tag == "script":
            self._script = (a, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "td" and self._att_cells is not None and self._att_row is not None:
            self._att_row.append("".join(self._att_cells).strip())
            self._att_cells = None
        elif tag == "tr" and self._row is not None:
            self.page.rows.append(self._row)
            self._row = None
        elif tag == "tr" and self._att_row is not None:
            if self._att_row:
                self.page.attention.append((self._att_row[0], self._att_row[1]))
            self._att_row = None
        elif tag == "div" and self._card is not None:
            text = " ".join("".join(self._card).split())
            if self._card_outcome:
                count, _, word = text.partition(" ")
                assert word == self._card_outcome
                self.page.cards[word] = int(count)
            self._card = None
        elif tag == "script" and self._script is not None:
            self.page.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        for sink in (self._cell, self._card, self._att_cells):
            if sink is not None:
                sink.append(data)
        if self._script is not None:
            self._script[1].append(data)


def parse(path: Path) -> Page:
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.page


def chromium_or_skip() -> tuple[Any, str]:
    """Playwright's sync API and Debian's Chromium: skipped where either is missing, failed when CI has none."""
    from .conftest import in_ci

    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [what for what, ok in (("playwright (pip install -e '.[test]')", sync_playwright is not None),
                                     ("chromium (apt-get install chromium)", chromium is not None)) if not ok]
    if missing:
        if in_ci():
            pytest.fail(f"CI=true but {' and '.join(missing)} not installed: .ci/run installs both")
        pytest.skip(f"no headless browser here: {' and '.join(missing)} not installed")
    assert chromium is not None
    return sync_playwright, chromium


#: How the browser tests start Chromium: headless, offline in every way it can be asked to be.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
