"""Result tables built from the records on disk with pandas.

One summary data frame (`summary`) holds every number: per (dataset, method, codebook size) the mean
and sample std over finished seeds, the run counts, and the smallest FID image count. Every output
format is rendered from that one frame: terminal (tabulate), Markdown, CSV, LaTeX (booktabs) and the
HTML used by the report. Failed and missing runs keep their rows; published numbers (see
`reported.py`'s data file) join as rows marked "reported" and never take part in best/second marks,
because their protocols differ from ours.
"""
from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from bench.core.atomic import write_text_atomic
from bench.evaluation.metrics import keys
from bench.runs import records

# ------------------------------------------------------------------------------------------ metrics

LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Metric:
    key: str            # key in record["metrics"]
    label: str          # column header without the arrow
    better: str | None  # LOWER, HIGHER, or None (no best/second marks, no arrow: perplexity)
    scale: float = 1.0  # utilisation is stored in [0, 1] and shown in percent
    decimals: int = 2

    @property
    def arrow(self) -> str:
        return {LOWER: "↓", HIGHER: "↑"}.get(self.better or "", "")

    def header(self, fmt: str = "terminal") -> str:
        if fmt == "tex":
            tex_arrow = {LOWER: r" $\downarrow$", HIGHER: r" $\uparrow$"}.get(self.better or "", "")
            return _tex_escape(self.label) + tex_arrow
        return f"{self.label} {self.arrow}".strip()


ST_LPIPS = getattr(keys, "ST_LPIPS", "st_lpips")  # shift-tolerant LPIPS: another network, never shown as "LPIPS"
KID = getattr(keys, "KID", "kid")
FID_DAGGER_BELOW = 2048  # FIDs from fewer images are biased upwards and not comparable to papers'

METRICS: dict[str, Metric] = {m.key: m for m in [
    Metric(keys.FID, "rFID", LOWER, 1.0, 2),
    Metric(keys.PSNR, "PSNR", HIGHER, 1.0, 2),
    Metric(keys.SSIM, "SSIM", HIGHER, 1.0, 4),
    Metric(keys.LPIPS, "LPIPS", LOWER, 1.0, 4),
    Metric(ST_LPIPS, "ST-LPIPS", LOWER, 1.0, 4),
    Metric(keys.UTILIZATION, "Usage %", HIGHER, 100.0, 1),
    Metric(keys.PERPLEXITY, "Perplexity", None, 1.0, 1),
    Metric(keys.DEAD_CODES, "Dead codes", LOWER, 1.0, 0),
    Metric(KID, "KID", LOWER, 1.0, 4),
]}
# The seed paper's column order. Of LPIPS and ST-LPIPS (the evaluator sets one of them), a column no
# record has a value for is dropped; with neither anywhere, the LPIPS column stays, empty.
DEFAULT_METRICS = (keys.FID, keys.PSNR, keys.SSIM, keys.LPIPS, ST_LPIPS, keys.UTILIZATION, keys.PERPLEXITY)
OPTIONAL_METRICS = (keys.LPIPS, ST_LPIPS)
TABLE_FORMATS = ("md", "csv", "tex")
FORMATS = ("terminal",) + TABLE_FORMATS + ("html",)

# Config fields a row may be keyed by (--group-by). Dataset always splits tables; seeds are averaged
# unless "seed" is one of the keys.
GROUP_FIELDS = {"method": "Method", "codebook_size": "Codebook size", "preset": "Preset", "steps": "Steps",
                "seed": "Seed"}
DEFAULT_GROUP_BY = ("method", "codebook_size")
# Never averaged together silently: added to the row key whenever they vary within a dataset.
PROTOCOL_FIELDS = ("preset", "steps")
MEASURED, REPORTED = "measured", "reported"


def metric_spec(key: str) -> Metric:
    """The spec of a metric key; per-group usage keys (utilization_adj) derive from their base."""
    if key in METRICS:
        return METRICS[key]
    for base in (keys.UTILIZATION, keys.PERPLEXITY, keys.DEAD_CODES):
        if key.startswith(base + "_"):
            return replace(METRICS[base], key=key, label=f"{METRICS[base].label} ({key[len(base) + 1:]})")
    return Metric(key, key, None, 1.0, 3)


