"""A self-contained HTML review of a batch or of an audit log: what left, what was degraded, what was blocked and why.

One file, no network at view time (styles, script and images inline, and a
Content-Security-Policy that forbids every load but ``data:`` images), for a
data-distribution officer and an auditor:

* a summary: counts per outcome, class and satellite, bytes in and out, the
  policies (name, version, sha256), the log's head hash and whether its chain
  verified (:func:`rspolicy.audit.verify`);
* the failed and blocked products first, with their reasons;
* a map of the footprints coloured by outcome, with the zones the decisions
  masked or tested (:mod:`rspolicy.htmlreport.mapsvg`);
* for every degraded product, before and after quicklooks at one ground scale
  coarser than every limit of the policy (:mod:`rspolicy.htmlreport.quicklook`);
* a sortable, filterable table of every decision, each row opening its
  evidence, reasons and files.

Two ways in: :func:`log_report_html` (``rspolicy log report``) reads a log;
:func:`batch_report_html` (``rspolicy enforce --report FILE.html``, through
:func:`rspolicy.report.write_report`) shows one batch's results with what
their records add. :func:`write_html_report` writes either atomically.

File names and metadata are chosen by whoever delivered the products, so the
page is rendered by Jinja2 with autoescaping on, no attribute carries a value
from a record (only numbers and fixed words), and the rows' details reach the
script as JSON inside a ``<script type="application/json">`` block with
``<``, ``>`` and ``&`` escaped, read with ``JSON.parse`` and shown through
``textContent``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import rspolicy
from rspolicy import audit
from rspolicy.errors import AuditLogError, PolicyError, RSPolicyError
from rspolicy.htmlreport.entries import (
    OUTCOMES,
    Entry,
    PolicyId,
    entries_from_records,
    entries_from_results,
    finest_gsd_m,
)
from rspolicy.htmlreport.quicklook import (
    IMAGE_BUDGET_BYTES,
    QUICKLOOK_LIMITS,
    QUICKLOOK_MARGIN,
    ImageSpec,
    PairRequest,
    QuicklookPair,
    coarsest_limit_m,
    image_files,
    read_quicklooks,
)
from rspolicy.results import BatchSummary, ProductResult

__all__ = [
    "OUTCOMES",
    "Entry",
    "LogState",
    "batch_report_html",
    "log_report_html",
    "log_state",
    "render_report",
    "write_html_report",
]

#: Colours of the outcomes (map, charts, table).
OUTCOME_COLOURS = {"failed": "#a61e4d", "blocked": "#e8590c", "degraded": "#f59f00", "released": "#2f9e44",
                   "skipped": "#868e96", "screened": "#1c7ed6", "other": "#7048e8"}
#: The Content-Security-Policy of the page, with the hashes of its one style and one script filled in.
_CSP = ("default-src 'none'; img-src data:; style-src '{style}'; script-src '{script}'; "
        "base-uri 'none'; form-action 'none'")
_NAMED = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: A member of a delivery package is named ``package!member``.
_MEMBER = re.compile(r"\.(?:tar\.gz|tgz|tar)!", re.IGNORECASE)
#: Longest evidence value carried into a row's details (footprints are drawn on the map).
_MAX_SHOWN_VALUE = 160
#: Satellites and classes charted one by one; the rest are summed.
_CHART_ROWS = 12


@dataclass(frozen=True)
class LogState:
    """The audit log a report was built from, and whether its chain verified.

    Attributes
    ----------
    name
        The log (its path as given).
    files
        Its files, in chain order.
    records
        Records verified (all of them when ``verified``).
    verified
        Whether :func:`rspolicy.audit.verify` found the chain whole; None when it
        could not be checked.
    head
        The hash of the newest record that verified.
    problem
        The first problem found, or why the log could not be checked.
    """

    name: str
    files: tuple[str, ...] = ()
    records: int = 0
    verified: bool | None = None
    head: str | None = None
    problem: str | None = None


def log_state(paths: Sequence[str | os.PathLike[str]], *, key: bytes | None = None, name: str | None = None
              ) -> LogState:
    """Verify a log's chain for a report: head hash, record count, first problem.

    Parameters
    ----------
    paths
        The log's files (or the log, standing for its rotated files too).
    key
        The HMAC key of a keyed log.
    name
        How to name the log (default: the first path).

    Returns
    -------
    LogState
        Never raises for a log that cannot be read: the problem is in the state.
    """
    shown = name or (os.fspath(paths[0]) if paths else "(no log)")
    try:
        files = audit.expand_log_paths(paths)
        if not files:
            return LogState(shown, problem="no such log")
        result = audit.verify(files, key=key)
    except (AuditLogError, OSError) as exc:
        return LogState(shown, problem=_one_line(str(exc)))
    return LogState(shown, tuple(os.fspath(f) for f in result.files), result.records, result.ok, result.head,
                    _one_line(str(result.problem)) if result.problem is not None else None)


# --------------------------------------------------------------------------- the two ways in


def log_report_html(paths: Sequence[str | os.PathLike[str]], *, key: bytes | None = None,
                    policies: Sequence[Any] = (), title: str | None = None,
                    base_dir: str | os.PathLike[str] | None = None, **filters: Any) -> str:
    """The HTML report of an audit log: every decision and failure it records.

    Parameters
    ----------
    paths
        The log (standing for its rotated files too), or its files in chain order.
    key
        The HMAC key of a keyed log (its chain is verified with it).
    policies
        Loaded policies to identify the records' policies by, besides the
        named policies of ``rules/`` (a record's policy must match one by
        sha256 for its quicklooks to be made).
    title
        The page's title.
    base_dir
        Relative input paths in the records are taken relative to this
        folder (default: the current one).
    **filters
        ``since``, ``until``, ``action``, ``satellite``, as for
        :func:`rspolicy.audit.iter_records`; the chain is verified whole.

    Returns
    -------
    str
        The page.

    Raises
    ------
    AuditLogError
        The log does not exist, cannot be read, or holds a line that is not a
        JSON record.
    """
    files = audit.expand_log_paths(paths)
    if not files:
        raise AuditLogError(f"{os.fspath(paths[0]) if paths else '(no log)'}: no such log")
    records = list(audit.iter_records(files, **filters))
    state = log_state(files, key=key, name=os.fspath(paths[0]))
    entries = entries_from_records(records)
    return render_report(entries, state, policies=policies, base_dir=base_dir,
                         title=title or f"rspolicy: audit log {Path(state.name).name}")


def batch_report_html(summary: BatchSummary, results: Sequence[ProductResult], *,
                      log: str | os.PathLike[str] | None = None, policy: Mapping[str, Any] | None = None,
                      policies: Sequence[Any] = (), key: bytes | None = None,
                      base_dir: str | os.PathLike[str] | None = None) -> str:
    """The HTML report of one ``enforce`` batch: its results, with what their records in the log add.

    Parameters
    ----------
    summary
        The batch's totals.
    results
        One result per product.
    log
        The audit log the batch wrote to. When None, the log ``enforce``
        writes to without ``--log`` (:func:`rspolicy.audit.resolve_log_path`);
        products whose records it does not hold are shown from their results,
        with a note.
    policy
        The identity of the policy applied (``name``, ``version``, ``sha256``).
    policies
        Loaded policies (the one applied, when it is a file rather than a name).
    key
        The HMAC key of a keyed log; default ``$RSPOLICY_LOG_KEY``.
    base_dir
        Folder relative input paths are relative to (default: the current one).

    Returns
    -------
    str
        The page.
    """
    name = "(no log)"
    try:
        path = Path(log) if log is not None else audit.resolve_log_path(None, default=True)
        name = os.fspath(path)
        key = key if key is not None else audit.key_from_env()
        files = audit.expand_log_paths([path])
        records: Iterable[Mapping[str, Any]] = audit.iter_records(files) if files else ()
        entries = entries_from_results(results, records, name)
        state = log_state(files, key=key, name=name) if files else LogState(name, problem="no such log")
    except (AuditLogError, OSError) as exc:
        entries = entries_from_results(results, (), name)
        state = LogState(name, problem=_one_line(str(exc)))
    return render_report(entries, state, policies=policies, base_dir=base_dir, summary=summary,
                         applied=_policy_id(policy), title="rspolicy: batch report")


def write_html_report(path: str | os.PathLike[str], html: str) -> None:
    """Write a report atomically: a temporary file beside it, flushed, then renamed over it.

    Parameters
    ----------
    path
        The report file; its folder must exist.
    html
        The page.

    Raises
    ------
    OSError
        The report cannot be written; the target is left as it was.
    """
    from rspolicy.report import write_text_atomically  # noqa: PLC0415 - report imports this package lazily

    write_text_atomically(Path(path), html)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Bar:
    label: str
    count: int
    colour: str


@dataclass(frozen=True)
class _Summary:
    products: int
    outcomes: tuple[_Bar, ...]
    classes: tuple[_Bar, ...]
    satellites: tuple[_Bar, ...]
    bytes_in: int
    bytes_out: int
    seconds: float | None


@dataclass(frozen=True)
class _PolicyRow:
    id: PolicyId
    limit_m: float | None
    available: bool


@dataclass(frozen=True)
class _Degraded:
    entry: Entry
    pair: QuicklookPair


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _policy_id(ref: Mapping[str, Any] | None) -> PolicyId | None:
    if not ref or not isinstance(ref.get("name"), str):
        return None
    return PolicyId(str(ref["name"]), str(ref.get("version", "")), str(ref.get("sha256", "")))


def _bars(counter: Counter[str], colour: str) -> tuple[_Bar, ...]:
    top = counter.most_common()
    shown = [_Bar(label, n, colour) for label, n in top[:_CHART_ROWS]]
    rest = sum(n for _, n in top[_CHART_ROWS:])
    return tuple(shown + ([_Bar(f"{len(top) - _CHART_ROWS} others", rest, colour)] if rest else []))


def _summary(entries: Sequence[Entry], batch: BatchSummary | None) -> _Summary:
    outcomes = Counter(e.outcome for e in entries)
    return _Summary(
        products=len(entries),
        outcomes=tuple(_Bar(o, outcomes[o], OUTCOME_COLOURS[o]) for o in OUTCOMES if outcomes[o]),
        classes=_bars(Counter(e.product_class or "(unknown)" for e in entries), "#5c7cfa"),
        satellites=_bars(Counter(e.satellite or "(unknown)" for e in entries), "#15aabf"),
        bytes_in=batch.bytes_in if batch is not None else sum(e.bytes_in for e in entries),
        bytes_out=batch.bytes_out if batch is not None else sum(e.bytes_out for e in entries),
        seconds=batch.seconds if batch is not None else None)


def _known_policies(ids: Iterable[PolicyId], given: Sequence[Any]) -> dict[str, Any]:
    """The loaded policies by sha256: those given, and the named policies of ``rules/`` the records name."""
    from rspolicy.policy import load_policy, policy_names  # noqa: PLC0415

    known = {p.ref.sha256: p for p in given}
    wanted = {i.sha256: i for i in ids if i.sha256 and i.sha256 not in known}
    if not wanted:
        return known
    try:
        named = dict(policy_names())
    except (PolicyError, OSError):
        named = {}
    for sha, ident in wanted.items():
        # Only a policy of rules/ by its plain name: a record's name is never taken as a path.
        path = named.get(ident.name) if _NAMED.fullmatch(ident.name) else None
        if path is None:
            continue
        try:
            loaded = load_policy(path)
        except (RSPolicyError, OSError):
            continue
        if loaded.ref.sha256 == sha:
            known[sha] = loaded
    return known


def _local(path: str, base: Path) -> str:
    p = Path(path)
    return os.fspath(p if p.is_absolute() else base / p)


def _pair(entry: Entry, known: Mapping[str, Any], floor: float | None, budget: int, base: Path) -> QuicklookPair:
    from rspolicy.isolation import IsolationError, run_isolated  # noqa: PLC0415

    policy = entry.policy
    if policy is None or policy.sha256 not in known or floor is None:
        shown = f"the policy {policy.shown} (sha256 {policy.sha256[:12]})" if policy else "the product's policy"
        why = f"{shown} is not available here, so no quicklook scale can be shown to be safe"
        return QuicklookPair(None, None, why, why)
    notes = ["", ""]
    source: ImageSpec | None = None
    output: ImageSpec | None = None
    if entry.masked:
        notes[0] = "the product was masked: its source, masked zones included, is not shown"
    elif _MEMBER.search(entry.path) or any(_MEMBER.search(f.path) for f in entry.inputs):
        notes[0] = "the source is inside a delivery package: not unpacked for the report"
    else:
        files = [(f.path, f.sha256) for f in entry.inputs]
        order = image_files(files, entry.path)
        if order is None:
            notes[0] = "the record names no image file of the source"
        else:
            source = ImageSpec(files[order[0]][0], _local(files[order[0]][0], base), files[order[0]][1],
                               tuple((_local(files[i][0], base), files[i][1]) for i in order[1:]),
                               finest_gsd_m(entry))
    outputs = [(f.path, f.sha256) for f in entry.outputs]
    if any(_MEMBER.search(p) for p, _ in outputs):
        notes[1] = "the output is a delivery package: not unpacked for the report"
    else:
        named = os.path.basename(source.image) if source is not None else os.path.basename(entry.path)
        main = next((p for p, _ in outputs if os.path.basename(p) == named), None)
        order = image_files(outputs, main)
        if order is None:
            notes[1] = "the record names no image file written"
        else:
            output = ImageSpec(outputs[order[0]][0], _local(outputs[order[0]][0], base), outputs[order[0]][1],
                               tuple((_local(outputs[i][0], base), outputs[i][1]) for i in order[1:]),
                               entry.output_gsd_m)
    if source is None and output is None:
        return QuicklookPair(None, None, *notes)
    request = PairRequest(source, output, floor, budget, sar=entry.product_class == "sar")
    try:
        pair = run_isolated(read_quicklooks, request, limits=QUICKLOOK_LIMITS)
    except (IsolationError, RSPolicyError, OSError) as exc:
        why = f"quicklooks not made: {_one_line(str(exc))[:200]}"
        return QuicklookPair(None, None, notes[0] or why, notes[1] or why)
    except Exception as exc:  # noqa: BLE001 - a product's damaged file costs its quicklooks, never the report
        why = f"quicklooks not made: {type(exc).__name__}: {_one_line(str(exc))[:200]}"
        return QuicklookPair(None, None, notes[0] or why, notes[1] or why)
    return QuicklookPair(pair.before, pair.after, notes[0] or pair.before_note, notes[1] or pair.after_note)


class _Strings:
    """A table of the distinct strings of the rows' details: each detail refers to its strings by index.

    File paths, evidence fields and facts repeat across decisions; sent once, the details of a
    thousand decisions stay a fraction of their size.
    """

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str | None) -> int | None:
        if not text:
            return None
        found = self._index.get(text)
        if found is None:
            found = self._index[text] = len(self.items)
            self.items.append(text)
        return found


def _zones(rows: Sequence[Entry], known: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The zones to draw (masked by a decision, or tested by a rule that fired), and those not available here."""
    from rspolicy.policy.conditions import All, AnyOf, InZone, Not  # noqa: PLC0415

    def tested(condition: Any) -> Iterable[Any]:
        if isinstance(condition, InZone):
            yield from condition.zones
        elif isinstance(condition, All | AnyOf):
            for part in condition.parts:
                yield from tested(part)
        elif isinstance(condition, Not):
            yield from tested(condition.part)

    draw: dict[str, Any] = {}
    missing: set[str] = set()
    for entry in rows:
        policy = known.get(entry.policy.sha256) if entry.policy else None
        if policy is None:
            missing.update(entry.zones)
            continue
        for name in entry.zones:
            if name in policy.zones:
                draw[name] = policy.zones[name].geometry
            else:
                missing.add(name)
        rules = {r.id: r for r in policy.rules}
        for rule_id in entry.fired:
            rule = rules.get(rule_id)
            for zone in tested(rule.condition) if rule is not None else ():
                draw[zone.name] = zone.geometry
    return draw, sorted(missing - set(draw))


