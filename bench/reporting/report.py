"""`results/report.html`: one static page with the tables, the figures, the protocol and environment
of the runs, and links to each run's folder; when priors were trained on those runs (`--generate`), a
Generation section with their table (bench.reporting.generation_table) and each prior's sample grid.

Self-contained: figures are embedded as PNG data URIs (the SVGs beside them under figures/ are
linked), the style sheet is inline, there is no script and nothing is fetched, so the page reads the
same from a file:// URL, a web server or an archive. Links to run folders are relative to the page.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core import run_folder
from bench.core.atomic import write_text_atomic
from bench.generation import folder as prior_folder
from bench.reporting import comparability, generation_table, plots, tables
from bench.reporting.summary import Summary, build
from bench.runs import records

REPORT_NAME = "report.html"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;vertical-align:top}
thead th{border-bottom:2px solid #444;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:#f6f8fa}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
ul.notes{font-size:.85em;color:#444}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.failed{color:#b00020}.missing{color:#8a6d00}
nav ul{columns:2}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _kv_table(data: dict[str, Any], caption: str) -> str:
    rows = "\n".join(f"<tr><th scope=\"row\">{_esc(k)}</th><td class=\"mono\">{_esc(_short(v))}</td></tr>"
                     for k, v in data.items())
    return f"<table class=\"kv\"><caption>{_esc(caption)}</caption><tbody>\n{rows}\n</tbody></table>"


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


FIGURE_TEXT = {
    "code_frequency": "Sorted code frequencies over the validation split, one curve per run: a curve that "
                      "ends early or falls steeply is a collapsed codebook.",
    "utilization": "Share of the codebook used in each logging window during training (train_log.jsonl).",
    "sweep": ("rFID and usage against codebook size; error bars are the tables' 95% intervals (over seeds with "
              ">= 3 seeds, else over the images of the run; the std over seeds where neither exists)."),
    "reconstructions": "The same validation images (top row) reconstructed by each method.",
    "rate_distortion": "rFID, PSNR and LPIPS against bits per image, one line per method; error bars are the "
                       "tables' 95% intervals.",
    "code_words": "Runs whose codes have names (the quantizer's code labels, code_words.json): the most used "
                  "codes of each code group, labelled with their names.",
}


def _figures_html(figures: dict[str, list[Path]], base: Path, captions: dict[str, str] | None = None) -> str:
    """Each figure's PNG embedded, its SVG linked; `captions` (plots.make_all) replace FIGURE_TEXT, in
    the caption and the alt text, for the figures whose text depends on their data."""
    parts = []
    for kind, paths in figures.items():
        for png in [p for p in paths if p.suffix == ".png"]:
            svg = png.with_suffix(".svg")
            rel_svg = os.path.relpath(svg, base)
            own = (captions or {}).get(png.stem)
            alt = own or f"{kind.replace('_', ' ')}: {png.stem}"
            parts.append(
                f"<figure id=\"fig-{_esc(png.stem)}\">\n<img alt=\"{_esc(alt)}\" src=\"{_data_uri(png)}\">\n"
                f"<figcaption><strong>{_esc(png.stem)}</strong>. {_esc(own or FIGURE_TEXT.get(kind, ''))} "
                f"<a href=\"{_esc(rel_svg)}\">SVG</a></figcaption></figure>")
    return "\n".join(parts) if parts else "<p>No figures: no finished runs with the files they need.</p>"


def _runs_html(runs: pd.DataFrame, out: Path, base: Path) -> str:
    if runs.empty:
        return "<p>No runs.</p>"
    head = ["Run", "Dataset", "Method", "K", "Seed", "Preset", "Steps", "Status", "Wall s", "Error", "Files"]
    body = []
    for _, r in runs.iterrows():
        rid = str(r["run_id"])
        folder = os.path.relpath(run_folder.runs_dir(out) / rid, base)
        status = str(r["Status"])
        err = "" if pd.isna(r.get("Error")) or r.get("Error") is None else str(r["Error"]).splitlines()[0][:200]
        wall = "" if pd.isna(r.get("wall_s")) else f"{r['wall_s']:.0f}"
        body.append(
            "<tr>" + "".join([
                f"<td class=\"mono\"><a href=\"{_esc(folder)}/\">{_esc(rid)}</a></td>",
                *(f"<td>{_esc(r[c])}</td>" for c in ("Dataset", "Method")),
                *(f"<td class=\"num\">{_esc(r[c])}</td>" for c in ("Codebook size", "Seed")),
                f"<td>{_esc(r['Preset'])}</td><td class=\"num\">{_esc(r['Steps'])}</td>",
                f"<td class=\"{'' if status == records.FINISHED else 'failed'}\">{_esc(status)}</td>",
                f"<td class=\"num\">{wall}</td><td>{_esc(err)}</td>",
                f"<td><a href=\"{_esc(folder)}/record.json\">record</a></td>"]) + "</tr>")
    return ("<table class=\"runs\"><thead><tr>" + "".join(f"<th scope=\"col\">{h}</th>" for h in head)
            + "</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>")


def _generation_html(rows: pd.DataFrame, out: Path, base: Path) -> str:
    """The Generation table and notes, then each finished prior's sample grid (samples.png, embedded),
    linked to its folder."""
    parts = [generation_table.render(rows, "html")]
    for _, r in rows[rows["Status"] == "finished"].iterrows():
        pdir = prior_folder.prior_dir(out, str(r["prior_id"]))
        png = pdir / prior_folder.GRID
        if not png.is_file():
            continue
        rel = os.path.relpath(pdir, base)
        label = f"{r['Method']}, K={r['Codebook size']}, seed {r['Seed']}, prior {r['Prior']} (seed {r['Prior seed']})"
        parts.append(
            f"<figure id=\"samples-{_esc(r['prior_id'])}\">\n<img alt=\"{_esc('generated samples: ' + label)}\" "
            f"src=\"{_data_uri(png)}\">\n<figcaption><strong>{_esc(label)}</strong>. The first generated samples of "
            f"this prior, decoded through its tokenizer (rows of 8). <a href=\"{_esc(rel)}/\">prior folder</a>, "
            f"<a href=\"{_esc(rel)}/{prior_folder.RECORD}\">record</a></figcaption></figure>")
    return "\n".join(parts)


def _distinct(recs: list[dict[str, Any]], field: str,
              drop: Sequence[str] = ()) -> list[tuple[dict[str, Any], list[str]]]:
    """Distinct values of record[field] (dicts, minus `drop` keys) with the runs that share each."""
    seen: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for r in recs:
        value = {k: v for k, v in (r.get(field) or {}).items() if k not in drop}
        if not value:
            continue
        key = json.dumps(value, sort_keys=True, default=str)
        seen.setdefault(key, (value, []))[1].append(str(r.get("run_id")))
    return list(seen.values())


def _protocol_html(recs: list[dict[str, Any]]) -> str:
    parts = []
    for dataset in sorted({(r.get("config") or {}).get("dataset") for r in recs if r.get("status") == records.FINISHED},
                          key=str):
        rs = [r for r in recs if (r.get("config") or {}).get("dataset") == dataset and r.get("protocol")]
        variants = _distinct(rs, "protocol", drop=("eval_s",))
        for i, (proto, ids) in enumerate(variants):
            label = str(dataset)
            if len(variants) > 1:
                label += f" (variant {i + 1} of {len(variants)}: {len(ids)} runs)"
            parts.append(_kv_table(proto, f"Evaluation protocol: {label}"))
    return "\n".join(parts) or "<p>No finished runs, so no protocol to show.</p>"


def _environment_html(recs: list[dict[str, Any]]) -> str:
    parts = []
    for versions, ids in _distinct(recs, "versions"):
        devices = sorted({str(r.get("device")) for r in recs if str(r.get("run_id")) in ids})
        parts.append(_kv_table({**versions, "device": ", ".join(devices), "runs": len(ids)},
                               f"Environment ({len(ids)} runs)"))
    return "\n".join(parts) or "<p>No version information in the records.</p>"


def _sources_html(reported: pd.DataFrame | None) -> str:
    if reported is None or reported.empty:
        return ("<p>Published numbers are not shown (build with <code>--with-reported</code>). Their sources are "
                "listed in <code>bench/reporting/reported_results.csv</code>.</p>")
    items = []
    for ref, g in reported.groupby("Ref", sort=False):
        r = g.iloc[0]
        items.append(f"<li><strong>{_esc(ref)}</strong>: {_esc(r['paper'])}, {_esc(r['table'])}. "
                     f"<a href=\"{_esc(r['url'])}\">{_esc(r['url'])}</a>. Protocol: {_esc(r['protocol'])}.</li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_html(summary: Summary, figs: dict[str, Any], recs: list[dict[str, Any]], out: Path,
                title: str = "vqbench results", base: Path | None = None,
                generation: pd.DataFrame | None = None) -> str:
    """The page as a string; links are relative to `base` (the page's folder, default `out`).
    `generation`: the prior rows of these runs (generation_table.read); a Generation section when any."""
    base = Path(base or out)
    runs, rep = summary.runs, summary.reported
    n_ok = int((runs["Status"] == records.FINISHED).sum()) if len(runs) else 0
    n_failed = int((runs["Status"] == records.FAILED).sum()) if len(runs) else 0
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tables_html = tables.render(summary, "html") if not summary.empty else "<p>No results.</p>"
    cross_html = tables.render_cross(summary, "html") if summary.cross is not None else (
        "<p>One dataset only: no cross-dataset summary.</p>")
    notes = figs.get("notes") or []
    notes_html = ("<ul class=\"notes\">" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>") if notes else ""
    sections = [
        ("tables", "Results per dataset", tables_html),
        ("summary", "Cross-dataset summary", cross_html),
        ("figures", "Figures", _figures_html(figs["figures"], base, figs.get("captions")) + notes_html),
        *([("generation", "Generation", _generation_html(generation, out, base))]
          if generation is not None and len(generation) else []),
        ("runs", "Runs", _runs_html(runs, out, base)),
        ("protocol", "Protocol", _protocol_html(recs)),
        ("compare", "How these numbers compare", comparability.section_html(recs)),
        ("environment", "Environment", _environment_html(recs)),
        ("sources", "Published numbers: sources", _sources_html(rep)),
    ]
    nav = "<nav><ul>" + "".join(f"<li><a href=\"#{sid}\">{_esc(t)}</a></li>" for sid, t, _ in sections) + "</ul></nav>"
    body = "\n".join(f"<section id=\"{sid}\">\n<h2>{_esc(t)}</h2>\n{content}\n</section>"
                     for sid, t, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_esc(title)}</h1>
<p>Generated {generated} from {len(runs)} run records ({n_ok} finished, {n_failed} failed) under
<code>{_esc(run_folder.runs_dir(out))}</code>. Best value per column in <strong>bold</strong>, second
<u>underlined</u>; ± is half a 95% interval (the notes under each table say which kind); published numbers
are in <em>italics</em> and never ranked.</p>
</header>
{nav}
{body}
</body>
</html>
"""


def write_report(out: Path | str, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, group_by: Sequence[str] = tables.DEFAULT_GROUP_BY,
                 with_reported: bool = True, path: Path | str | None = None,
                 built: Summary | None = None) -> Path:
    """Write OUT/report.html (or `path`) atomically from `built` (a Summary), or from a Summary of
    the records under `out` built with these filters. Returns the page's path."""
    out = Path(out)
    built = built or build(out, methods, datasets, metrics, group_by, with_reported)
    figs = plots.make_all(out, built)
    run_ids = set(built.runs["run_id"]) if len(built.runs) else set()
    recs = [r for r in records.iter_records(out) if r.get("run_id") in run_ids]
    target = Path(path) if path else out / REPORT_NAME
    page = render_html(built, figs, recs, out, base=target.parent.resolve() if path else out,
                       generation=generation_table.read(out, run_ids=run_ids))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target
