"""A drill's report: JSON for machines, one self-contained HTML page for people.

The HTML page has no scripts, no external styles, fonts or images: it opens
from a CI artifact or an e-mail attachment as it is. It shows the verdict,
the findings, each asset's checks and step timings, and charts (inline SVG)
of the RTO and RPO each asset reached in every drill recorded in the
repository, against its targets.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from seawall.plan.drill import DrillReport
from seawall.plan.model import approx_duration

JSON_NAME = "drill-report.json"
HTML_NAME = "drill-report.html"

_PASS, _FAIL, _WARN, _GREY = "#1a7f37", "#cf222e", "#9a6700", "#6e7781"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1f2328;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.verdict{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:600}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.muted{color:#6e7781}.charts{display:flex;flex-wrap:wrap;gap:1em}
code{background:#f6f8fa;padding:0 .25em;border-radius:3px}ul{margin:.3em 0}
"""


def write_report(report: DrillReport, directory: str | Path) -> tuple[Path, Path]:
    """Write ``drill-report.json`` and ``drill-report.html`` into ``directory``."""
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


def verdict(report: DrillReport) -> tuple[str, str]:
    """(word, colour) for the drill's outcome."""
    if not report.checks_passed:
        return "FAILED", _FAIL
    if report.missed_targets:
        return "TARGETS MISSED", _WARN
    if report.degraded:
        return "RECOVERED FROM A REPLICA", _WARN
    return "PASSED", _PASS


def render_html(report: DrillReport) -> str:
    word, colour = verdict(report)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>seawall drill: {escape(word)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>seawall drill <span class='verdict' style='background:{colour}'>"
        f"{escape(word)}</span></h1>",
        "<p class='muted'>"
        + " &middot; ".join(
            escape(x)
            for x in (
                f"plan {report.plan_file}",
                f"repository {report.repository}",
                f"group {report.group[:8] or '-'}"
                + (f" of {_when(report.group_time)}" if report.group_time else ""),
                f"drill of {_when(report.time.isoformat())}",
                f"total RTO {approx_duration(report.rto_s)}",
            )
        )
        + "</p>",
    ]
    problems = ([report.error] if report.error else []) + report.findings + report.missed_targets
    if problems:
        parts.append("<h2>Findings</h2><ul>")
        parts += [f"<li>{escape(p)}</li>" for p in problems]
        parts.append("</ul>")
    parts.append(_summary(report))
    for asset in report.assets:
        parts.append(_asset_section(report, asset.name))
    parts.append(
        f"<p class='muted'>Drill record {escape(report.record[:12] or 'not saved')}"
        + (f" in the {escape(report.recorded_in)} repository" if report.recorded_in else "")
        + f"; {len(report.history)} drills recorded there.</p></body></html>\n"
    )
    return "".join(parts)