def _detail(entry: Entry, s: _Strings) -> dict[str, Any]:
    """A row's details for the script: indices into the string table, numbers as they are, text only."""
    def value(fact: str, text: str) -> str:
        limit = 100 if fact == "footprint_wkt" else _MAX_SHOWN_VALUE
        return text if len(text) <= limit else text[:limit] + "\u2026"

    policy = f"{entry.policy.shown} (sha256 {entry.policy.sha256})" if entry.policy else None
    detail: dict[str, Any] = {
        "r": [s(t) for t in entry.reasons], "w": [s(t) for t in entry.warnings], "n": [s(t) for t in entry.notes],
        "u": [s(t) for t in entry.rules], "z": [s(t) for t in entry.zones],
        "p": s(policy), "t": s(entry.timestamp), "s": entry.seq, "c": s(entry.command), "a": s(entry.action),
        "sen": s(entry.sensor), "og": entry.output_gsd_m,
        "e": [[s(e.fact), s(value(e.fact, e.value)), s(e.source), s(e.field)] for e in entry.evidence],
        "in": [[s(f.path), f.size, s(f.sha256)] for f in entry.inputs],
        "out": [[s(f.path), f.size, s(f.sha256)] for f in entry.outputs],
    }
    return {k: v for k, v in detail.items() if v not in (None, [])}


