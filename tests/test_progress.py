"""Batch progress: the mode, periodic lines, the bar, table rows that never wrap, and the summary."""

from __future__ import annotations

import io
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from rspolicy.cli.progress import (
    OUTCOME_WIDTH,
    BatchProgress,
    format_row,
    human_bytes,
    human_duration,
    progress_mode,
    summary_lines,
    table_width,
    why_column,
)
from rspolicy.results import BatchSummary, ProductResult, Result

KIB = 1024
GIB = 2**30


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def product(outcome: Result, size: int = KIB, name: str = "p.tif") -> ProductResult:
    return ProductResult(name, outcome, "why", bytes_in=size)


def columns(text: str) -> int:
    """Terminal columns, counted independently of the module: wide characters two, others one."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


# -- mode --------------------------------------------------------------------------------------------------------


def test_mode_follows_quiet_and_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    assert progress_mode(False, Tty()) == "bar"
    assert progress_mode(False, io.StringIO()) == "lines"
    assert progress_mode(True, Tty()) == "none"
    assert progress_mode(True, io.StringIO()) == "none"
    assert progress_mode(False, None) == "none"
    closed = io.StringIO()
    closed.close()
    assert progress_mode(False, closed) == "lines"
    monkeypatch.setenv("TERM", "dumb")
    assert progress_mode(False, Tty()) == "lines"


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="progress mode"):
        BatchProgress(1, 1, "fancy")  # type: ignore[arg-type]


def test_table_width_is_the_terminal_or_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert table_width(Tty()) == 77
    assert table_width(io.StringIO()) == sys.maxsize


# -- lines -------------------------------------------------------------------------------------------------------


def test_lines_mode_prints_at_most_every_interval_and_at_the_end() -> None:
    clock, err, out = FakeClock(), io.StringIO(), io.StringIO()
    with BatchProgress(5, 5 * KIB, "lines", stream=err, out=out, interval=10, clock=clock) as progress:
        for dt, outcome in [(1, Result.RELEASED), (4, Result.RELEASED), (7, Result.DEGRADED)]:
            clock.now += dt
            progress.advance(product(outcome))
            progress.echo(f"row {outcome}")
        clock.now += 3  # 15 s in
        progress.advance(product(Result.BLOCKED))
        clock.now += 5  # 20 s in: only 8 s after the last line
        progress.advance(product(Result.SKIPPED))
    lines = err.getvalue().splitlines()
    assert lines == [
        # 12 s for 3 KiB of work: the 2 KiB left take 8 s
        "progress: 3/5 products, 3.0 KiB/5.0 KiB, 2 released 1 degraded 0 blocked 0 failed 0 skipped, ETA 0:00:08",
        "progress: 5/5 products, 5.0 KiB/5.0 KiB, 2 released 1 degraded 1 blocked 0 failed 1 skipped, "
        "finished in 0:00:20",
    ]
    assert out.getvalue() == "row released\nrow released\nrow degraded\n"


def test_lines_mode_closes_with_one_line_not_two() -> None:
    clock, err = FakeClock(), io.StringIO()
    with BatchProgress(2, 0, "lines", stream=err, interval=0, clock=clock) as progress:
        for _ in range(2):
            clock.now += 1
            progress.advance(product(Result.RELEASED))
    assert [line.rsplit(", ", 1)[-1] for line in err.getvalue().splitlines()] == ["ETA 0:00:01", "finished in 0:00:02"]


def test_lines_mode_leaves_the_last_word_to_the_error_when_a_batch_is_interrupted() -> None:
    clock, err = FakeClock(), io.StringIO()
    with pytest.raises(KeyboardInterrupt), BatchProgress(3, 0, "lines", stream=err, clock=clock,
                                                        interval=1000) as progress:
        clock.now += 90
        progress.advance(product(Result.FAILED))
        raise KeyboardInterrupt
    assert err.getvalue() == ""  # the command's one-line error (or stop message) is all that is said


def test_the_first_line_waits_for_the_interval() -> None:
    clock, err = FakeClock(), io.StringIO()
    with BatchProgress(100, 0, "lines", stream=err, interval=10, clock=clock) as progress:
        for _ in range(9):
            clock.now += 1
            progress.advance(product(Result.RELEASED))
        assert err.getvalue() == ""
        clock.now += 1
        progress.advance(product(Result.RELEASED))
        # no byte total: the ETA counts products, 90 left at 1 s each
        assert err.getvalue() == ("progress: 10/100 products, 10.0 KiB/?, 10 released 0 degraded 0 blocked 0 failed "
                                  "0 skipped, ETA 0:01:30\n")


def test_eta_leaves_skipped_products_out_of_the_rate() -> None:
    clock = FakeClock()
    with BatchProgress(4, 4 * GIB, "none", clock=clock) as progress:
        assert progress.eta() is None
        progress.advance(product(Result.SKIPPED, GIB))
        progress.advance(product(Result.SKIPPED, GIB))
        assert progress.eta() is None  # nothing done yet to measure a rate by
        clock.now += 60
        progress.advance(product(Result.DEGRADED, GIB))
        assert progress.eta() == pytest.approx(60.0)  # 1 GiB left at 1 GiB a minute, not 20 s
        assert "ETA 0:01:00" in progress.status_line()
        progress.advance(product(Result.RELEASED, GIB))
        assert progress.eta() == 0.0


def test_none_mode_prints_no_progress_but_echoes_rows() -> None:
    clock, err, out = FakeClock(), io.StringIO(), io.StringIO()
    with BatchProgress(2, 2, "none", stream=err, out=out, interval=0, clock=clock) as progress:
        for _ in range(2):
            clock.now += 30
            progress.advance(product(Result.RELEASED))
            progress.echo("row")
    assert err.getvalue() == ""
    assert out.getvalue() == "row\nrow\n"
    assert progress.done == 2 and progress.counts[Result.RELEASED] == 2


def test_echo_shows_control_characters_as_escapes() -> None:
    out = io.StringIO()
    with BatchProgress(1, 0, "none", out=out) as progress:
        progress.echo("name\x1b[2J\u202eexe.tif")
    assert out.getvalue() == "name\\x1b[2J\\u202eexe.tif\n"


# -- bar ---------------------------------------------------------------------------------------------------------


def bar_console(buffer: io.StringIO, width: int = 120) -> Console:
    return Console(file=buffer, force_terminal=True, width=width, color_system=None)


def test_bar_shows_products_bytes_counts_and_eta() -> None:
    clock, buffer, out = FakeClock(), io.StringIO(), io.StringIO()
    stdout, stderr = sys.stdout, sys.stderr
    with BatchProgress(4, 4 * GIB, "bar", console=bar_console(buffer), out=out, clock=clock) as progress:
        assert (sys.stdout, sys.stderr) == (stdout, stderr)  # not the process's stderr: nothing redirected
        for outcome in (Result.RELEASED, Result.DEGRADED):
            clock.now += 10
            progress.advance(product(outcome, GIB))
            progress.echo(f"row {outcome}")
    text = buffer.getvalue()
    final = text[text.rindex("products") - 20:]
    assert "2/4 products" in final
    assert "2.0 GiB/4.0 GiB" in final
    assert "ETA 0:00:20" in final  # 2 GiB in 20 s, 2 GiB to go
    assert "102.4 MiB/s" in final
    assert "1 released  1 degraded  0 blocked  0 failed  0 skipped" in final
    assert "0:00:20" in final  # elapsed, on the fake clock
    # the table went to standard output, not into the bar's terminal
    assert out.getvalue() == "row released\nrow degraded\n"
    assert "row" not in text


def test_bar_prints_echoed_lines_above_itself_on_its_own_terminal() -> None:
    clock, buffer = FakeClock(), io.StringIO()
    console = bar_console(buffer, width=100)
    with BatchProgress(2, 0, "bar", console=console, out=buffer, clock=clock) as progress:
        clock.now += 5
        progress.advance(product(Result.BLOCKED))
        progress.echo("BLOCKED  in/a.tif  \x1b[31mred")
    text = buffer.getvalue()
    assert "BLOCKED  in/a.tif  \\x1b[31mred" in text
    assert "\x1b[31m" not in text  # the file name's escape sequence never reaches the terminal
    assert text.index("in/a.tif") < text.rindex("1/2 products")  # the bar is drawn again below the line


def test_bar_of_unknown_size_still_counts() -> None:
    clock, buffer = FakeClock(), io.StringIO()
    with BatchProgress(0, 0, "bar", console=bar_console(buffer), clock=clock) as progress:
        clock.now += 3
        progress.advance(product(Result.FAILED))
    assert "1/? products" in buffer.getvalue()
    assert "1 failed" in buffer.getvalue()


# -- table rows --------------------------------------------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8"), max_size=80) | st.sampled_from(
    ["高分二号/GF2_PMS1_E113.9_N22.3_20240101_L1A0001.tiff", "=HYPERLINK()", "a\nb\x1b[2J\u202e", ""])
_gsd = st.none() | st.floats(min_value=0.01, max_value=1e5)


@settings(max_examples=400)
@given(path=_names, reason=_names, outcome=st.sampled_from(list(Result)), gsd=_gsd, target=_gsd, written=_gsd,
       width=st.integers(min_value=-5, max_value=250))
def test_a_row_never_exceeds_its_width(path: str, reason: str, outcome: Result, gsd: float | None,
                                       target: float | None, written: float | None, width: int) -> None:
    result = ProductResult(path, outcome, reason, gsd_m=gsd, target_gsd_m=target, output_gsd_m=written)
    row = format_row(result, width)
    assert len(row) <= max(width, 0)
    assert columns(row) <= max(width, 0)
    assert "\n" not in row and "\x1b" not in row and "\u202e" not in row
    if width >= OUTCOME_WIDTH:
        assert row.startswith(outcome.value.upper())
    full = format_row(result, 10**9)
    assert row == full or "\u2026" in row or full.startswith(row)  # cut with a mark, or parts left out


@given(path=st.text(max_size=200), reason=st.text(max_size=200), outcome=st.sampled_from(list(Result)))
def test_a_huge_width_cuts_nothing(path: str, reason: str, outcome: Result) -> None:
    row = format_row(ProductResult(path, outcome, reason, gsd_m=0.5, target_gsd_m=2.0), sys.maxsize)
    assert row.startswith(f"{outcome.value.upper():<9}")
    if path.isprintable() and reason.isprintable():
        assert path in row and row.endswith(reason) and "0.5 m -> 2 m" in row


def test_a_row_cuts_the_reason_first_then_the_path_from_its_start() -> None:
    r = ProductResult("in/folder/GF2_PMS1.tiff", Result.BLOCKED, "panchromatic 0.8 m is finer than the 1 m limit",
                      gsd_m=0.8)
    assert format_row(r, 200) == f"BLOCKED  in/folder/GF2_PMS1.tiff  0.8 m  {r.reason}"
    assert format_row(r, 60) == "BLOCKED  in/folder/GF2_PMS1.tiff  0.8 m  panchromatic 0.8 m\u2026"
    assert format_row(r, 45) == "BLOCKED  \u2026/GF2_PMS1.tiff  0.8 m  panchromati\u2026"
    assert format_row(r, 40) == "BLOCKED  in/folder/GF2_PMS1.tiff  0.8 m"  # no room for 12 of the reason
    assert format_row(r, 30) == "BLOCKED  \u2026GF2_PMS1.tiff  0.8 m"
    assert format_row(r, 60, ellipsis="...") == "BLOCKED  in/folder/GF2_PMS1.tiff  0.8 m  panchromatic 0.8..."


def test_wide_characters_count_two_columns() -> None:
    r = ProductResult("高分二号/一号.tiff", Result.RELEASED, "在限值之内")
    assert format_row(r, 40) == "RELEASED 高分二号/一号.tiff  在限值之内"  # 39 columns
    assert format_row(r, 34) == "RELEASED \u2026号/一号.tiff  在限值之内"
    assert format_row(r, 20) == "RELEASED \u2026/一号.tiff"
    assert why_column("高分二号", 5) == "高分\u2026"


def test_why_column() -> None:
    assert why_column("too fine", 8) == "too fine"
    assert why_column("too fine", 7) == "too fi\u2026"
    assert why_column("too fine", 1) == "\u2026"
    assert why_column("too fine", 0) == ""
    assert why_column("too fine", -3) == ""
    assert why_column("a\tb", 20) == "a\\x09b"


# -- summary -----------------------------------------------------------------------------------------------------


def test_summary_lines_count_bytes_time_and_rate() -> None:
    summary = BatchSummary.of([product(Result.RELEASED, 3 * GIB)] * 40 + [product(Result.DEGRADED, 0)] * 10
                              + [product(Result.FAILED, 5)] * 2, seconds=3725)
    assert summary_lines(summary) == [
        "52 products: 40 released, 10 degraded, 0 blocked, 2 failed, 0 skipped",
        "120.0 GiB read, 0 B released",
        "1:02:05, 0.014 products/s",
    ]


def test_summary_of_an_instant_or_empty_batch() -> None:
    assert summary_lines(BatchSummary.of([], 0.0)) == [
        "0 products: 0 released, 0 degraded, 0 blocked, 0 failed, 0 skipped", "0 B read, 0 B released",
        "0:00:00, - products/s"]
    fast = BatchSummary.of([product(Result.SKIPPED)] * 5000, 2.0)
    assert summary_lines(fast)[2] == "0:00:02, 2500 products/s"


def test_human_units() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 10 * 2**20, 5 * 2**50, 2**70)] == \
        ["0 B", "1023 B", "1.0 KiB", "10.0 MiB", "5.0 PiB", "1024.0 EiB"]
    assert [human_duration(s) for s in (0, 59.6, 3600, -1)] == ["0:00:00", "0:01:00", "1:00:00", "0:00:00"]


def test_a_package_holding_several_products_grows_the_total_instead_of_overrunning_it() -> None:
    clock, err = FakeClock(), io.StringIO()
    with BatchProgress(2, 0, "lines", stream=err, clock=clock, interval=1000) as progress:
        for _ in range(3):  # two items named, the package among them held two products
            progress.advance(product(Result.RELEASED))
    assert err.getvalue().startswith("progress: 3/3 products,")