def _summary(report: DrillReport) -> str:
    rows = [
        "<h2>Assets</h2><table><tr><th>asset</th><th>kind</th><th>result</th>"
        "<th>recovered from</th><th>RTO / target</th><th>RPO (age) / target</th>"
        "<th>worst gap</th></tr>"
    ]
    for a in report.assets:
        result = "<span class='ok'>passed</span>" if a.passed else "<span class='bad'>failed</span>"
        rows.append(
            f"<tr><td><a href='#asset-{escape(a.name)}'>{escape(a.name)}</a></td>"
            f"<td>{escape(a.kind)}</td><td>{result}</td><td>{escape(a.source or '-')}</td>"
            f"<td>{_vs(a.rto_s, a.rto_target_s)}</td><td>{_vs(a.rpo_s, a.rpo_target_s)}</td>"
            f"<td>{_vs(a.rpo_worst_gap_s, a.rpo_target_s)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _asset_section(report: DrillReport, name: str) -> str:
    a = next(x for x in report.assets if x.name == name)
    out = [
        f"<h2 id='asset-{escape(a.name)}'>{escape(a.name)} "
        f"<span class='muted'>({escape(a.kind)})</span></h2>"
    ]
    if a.snapshot:
        out.append(
            f"<p>snapshot <code>{escape(a.snapshot[:12])}</code> captured "
            f"{escape(_when(a.captured_at))}, restored from {escape(a.source)}</p>"
        )
    if a.error:
        out.append(f"<p class='bad'>{escape(a.error)}</p>")
    if a.findings:
        out.append("<ul>" + "".join(f"<li>{escape(f)}</li>" for f in a.findings) + "</ul>")
    if a.checks:
        out.append("<table><tr><th>check</th><th>result</th><th>detail</th><th>time</th></tr>")
        for c in a.checks:
            result = "<span class='ok'>pass</span>" if c.passed else "<span class='bad'>FAIL</span>"
            out.append(
                f"<tr><td>{escape(c.name)}</td><td>{result}</td><td>{escape(c.detail)}</td>"
                f"<td>{approx_duration(c.duration_s)}</td></tr>"
            )
        out.append("</table>")
    if a.steps:
        out.append(
            "<p class='muted'>steps: "
            + ", ".join(f"{escape(k)} {approx_duration(v)}" for k, v in a.steps.items())
            + "</p>"
        )
    history = _history(report.history, a.name)
    out.append("<div class='charts'>")
    out.append(chart(f"RTO of {a.name}", history["rto"], a.rto_target_s))
    out.append(chart(f"RPO (age of the data) of {a.name}", history["rpo"], a.rpo_target_s))
    out.append("</div>")
    return "".join(out)


Point = tuple[str, float, bool]


def _history(records: list[dict[str, Any]], asset: str) -> dict[str, list[Point]]:
    """(time, value, passed) of the asset's RTO and RPO in each drill record."""
    out: dict[str, list[Point]] = {"rto": [], "rpo": []}
    for record in records:
        entry = (record.get("assets") or {}).get(asset)
        if not isinstance(entry, dict):
            continue
        passed = bool(entry.get("passed")) and bool(record.get("passed"))
        for key, field in (("rto", "rto_s"), ("rpo", "rpo_s")):
            value = entry.get(field)
            if isinstance(value, int | float):
                out[key].append((str(record.get("time", "")), float(value), passed))
    return out


def chart(title: str, points: list[Point], target: float | None) -> str:
    """An inline SVG line chart of ``points`` (oldest first), with the target dashed."""
    width, height, left, right, top, bottom = 520, 220, 58, 14, 28, 34
    inner_w, inner_h = width - left - right, height - top - bottom
    svg = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{escape(title, quote=True)}'>",
        f"<text x='{left}' y='16' font-size='13' font-weight='600'>{escape(title)}</text>",
        f"<rect x='{left}' y='{top}' width='{inner_w}' height='{inner_h}' fill='#f6f8fa' "
        "stroke='#d0d7de'/>",
    ]
    if not points:
        svg.append(
            f"<text x='{left + 10}' y='{top + inner_h / 2}' fill='{_GREY}'>no drill yet</text>"
        )
        return "".join(svg) + "</svg>"
    top_value = max([v for _t, v, _p in points] + ([target] if target else [])) * 1.15 or 1.0

    def x(i: int) -> float:
        return left + (inner_w / 2 if len(points) == 1 else i * inner_w / (len(points) - 1))

    def y(value: float) -> float:
        return top + inner_h - value / top_value * inner_h

    for fraction in (0.0, 0.5, 1.0):
        value = top_value * fraction
        svg.append(
            f"<text x='{left - 6}' y='{y(value) + 4:.1f}' font-size='11' text-anchor='end' "
            f"fill='{_GREY}'>{escape(approx_duration(value))}</text>"
        )
    if target:
        svg.append(
            f"<line x1='{left}' x2='{left + inner_w}' y1='{y(target):.1f}' y2='{y(target):.1f}' "
            f"stroke='{_FAIL}' stroke-dasharray='6 4'/>"
            f"<text x='{left + inner_w - 4}' y='{y(target) - 4:.1f}' font-size='11' "
            f"text-anchor='end' fill='{_FAIL}'>target {escape(approx_duration(target))}</text>"
        )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_t, v, _p) in enumerate(points))
    svg.append(f"<polyline points='{line}' fill='none' stroke='#0969da' stroke-width='2'/>")
    for i, (when, value, passed) in enumerate(points):
        colour = _PASS if passed else _FAIL
        svg.append(
            f"<circle cx='{x(i):.1f}' cy='{y(value):.1f}' r='4' fill='{colour}'>"
            f"<title>{escape(_when(when))}: {escape(approx_duration(value))}</title></circle>"
        )
    for i in {0, len(points) - 1}:
        svg.append(
            f"<text x='{x(i):.1f}' y='{height - 12}' font-size='11' text-anchor='middle' "
            f"fill='{_GREY}'>{escape(_when(points[i][0])[:10])}</text>"
        )
    return "".join(svg) + "</svg>"


def _vs(value: float | None, target: float | None) -> str:
    if value is None:
        return "-"
    shown = escape(approx_duration(value))
    if target is None:
        return shown
    cls = "ok" if value <= target else "bad"
    return f"<span class='{cls}'>{shown}</span> / {escape(approx_duration(target))}"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso
