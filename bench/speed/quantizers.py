"""Quantizer rows: each method's forward + backward time and peak memory per shape, beside the bare
code search, the distance-matmul lower bound, its peer (bench.speed.peers) and the reference method.

The harness reads what it needs from the quantizer: `bounded_memory` decides whether a method runs
at the stress shape, `latent_channels` whether it also gets a row at the reference's latent width.
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

import methods
from bench.core.errors import UserError
from bench.speed.memory import peak_mb
from bench.speed.peers import REFERENCE, TIMED_OPTIONS, Peer, paired_with_reference, peer_fits, peers
from bench.speed.shapes import Shape
from bench.speed.timing import median_ms, paired_median_ms
from methods.base import nearest_codes, search_block_rows

RATIO_TO_REFERENCE = f"ratio_to_{REFERENCE}"
COLUMNS = ["method", "K", "B", "H", "W", "D", "ms", "peak_mb", "peer", "peer_ms", "ratio_to_peer", "lower_bound_ms",
           "ratio_to_bound", RATIO_TO_REFERENCE, "note"]
SEARCH_ROW = "nearest-code-search"

Run = Callable[[], None]


def matmul_lower_bound_ms(shape: Shape, device: torch.device, reps: int) -> float:
    """The distance matrix multiplication alone, x (N, D) @ codebook.T (D, K), into a reused buffer:
    the fastest of several row-block sizes (one block of all rows where it fits in 512 MiB; a full
    65,536 x 65,536 product does not), so that no choice of the search's own blocks makes the bound
    easier to meet."""
    x = torch.randn(shape.n, shape.D, device=device)
    e = torch.randn(shape.K, shape.D, device=device)
    cap = max(1, (1 << 27) // shape.K)
    candidates = {min(shape.n, r) for r in (search_block_rows(shape.n, shape.K, device), 128, 512, 2048, cap) if r <= cap}
    best = float("inf")
    for rows in sorted(candidates):
        buf = torch.empty(rows, shape.K, device=device)

        def run(rows: int = rows, buf: torch.Tensor = buf) -> None:
            for s in range(0, shape.n, rows):
                chunk = x[s : s + rows]
                torch.mm(chunk, e.t(), out=buf[: len(chunk)])

        best = min(best, median_ms(run, device, warmup=1, reps=reps))
        del buf
    return best


def fwd_bwd(module: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> Run:
    """A closure doing one forward + backward of `module` on the latent `z`, gradients cleared first."""
    def run() -> None:
        module.zero_grad(set_to_none=True)
        z.grad = None
        forward(z).backward()
    return run


def quantizer_forward(q: methods.Quantizer) -> Callable[[torch.Tensor], torch.Tensor]:
    """What training backpropagates through a quantizer: its output and its own loss."""
    def f(z: torch.Tensor) -> torch.Tensor:
        out = q(z)
        return out.z_q.sum() + out.loss
    return f


def _timed(name: str, shape: Shape, device: torch.device, dim: int | None = None) -> tuple[methods.Quantizer, Run]:
    """(quantizer, its forward+backward closure) at a shape, seeded."""
    torch.manual_seed(0)
    q = methods.create(name, shape.K, dim or shape.D, **TIMED_OPTIONS.get(name, {})).to(device).train()
    z = torch.randn(shape.B, q.latent_channels, shape.H, shape.W, device=device, requires_grad=True)
    return q, fwd_bwd(q, quantizer_forward(q), z)


def quantizer_rows(names: list[str], shapes: list[Shape], device: torch.device, reps: int,
                   with_peers: bool = True, stress: Shape | None = None) -> list[dict[str, Any]]:
    """One row per (method, shape), plus the bare search; `stress` adds that shape for the methods
    that declare `bounded_memory` (the others hold an (N, K) matrix by design: 16 GiB there)."""
    found = peers() if with_peers else {}
    names = sorted(names, key=lambda n: n != REFERENCE)  # the reference first: every row gets its ratio to it
    rows = []
    for shape in shapes + ([stress] if stress else []):
        is_stress = shape is stress
        bound = matmul_lower_bound_ms(shape, device, reps)
        rows.append(search_row(shape, device, reps, bound))
        reference = None
        for name in names:
            if is_stress and not methods.entry(name).cls.bounded_memory:
                continue
            try:
                q, run = _timed(name, shape, device)
            except UserError as exc:
                rows.append(_row(name, shape, None, None, bound, note=f"not run: {exc}"))
                continue
            row = _measure(name, q, run, shape, device, reps, bound, found, reference)
            rows.append(row)
            if name == REFERENCE:
                reference = (run, row["ms"])
            elif reference is not None:
                rows += _equal_latent_rows(name, q, shape, device, reps, bound, found, reference)
            del q, run
            gc.collect()
    return rows


def search_row(shape: Shape, device: torch.device, reps: int, bound: float) -> dict[str, Any]:
    """The bare code search (methods.base.nearest_codes) at a shape: its time, peak memory and its
    ratio to `bound`, the distance matmul's time (matmul_lower_bound_ms)."""
    x = torch.randn(shape.n, shape.D, device=device)
    e = torch.randn(shape.K, shape.D, device=device)

    def search() -> None:
        nearest_codes(x, e)

    return _row(SEARCH_ROW, shape, median_ms(search, device, warmup=1, reps=reps), peak_mb(search, device), bound)