def _details(rows: Sequence[Entry]) -> dict[str, Any]:
    """Every row's details and their string table: ``{"s": [strings], "r": [details]}``."""
    strings = _Strings()
    details = [_detail(e, strings) for e in rows]
    return {"s": strings.items, "r": details}


def script_json(value: Any) -> str:
    r"""JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and line separators escaped.

    Examples
    --------
    >>> script_json(["</script><img src=x>"])
    '["\\u003c/script\\u003e\\u003cimg src=x\\u003e"]'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _hash_source(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _environment() -> Any:
    import jinja2  # noqa: PLC0415 - loaded only when a report is written

    return jinja2.Environment(loader=jinja2.PackageLoader("rspolicy.htmlreport", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _number(value: float | None, unit: str = " m") -> str:
    return "\u2013" if value is None else f"{value:.4g}{unit}"


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{value} B"  # pragma: no cover


def render_report(entries: Sequence[Entry], log: LogState, *, policies: Sequence[Any] = (),
                  base_dir: str | os.PathLike[str] | None = None, summary: BatchSummary | None = None,
                  applied: PolicyId | None = None, title: str = "rspolicy report") -> str:
    """Render the page: summary, attention list, map, quicklooks of degraded products, the decisions.

    Rows are shown failed first, then blocked, degraded, released, skipped and
    screened, each group in its own order.

    Parameters
    ----------
    entries
        The rows.
    log
        The log they come from, verified.
    policies
        Loaded policies besides the named ones of ``rules/``.
    base_dir
        Folder relative input paths are relative to (default: the current one).
    summary
        A batch's totals (bytes and time), when the report is of a batch.
    applied
        The policy a batch applied (listed even when no record names it).
    title
        The page's title.

    Returns
    -------
    str
        The page.
    """
    from rspolicy.htmlreport.mapsvg import footprint_map  # noqa: PLC0415 - shapely loads with it

    rows = [replace(e, index=i) for i, e in enumerate(sorted(entries, key=lambda e: (e.rank, e.index)))]
    ids = list(dict.fromkeys([*([applied] if applied else []), *(e.policy for e in rows if e.policy)]))
    known = _known_policies(ids, policies)
    limits = [coarsest_limit_m(p) for p in known.values()]
    targets = [e.target_gsd_m for e in rows if e.outcome == "degraded" and e.target_gsd_m is not None]
    found = [v for v in [*limits, *targets] if v is not None]
    floor = QUICKLOOK_MARGIN * max(found) if found and any(v is not None for v in limits) else None
    degraded = [e for e in rows if e.outcome == "degraded"]
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    budget = IMAGE_BUDGET_BYTES // max(1, len(degraded))
    if log.verified:
        looks = [_Degraded(e, _pair(e, known, floor, budget, base)) for e in degraded]
    else:
        # A record the chain does not vouch for could name any file with any scale: nothing is read for it.
        why = "the log's chain did not verify, so its records cannot vouch for the files they name: no quicklook"
        looks = [_Degraded(e, QuicklookPair(None, None, why, why)) for e in degraded]
    zones, missing_zones = _zones(rows, known)
    env = _environment()
    css = env.loader.get_source(env, "report.css")[0]
    js = env.loader.get_source(env, "report.js")[0]
    csp = _CSP.format(style=_hash_source(css), script=_hash_source(js))
    template = env.get_template("report.html.j2")
    from markupsafe import Markup  # noqa: PLC0415

    return str(template.render(
        title=title, csp=csp, css=Markup(css), js=Markup(js),  # rspolicy's own files, hashed in the CSP
        rows_json=Markup(script_json(_details(rows))),  # escaped by script_json
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        version=rspolicy.__version__, log=log, summary=_summary(rows, summary), rows=rows,
        attention=[e for e in rows if e.outcome in ("failed", "blocked")], degraded=looks,
        policies=[_PolicyRow(i, coarsest_limit_m(known[i.sha256]) if i.sha256 in known else None,
                             i.sha256 in known) for i in ids],
        floor=floor, margin=QUICKLOOK_MARGIN, map=footprint_map(rows, zones), missing_zones=missing_zones,
        colours=OUTCOME_COLOURS, outcomes=OUTCOMES, number=_number, size=_size))
