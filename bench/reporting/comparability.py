""""How these numbers compare": for the finished runs of a report, per dataset, the protocol their
rFID was measured under (FID reference, image count, resolution, crop, evaluation precision) and which
published numbers (reported_results.csv) share it, and for those that do not, why.

A published number shares the protocol when it names the same FID reference, the same resolution and
the same image count as the runs (the count matters: FID falls with the number of images, Chong &
Forsyth 2020). What the data file does not state (an empty fid_reference or fid_n_images) is a reason
too: such a number cannot be shown to be comparable. The data file records neither the crop nor the
evaluation precision of a published number, so a match is necessary, not sufficient; the section
says so. Built from records only (no torch), so the report shows it for any results folder.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.reporting import reported
from bench.reporting.fid_reference_columns import record_reference
from bench.runs import records

NOT_STATED = "not stated"


@dataclass
class RunProtocol:
    """What the finished runs of one dataset were measured under (each a set: runs may differ)."""

    dataset: str
    references: list[str]
    image_counts: list[int]
    resolutions: list[int]
    crops: list[str]
    precisions: list[str]
    runs: int


@dataclass
class PublishedRow:
    ref: str
    method: str
    codebook_size: Any
    fid: float | None
    reasons: list[str] = field(default_factory=list)  # empty: shares the protocol

    @property
    def shares(self) -> bool:
        return not self.reasons


def _crop(protocol: Mapping[str, Any]) -> str:
    pre = protocol.get("preprocessing")
    if isinstance(pre, Mapping):
        return str(pre.get("crop") or NOT_STATED)
    return str(pre) if pre else NOT_STATED


def _fid_images(protocol: Mapping[str, Any]) -> int | None:
    entry = protocol.get("fid")
    n = entry.get("n_images") if isinstance(entry, Mapping) else None
    return int(n) if isinstance(n, (int, float)) and n else None


def run_protocols(recs: Iterable[Mapping[str, Any]]) -> list[RunProtocol]:
    """One RunProtocol per dataset of the finished records that measured rFID."""
    by_dataset: dict[str, list[Mapping[str, Any]]] = {}
    for r in recs:
        if r.get("status") == records.FINISHED and (r.get("metrics") or {}).get("fid") is not None:
            by_dataset.setdefault(str((r.get("config") or {}).get("dataset")), []).append(r)
    out = []
    for dataset, rs in sorted(by_dataset.items()):
        protos = [r.get("protocol") or {} for r in rs]
        out.append(RunProtocol(
            dataset, sorted({record_reference(r) for r in rs}),
            sorted({n for p in protos if (n := _fid_images(p)) is not None}),
            sorted({int(p["resolution"]) for p in protos if isinstance(p.get("resolution"), (int, float))}),
            sorted({_crop(p) for p in protos}),
            sorted({str(p.get("evaluation_precision") or NOT_STATED) for p in protos}), len(rs)))
    return out


def _value(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else v


def compare(run: RunProtocol, published: pd.DataFrame) -> list[PublishedRow]:
    """Every published rFID of the run's dataset, with the reasons it does not share the run's protocol."""
    rows = []
    for _, p in published[published["dataset"] == run.dataset].iterrows():
        if _value(p.get("fid")) is None:
            continue  # no rFID in that row: nothing to compare
        reasons = []
        ref = _value(p.get("fid_reference"))
        if ref is None:
            reasons.append("FID reference not stated")
        elif run.references and ref not in run.references:
            reasons.append(f"other FID reference ({ref}; here {', '.join(run.references)})")
        res = _value(p.get("resolution"))
        if res is None:
            reasons.append("resolution not stated")
        elif run.resolutions and int(res) not in run.resolutions:
            reasons.append(f"other resolution ({int(res)} px; here {', '.join(map(str, run.resolutions))} px)")
        n = _value(p.get("fid_n_images"))
        if n is None:
            reasons.append("image count not stated")
        elif run.image_counts and int(n) not in run.image_counts:
            reasons.append(f"other image count ({int(n):,}; here {', '.join(f'{c:,}' for c in run.image_counts)})")
        rows.append(PublishedRow(str(p["ref"]), str(p["method"]), p.get("codebook_size"), float(p["fid"]), reasons))
    return rows


CAVEAT = ("The data file records neither the crop nor the evaluation precision of a published number: "
          "sharing the reference, resolution and image count is necessary for comparing rFIDs, not sufficient.")


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _list(values: list[Any], fmt: str = "{}") -> str:
    return ", ".join(fmt.format(v) for v in values) if values else NOT_STATED


def section_html(recs: Iterable[Mapping[str, Any]], published: pd.DataFrame | None = None) -> str:
    """The report section: per dataset, the runs' protocol and the published numbers beside it."""
    protocols = run_protocols(recs)
    if not protocols:
        return "<p>No finished run with an rFID: nothing to compare.</p>"
    published = reported.load() if published is None else published
    parts = []
    for run in protocols:
        parts.append(f"<h3>{_esc(run.dataset)} ({run.runs} runs)</h3>")
        parts.append("<table><tbody>" + "".join(
            f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in (
                ("FID reference", _list(run.references)), ("images per rFID", _list(run.image_counts, "{:,}")),
                ("resolution", _list(run.resolutions, "{} px")), ("crop", _list(run.crops)),
                ("evaluation precision", _list(run.precisions)))) + "</tbody></table>")
        if len(run.references) > 1:
            parts.append("<p>These runs used several FID references: the tables give each its own column.</p>")
        rows = compare(run, published)
        if not rows:
            parts.append(f"<p>No published rFID for {_esc(run.dataset)} in reported_results.csv.</p>")
            continue
        same = [r for r in rows if r.shares]
        parts.append("<p>Published numbers that share this protocol: " + (", ".join(
            f"{_esc(r.method)} K={_esc(r.codebook_size)} [{_esc(r.ref)}] rFID {r.fid:g}" for r in same)
            if same else "none") + ".</p>")
        others = [r for r in rows if not r.shares]
        if others:
            parts.append("<table><thead><tr><th>Published</th><th>rFID</th><th>Not comparable because</th></tr>"
                         "</thead><tbody>" + "".join(
                             f"<tr><td>{_esc(r.method)} K={_esc(r.codebook_size)} [{_esc(r.ref)}]</td>"
                             f"<td>{r.fid:g}</td><td>{_esc('; '.join(r.reasons))}</td></tr>" for r in others)
                         + "</tbody></table>")
    parts.append(f"<p>{_esc(CAVEAT)}</p>")
    return "\n".join(parts)