def _equal_latent_rows(name: str, q: methods.Quantizer, shape: Shape, device: torch.device, reps: int, bound: float,
                       found: dict[str, Peer], reference: tuple[Run, float]) -> list[dict[str, Any]]:
    """A quantizer whose latent is several codes wide (latent_channels = c x D: VQCT's adjective and
    noun halves) again at dim D/c, so that its latent has the reference's width: what a user swapping
    quantizers under one encoder with fixed output channels would see."""
    codes, rest = divmod(q.latent_channels, shape.D)
    if codes < 2 or rest or shape.D % codes:
        return []
    try:
        narrow, run = _timed(name, shape, device, dim=shape.D // codes)
    except UserError:
        return []
    if narrow.latent_channels != shape.D:
        return []
    row = _measure(name, narrow, run, shape, device, reps, bound, found, reference)
    return [dict(row, method=f"{name} (dim D/{codes})", note=f"latent of D channels, as {REFERENCE}'s")]


def _measure(name: str, q: methods.Quantizer, run: Run, shape: Shape, device: torch.device, reps: int,
             bound: float, found: dict[str, Peer], reference: tuple[Run, float] | None) -> dict[str, Any]:
    """Our time and its ratios. Timed alternately with the peer where one exists, and with the
    reference for the methods paired with it: those are the ratios the targets are about.
    `reference`: its closure and its time at this shape."""
    peer_ms = ref_ms = None
    note = ""
    peer = found.get(name)
    if peer is not None and peer_fits(shape):
        torch.manual_seed(0)
        module = peer.make(shape, q).to(device).train()
        # The same latent as ours: the peer is built for the width our quantizer asks for.
        zp = torch.randn(shape.B, q.latent_channels, shape.H, shape.W, device=device, requires_grad=True)
        ms, peer_ms = paired_median_ms(run, fwd_bwd(module, peer.forward(module), zp), device, reps=reps)
    elif reference is not None and paired_with_reference(name):
        ms, ref_ms = paired_median_ms(run, reference[0], device, reps=reps)
    else:
        ms = median_ms(run, device, reps=reps)
        if peer is not None:
            note = "peer not run: it materialises the full N x K distance matrix (> 2 GiB)"
    row = _row(name, shape, ms, peak_mb(run, device), bound, note=note)
    if peer_ms is not None:
        row.update(peer=peer.name, peer_ms=peer_ms, ratio_to_peer=ms / peer_ms)
    if reference is not None and name != REFERENCE:
        row[RATIO_TO_REFERENCE] = ms / (ref_ms or reference[1])
    return row


def _row(method: str, s: Shape, ms: float | None, peak: float | None, bound: float, note: str = "") -> dict[str, Any]:
    return {"method": method, "K": s.K, "B": s.B, "H": s.H, "W": s.W, "D": s.D, "ms": ms, "peak_mb": peak,
            "peer": "", "peer_ms": None, "ratio_to_peer": None, "lower_bound_ms": bound,
            "ratio_to_bound": None if ms is None else ms / bound,
            RATIO_TO_REFERENCE: 1.0 if method == REFERENCE else None, "note": note}