# ------------------------------------------------------------------------------------------ frames

def _fid_images(record: dict[str, Any]) -> float | None:
    """How many images the run's FID used: protocol["fid"]["n_images"], else the evaluated count."""
    proto = record.get("protocol") or {}
    fid = proto.get("fid")
    if isinstance(fid, dict) and fid.get("n_images") is not None:
        return float(fid["n_images"])
    if (record.get("metrics") or {}).get(keys.FID) is not None and proto.get("n_images") is not None:
        return float(proto["n_images"])
    return None


def frame(recs: Iterable[dict[str, Any]], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per record: identity, status, error, run folder and every metric (scaled for display).
    Failed runs keep their row with empty metrics."""
    rows = []
    for r in recs:
        c = r.get("config") or {}
        m = r.get("metrics") or {}
        row = {"Dataset": c.get("dataset"), "Method": c.get("method"), "Codebook size": c.get("codebook_size"),
               "Seed": c.get("seed"), "Preset": c.get("preset"), "Steps": c.get("steps"), "Tokens": r.get("tokens"),
               "Status": r.get("status"), "Error": r.get("error"), "run_id": r.get("run_id"),
               "wall_s": r.get("wall_s"), "train_s": r.get("train_s"), "fid_n_images": _fid_images(r)}
        wanted = list(metrics) if metrics else list(dict.fromkeys(list(DEFAULT_METRICS) + list(m)))
        for key in wanted:
            value = m.get(key)
            spec = metric_spec(key)
            row[key] = float(value) * spec.scale if isinstance(value, (int, float)) and value is not None else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["Dataset", "Method", "Codebook size", "Seed"], kind="stable").reset_index(drop=True)
    return df


def _metric_columns(df: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    if metrics:
        return list(metrics)
    out = [k for k in DEFAULT_METRICS if k in df.columns]
    has = {k for k in OPTIONAL_METRICS if k in df.columns and df[k].notna().any()}
    if not has:
        has = {keys.LPIPS}
    return [k for k in out if k not in OPTIONAL_METRICS or k in has]


def summary(df: pd.DataFrame, metrics: Sequence[str] | None = None, group_by: Sequence[str] = DEFAULT_GROUP_BY,
            methods: Sequence[str] | None = None, reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper layout: one row per dataset and group (default: method and codebook size).

    Metric columns hold the mean over finished seeds, `<metric>_std` the sample std (NaN for one
    seed). `Runs`/`Finished`/`Failed`/`Expected` count runs; a group with no finished run keeps its
    row (Status "failed"), and a method x codebook-size cell of the grid with no record at all gets
    a "missing" row. Preset and steps join the row key whenever they vary within a dataset, so runs
    of different protocols are never averaged together. `reported` rows (see `reported_rows`) are
    appended with Source "reported"."""
    metric_cols = _metric_columns(df, metrics) if len(df) else list(metrics or DEFAULT_METRICS[:4])
    for key in metric_cols:
        if len(df) and key not in df.columns:
            raise ValueError(f"unknown metric {key!r}; records carry: "
                             f"{', '.join(c for c in df.columns if c not in _ID_COLUMNS)}")
    unknown = [g for g in group_by if g not in GROUP_FIELDS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {', '.join(GROUP_FIELDS)}")
    out_rows: list[dict[str, Any]] = []
    for dataset, ddf in (df.groupby("Dataset", sort=True, dropna=False) if len(df) else []):
        fields = list(group_by) + [f for f in PROTOCOL_FIELDS
                                   if f not in group_by and ddf[GROUP_FIELDS[f]].nunique() > 1]
        cols = [GROUP_FIELDS[f] for f in fields]
        seeds = sorted(ddf["Seed"].dropna().unique().tolist())
        expected_n = 1 if "seed" in fields else max(len(seeds), 1)
        groups = {k if isinstance(k, tuple) else (k,): g for k, g in ddf.groupby(cols, sort=True, dropna=False)}
        # Cells of the method x codebook-size grid with no record at all are shown as missing.
        if "method" in fields and "codebook_size" in fields:
            mi, ki = cols.index("Method"), cols.index("Codebook size")
            all_methods = sorted(set(ddf["Method"]) | set(methods or []))
            others = {tuple(v for i, v in enumerate(k) if i not in (mi, ki)) for k in groups}
            sizes = sorted(set(ddf["Codebook size"]))
            for m, k, rest in itertools.product(all_methods, sizes, sorted(others, key=str)):
                key = list(rest)
                for i, v in sorted(((mi, m), (ki, k))):
                    key.insert(i, v)
                groups.setdefault(tuple(key), None)
        for key, g in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            row: dict[str, Any] = {"Dataset": dataset, **dict(zip(cols, key)), "Source": MEASURED, "Ref": ""}
            if g is None:
                row.update(Tokens=None, Finished=0, Failed=0, Expected=expected_n, Status="missing", run_ids="")
                row.update({k: math.nan for k in metric_cols}, **{f"{k}_std": math.nan for k in metric_cols})
                row["fid_n_images"] = math.nan
                out_rows.append(row)
                continue
            done = g[g["Status"] == records.FINISHED]
            n_ok, n_failed = len(done), int((g["Status"] == records.FAILED).sum())
            tokens = g["Tokens"].dropna()
            row.update(Tokens=int(tokens.iloc[0]) if len(tokens) else None, Finished=n_ok, Failed=n_failed,
                       Expected=max(expected_n, len(g)), run_ids=" ".join(g["run_id"].astype(str)))
            row["Status"] = ("ok" if n_ok >= row["Expected"] else "failed" if n_ok == 0 and n_failed
                             else "partial" if n_ok else "unfinished")
            for k in metric_cols:
                vals = done[k].dropna() if k in done else pd.Series(dtype=float)
                row[k] = float(vals.mean()) if len(vals) else math.nan
                row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            fid_n = (done.loc[done[keys.FID].notna(), "fid_n_images"].dropna() if keys.FID in done
                     else pd.Series(dtype=float))
            row["fid_n_images"] = float(fid_n.min()) if len(fid_n) else math.nan
            out_rows.append(row)
    out = pd.DataFrame(out_rows)
    if reported is not None and len(reported):
        rep = reported.copy()
        for k in metric_cols:
            rep[k] = rep[k] if k in rep else math.nan
            rep[f"{k}_std"] = math.nan
        out = pd.concat([out, rep], ignore_index=True) if len(out) else rep
    if out.empty:
        return out
    for f in GROUP_FIELDS.values():
        if f in out.columns and out[f].isna().all() and f not in [GROUP_FIELDS[g] for g in group_by]:
            out = out.drop(columns=f)
    lead = ["Dataset"] + [c for c in GROUP_FIELDS.values() if c in out.columns] + ["Tokens", "Source", "Ref"]
    counts = ["Finished", "Failed", "Expected", "Status"]
    tail = [c for c in ["fid_n_images", "run_ids"] if c in out.columns]
    metric_part = [c for k in metric_cols for c in (k, f"{k}_std")]
    out = out[[c for c in lead + metric_part + counts + tail if c in out.columns]]
    for c in ("Codebook size", "Steps", "Seed", "Tokens", "Finished", "Failed", "Expected", "fid_n_images"):
        if c in out.columns:  # integers stay integers in CSV even where a missing row has none
            out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")
    out.attrs["metrics"] = list(metric_cols)
    return out.reset_index(drop=True)


_ID_COLUMNS = {"Dataset", "Method", "Codebook size", "Seed", "Preset", "Steps", "Tokens", "Status", "Error", "run_id",
               "wall_s", "train_s", "fid_n_images"}


def metrics_of(df: pd.DataFrame) -> list[str]:
    """Metric keys of a summary frame, in column order (those with a `<key>_std` column)."""
    return [c for c in df.columns if f"{c}_std" in df.columns]


def cross_summary(summ: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Methods as rows, datasets as column groups, one metric: `<dataset>` holds the mean and
    `<dataset>_std` the std. Built from the summary frame, so it agrees with the per-dataset tables."""
    if summ.empty or metric not in summ.columns:
        raise ValueError(f"no column {metric!r} in the summary; metrics there: {', '.join(metrics_of(summ))}")
    row_cols = [c for c in GROUP_FIELDS.values() if c in summ.columns] + ["Source", "Ref"]
    datasets = list(dict.fromkeys(summ["Dataset"]))
    rows: dict[tuple, dict[str, Any]] = {}
    for _, r in summ.iterrows():
        key = tuple(r[c] for c in row_cols)
        row = rows.setdefault(key, dict(zip(row_cols, key)))
        row[r["Dataset"]] = r[metric]
        row[f"{r['Dataset']}_std"] = r.get(f"{metric}_std", math.nan)
        if metric == keys.FID:
            row[f"{r['Dataset']}_fid_n_images"] = r.get("fid_n_images", math.nan)
    out = pd.DataFrame(list(rows.values()))
    for d in datasets:
        for col in (d, f"{d}_std"):
            if col not in out:
                out[col] = math.nan
    out = out.sort_values([c for c in ("Source", "Method", "Codebook size") if c in out.columns],
                          key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)
    out.attrs["metric"] = metric
    out.attrs["datasets"] = datasets
    return out


# ------------------------------------------------------------------------------------------ rendering

@dataclass
class Cell:
    text: str
    rank: int = 0          # 1 best, 2 second (bold / underline in Markdown, LaTeX and HTML)
    dagger: bool = False   # FID from fewer than FID_DAGGER_BELOW images
    italic: bool = False   # reported, not measured


def _na(value: Any) -> bool:
    """None, NaN or pd.NA (nullable integer columns hold pd.NA where a row has no value)."""
    return value is None or bool(pd.isna(value))


def _floats(col: pd.Series) -> list[float]:
    return pd.to_numeric(col, errors="coerce").astype(float).tolist()


def _fmt(mean: float, std: float, decimals: int) -> str:
    if _na(mean):
        return "—"
    text = f"{mean:.{decimals}f}"
    if not _na(std):
        text += f" ± {std:.{decimals}f}"
    return text


def _ranks(values: list[float], better: str | None, decimals: int, eligible: list[bool]) -> list[int]:
    """1 for the best value, 2 for the second best (on the shown, rounded values, so shown ties tie)."""
    if better is None:
        return [0] * len(values)
    shown = sorted({round(v, decimals) for v, ok in zip(values, eligible) if ok and not math.isnan(v)},
                   reverse=better == HIGHER)
    best = shown[:2]
    return [best.index(round(v, decimals)) + 1 if ok and not math.isnan(v) and round(v, decimals) in best else 0
            for v, ok in zip(values, eligible)]


def _runs_text(r: pd.Series) -> str:
    if r.get("Source") == REPORTED:
        return "reported"
    if r["Status"] == "missing":
        return "missing"
    text = f"{int(r['Finished'])}/{int(r['Expected'])}"
    if r["Failed"]:
        text += f" ({int(r['Failed'])} failed)"
    return text


@dataclass
class Grid:
    """A rendered table before it becomes text: headers, cells and footnotes."""
    title: str
    headers: list[str]
    tex_headers: list[str]
    rows: list[list[Cell]]
    numeric: list[bool]


def _dataset_grid(sub: pd.DataFrame, dataset: str, refs: dict[str, int]) -> Grid:
    metrics = metrics_of(sub)
    id_cols = [c for c in ("Method", "Codebook size", "Preset", "Steps", "Seed", "Tokens") if c in sub.columns]
    eligible = [(s == MEASURED) for s in sub["Source"]]
    cells = [[Cell(_id_text(r, c, refs), italic=r["Source"] == REPORTED) for c in id_cols] for _, r in sub.iterrows()]
    for k in metrics:
        spec = metric_spec(k)
        ranks = _ranks(_floats(sub[k]), spec.better, spec.decimals, eligible)
        for i, (_, r) in enumerate(sub.iterrows()):
            n = r.get("fid_n_images")
            dagger = k == keys.FID and not _na(r[k]) and not _na(n) and n < FID_DAGGER_BELOW
            cells[i].append(Cell(_fmt(r[k], r[f"{k}_std"], spec.decimals), ranks[i], dagger, r["Source"] == REPORTED))
    for i, (_, r) in enumerate(sub.iterrows()):
        cells[i].append(Cell(_runs_text(r), italic=r["Source"] == REPORTED))
    headers = id_cols + [metric_spec(k).header() for k in metrics] + ["Runs"]
    tex_headers = [_tex_escape(c) for c in id_cols] + [metric_spec(k).header("tex") for k in metrics] + ["Runs"]
    numeric = [c in ("Codebook size", "Steps", "Seed", "Tokens") for c in id_cols] + [True] * len(metrics) + [False]
    return Grid(str(dataset), headers, tex_headers, cells, numeric)


def _id_text(r: pd.Series, col: str, refs: dict[str, int]) -> str:
    v = r[col]
    if _na(v):
        return "—"
    text = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    if col == "Method" and r.get("Source") == REPORTED:
        text += f" [R{refs[r['Ref']]}]"
    return text


def _cross_grid(cross: pd.DataFrame, refs: dict[str, int]) -> Grid:
    spec = metric_spec(cross.attrs["metric"])
    id_cols = [c for c in GROUP_FIELDS.values() if c in cross.columns]
    eligible = [(s == MEASURED) for s in cross["Source"]]
    cells = [[Cell(_id_text(r, c, refs), italic=r["Source"] == REPORTED) for c in id_cols] for _, r in cross.iterrows()]
    for d in cross.attrs["datasets"]:
        ranks = _ranks(_floats(cross[d]), spec.better, spec.decimals, eligible)
        n_col = f"{d}_fid_n_images"
        for i, (_, r) in enumerate(cross.iterrows()):
            n = r.get(n_col, math.nan) if n_col in cross.columns else math.nan
            dagger = not _na(r[d]) and not _na(n) and n < FID_DAGGER_BELOW
            cells[i].append(Cell(_fmt(r[d], r[f"{d}_std"], spec.decimals), ranks[i], dagger, r["Source"] == REPORTED))
    datasets = [str(d) for d in cross.attrs["datasets"]]
    return Grid(f"{spec.header()} across datasets", id_cols + datasets,
                [_tex_escape(c) for c in id_cols + datasets], cells,
                [c in ("Codebook size", "Steps", "Seed") for c in id_cols] + [True] * len(datasets))


def _tex_escape(text: str) -> str:
    out = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        out = out.replace(a, b)
    return out.replace("±", r"$\pm$").replace("—", "--").replace("†", r"$^\dagger$")


def _cell_text(cell: Cell, fmt: str) -> str:
    text = cell.text + ("†" if cell.dagger else "")
    if fmt == "md":
        text = text.replace("|", r"\|")
        text = f"**{text}**" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2 else text
        return f"*{text}*" if cell.italic and text != "—" else text
    if fmt == "tex":
        text = _tex_escape(text)
        text = rf"\textbf{{{text}}}" if cell.rank == 1 else rf"\underline{{{text}}}" if cell.rank == 2 else text
        return rf"\textit{{{text}}}" if cell.italic and cell.text != "—" else text
    if fmt == "html":
        text = html.escape(text)
        text = f"<strong>{text}</strong>" if cell.rank == 1 else f"<u>{text}</u>" if cell.rank == 2 else text
        return f"<em>{text}</em>" if cell.italic else text
    return text


def _render_grid(grid: Grid, fmt: str, caption: str = "") -> str:
    if fmt == "terminal":
        body = [[_cell_text(c, fmt) for c in row] for row in grid.rows]
        return tabulate(body, headers=grid.headers, tablefmt="github", disable_numparse=True)
    if fmt == "md":
        lines = ["| " + " | ".join(h.replace("|", r"\|") for h in grid.headers) + " |",
                 "|" + "|".join("---:" if n else ":---" for n in grid.numeric) + "|"]
        lines += ["| " + " | ".join(_cell_text(c, fmt) for c in row) + " |" for row in grid.rows]
        return "\n".join(lines)
    if fmt == "tex":
        spec = "".join("r" if n else "l" for n in grid.numeric)
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption or grid.title)}}}",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(grid.tex_headers) + r" \\", r"\midrule"]
        lines += [" & ".join(_cell_text(c, fmt) for c in row) + r" \\" for row in grid.rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines)
    if fmt == "html":
        head = "".join(f"<th scope=\"col\">{html.escape(h)}</th>" for h in grid.headers)
        body = "\n".join(  # one row per line: the page stays readable as text, too
            "<tr>" + "".join(f"<td class=\"{'num' if n else 'txt'}\">{_cell_text(c, fmt)}</td>"
                             for c, n in zip(row, grid.numeric)) + "</tr>" for row in grid.rows)
        cap = f"<caption>{html.escape(caption or grid.title)}</caption>"
        return (f"<table class=\"results\">{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>"
                f"</table>")
    raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")


def _refs(df: pd.DataFrame) -> dict[str, int]:
    rep = df[df["Source"] == REPORTED] if "Source" in df.columns else df.iloc[0:0]
    return {ref: i + 1 for i, ref in enumerate(dict.fromkeys(rep["Ref"]))}


def footnotes(df: pd.DataFrame, reported: pd.DataFrame | None = None,
              failures: pd.DataFrame | None = None) -> list[str]:
    """The notes under a table: FID daggers, reported sources, failed runs. Plain text."""
    notes = []
    if "fid_n_images" in df.columns and keys.FID in df.columns:
        small = df[(df["fid_n_images"] < FID_DAGGER_BELOW) & df[keys.FID].notna()]
        if len(small):
            ns = ", ".join(str(int(n)) for n in sorted(set(small["fid_n_images"])))
            notes.append(f"† rFID from fewer than {FID_DAGGER_BELOW} images (n = {ns}): biased upwards, not "
                         f"comparable with published rFIDs.")
    if "Source" in df.columns and (df["Source"] == REPORTED).any():
        notes.append("Rows in italics marked [Rn] are published numbers, not measured by vqbench; their protocols "
                     "differ and they take no part in best/second marks.")
        for ref, n in _refs(df).items():
            notes.append(f"[R{n}] {_reference_text(ref, reported)}")
    if failures is not None and len(failures):
        for _, f in failures.iterrows():
            err = str(f.get("Error") or "no error recorded").splitlines()[0][:160]
            notes.append(f"failed: {f['run_id']} ({f['Method']} on {f['Dataset']}, K={f['Codebook size']}, "
                         f"seed {f['Seed']}): {err}")
    if "Status" in df.columns and (df["Status"] == "missing").any():
        notes.append("missing: no record for this cell of the method x codebook-size grid.")
    return notes


def _reference_text(ref: str, reported: pd.DataFrame | None) -> str:
    if reported is not None and len(reported) and "Ref" in reported:
        rows = reported[reported["Ref"] == ref]
        if len(rows):
            r = rows.iloc[0]
            return f"{r['paper']}, {r['table']}: {r['url']} ({r['protocol']})"
    return ref


def render(df: pd.DataFrame, fmt: str = "terminal", reported: pd.DataFrame | None = None,
           failures: pd.DataFrame | None = None, notes: bool = True) -> str:
    """Per-dataset tables (paper layout) of a summary frame, in one of FORMATS. CSV is the frame
    itself (every mean, std and count, machine readable)."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if df.empty:
        return "(no results)"
    refs = _refs(df)
    parts = []
    for dataset, sub in df.groupby("Dataset", sort=False):
        grid = _dataset_grid(sub.reset_index(drop=True), str(dataset), refs)
        title = f"Reconstruction on {dataset}"
        if fmt == "md":
            parts.append(f"### {title}\n\n{_render_grid(grid, fmt)}")
        elif fmt == "terminal":
            parts.append(f"{title}\n{_render_grid(grid, fmt)}")
        else:
            parts.append(_render_grid(grid, fmt, caption=title))
    if notes:
        note_lines = footnotes(df, reported, failures)
        if note_lines:
            parts.append(_notes_text(note_lines, fmt))
    return "\n\n".join(parts) + "\n"


def render_cross(cross: pd.DataFrame, fmt: str = "terminal", reported: pd.DataFrame | None = None) -> str:
    """The cross-dataset summary (methods x datasets, one metric) in one of FORMATS."""
    if fmt == "csv":
        return cross.to_csv(index=False)
    refs = _refs(cross)
    grid = _cross_grid(cross, refs)
    text = _render_grid(grid, fmt, caption=grid.title)
    if fmt == "md":
        text = f"### {grid.title}\n\n{text}"
    elif fmt == "terminal":
        text = f"{grid.title}\n{text}"
    notes = []
    n_cols = [c for c in cross.columns if c.endswith("_fid_n_images")]
    if n_cols and any((cross[c] < FID_DAGGER_BELOW).any() for c in n_cols):
        notes.append(f"† rFID from fewer than {FID_DAGGER_BELOW} images: not comparable with published rFIDs.")
    notes += [f"[R{n}] {_reference_text(ref, reported)}" for ref, n in refs.items()]
    return text + ("\n\n" + _notes_text(notes, fmt) if notes else "") + "\n"


def _notes_text(lines: list[str], fmt: str) -> str:
    if fmt == "tex":
        return "\n".join("% " + line for line in lines)
    if fmt == "html":
        return "<ul class=\"notes\">\n" + "\n".join(f"<li>{html.escape(line)}</li>" for line in lines) + "\n</ul>"
    if fmt == "md":
        return "\n".join(f"- {line}" for line in lines)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ files

def write_tables(df: pd.DataFrame, out: Path, stem: str = "results", reported: pd.DataFrame | None = None,
                 failures: pd.DataFrame | None = None, cross: pd.DataFrame | None = None) -> list[Path]:
    """OUT/tables/<stem>.{md,csv,tex} (and <stem>_summary.* for the cross-dataset table), each
    written to a temp file and renamed so a reader never sees half a table."""
    folder = Path(out) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in TABLE_FORMATS:
        items = [(folder / f"{stem}.{fmt}", render(df, fmt, reported, failures))]
        if cross is not None:
            items.append((folder / f"{stem}_summary.{fmt}", render_cross(cross, fmt, reported)))
        for path, text in items:
            write_text_atomic(path, text)
            paths.append(path)
    return paths


def failures_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The failed runs of a run frame, for the footnotes."""
    if runs.empty:
        return runs
    return runs[runs["Status"] == records.FAILED]


def build(out: Path | str, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
          metrics: Sequence[str] | None = None, group_by: Sequence[str] = DEFAULT_GROUP_BY,
          with_reported: bool = False) -> dict[str, Any]:
    """Everything the CLI and the report need from the records under `out`: the run frame, the
    summary frame, the published rows, the failures and (several datasets) the cross-dataset table."""
    from bench.reporting import reported as reported_mod

    runs = frame(records.iter_records(Path(out)), metrics)
    check_metrics(runs, metrics)
    if methods and len(runs):
        runs = runs[runs["Method"].isin(methods)]
    if datasets and len(runs):
        runs = runs[runs["Dataset"].isin(datasets)]
    metric_cols = (_metric_columns(runs, metrics) if len(runs)
                   else list(metrics or [k for k in DEFAULT_METRICS if k != ST_LPIPS]))
    rep = None
    if with_reported:
        shown = list(datasets) if datasets else sorted(set(runs["Dataset"])) if len(runs) else None
        rep = reported_mod.reported_rows(datasets=shown, methods=methods, metrics=metric_cols)
    summ = summary(runs, metric_cols, group_by, methods=methods, reported=rep)
    cross = None
    if len(summ) and summ["Dataset"].nunique() > 1:
        cross = cross_summary(summ, summary_metric(summ))
    return {"runs": runs, "summary": summ, "reported": rep, "failures": failures_of(runs), "cross": cross}


def check_metrics(runs: pd.DataFrame, metrics: Sequence[str] | None) -> None:
    """A metric name must be a known one or appear in some record; else a ValueError with suggestions."""
    import difflib

    for key in metrics or []:
        known = key in METRICS or metric_spec(key).better is not None
        if known or (key in runs.columns and runs[key].notna().any()):
            continue
        seen = [c for c in runs.columns if c not in _ID_COLUMNS and c != key and runs[c].notna().any()] + list(METRICS)
        close = difflib.get_close_matches(key, seen, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(dict.fromkeys(seen))}"
        raise ValueError(f"unknown metric {key!r}{hint}")


def summary_metric(summ: pd.DataFrame, preferred: Sequence[str] = (keys.FID, keys.PSNR)) -> str:
    """The metric of the cross-dataset table: rFID when any row has one, else PSNR, else the first."""
    for k in preferred:
        if k in summ.columns and summ[k].notna().any():
            return k
    ms = metrics_of(summ)
    return ms[0] if ms else keys.PSNR
