"""The FID reference set, named and selectable (`--fid-reference`): what rFID's reconstructions are
compared against.

- `val` (the default, and the only reference before the option existed): the originals of the
  evaluated images. rFID, KID and rFID-infinity pair each reconstruction with its original.
- `train` or `train:N`: N images of the dataset's training split (default DEFAULT_TRAIN_IMAGES, all
  of them when the split is smaller), drawn by the seeded permutation the generation reference uses
  (bench.generation.tokens.reference_images, seed TRAIN_SEED), their statistics cached through
  fid_reference's keyed cache like the val originals'. MAR's tokenizer reads rFID 1.22 against train
  and 0.53 against val: the reference matters.
- `stats:PATH`: precomputed statistics, in pytorch-fid's `.npz` layout (`mu`, `sigma`; what its
  `--save-stats` writes) or in ADM's reference-batch layout (openai/guided-diffusion
  evaluations/evaluator.py: `arr_0` the images, `mu`/`sigma` of pool_3, `mu_s`/`sigma_s` of the
  spatial mixed_6/conv features; the VIRTUAL_imagenet256_labeled.npz LlamaGen and MaskGIT compare
  against). Only `mu`/`sigma` (pool3, 2048-d) are read: the evaluator itself reads exactly these
  when present. There are no reference features, so KID is unavailable, and rFID-infinity subsamples
  the reconstructions only (the reference fixed, as gFID-infinity does).

The choice is recorded as protocol["fid"]["reference"], a short label (`label`): `val`, `train:N`
(N the images used), or `stats:<file name>@<sha1 prefix>`. It changes the numbers, so any choice but
`val` is part of the run id (`run_id_value`); `val` adds nothing, so every run id from before the
option stays valid.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.hashing import file_digest

FLAG = "--fid-reference"
VAL, TRAIN, STATS = "val", "train", "stats"
DEFAULT = VAL
DEFAULT_TRAIN_IMAGES = 10_000  # ADM's reference batches hold 10,000 images; fewer when the split is smaller
TRAIN_SEED = 0  # which training images `train:N` draws (fixed: every run of a dataset gets the same ones)
SHA1_PREFIX = 10
FEATURE_DIM = 2048  # Inception pool3 (fid.FEATURE_DIM; not imported: this module loads no torch)
PYTORCH_FID, ADM = "pytorch-fid (mu, sigma)", "ADM reference batch (arr_0, mu, sigma, mu_s, sigma_s)"
USAGE = f"{FLAG} val, train, train:N or stats:PATH (a pytorch-fid or ADM .npz with mu and sigma)"


@dataclass(frozen=True)
class ReferenceChoice:
    """A parsed --fid-reference: kind, N for train, and for stats the file and its sha1."""

    kind: str
    n_images: int | None = None  # train: the images asked for
    path: Path | None = None  # stats
    sha1: str | None = None  # stats

    @property
    def label(self) -> str:
        """protocol["fid"]["reference"] before the run knows how many training images exist."""
        if self.kind == TRAIN:
            return f"{TRAIN}:{self.n_images}"
        if self.kind == STATS:
            assert self.path is not None and self.sha1 is not None
            return f"{STATS}:{self.path.name}@{self.sha1[:SHA1_PREFIX]}"
        return VAL

    @property
    def run_id_value(self) -> str | None:
        """What enters the run id: None for val (ids from before the option are unchanged)."""
        return None if self.kind == VAL else self.label

    @property
    def fixed(self) -> bool:
        """Whether the reference is a fixed set of statistics rather than the evaluated originals."""
        return self.kind != VAL


def parse(text: str | None) -> ReferenceChoice:
    """A --fid-reference value, checked: UserError (one line naming the problem and the fix) for an
    unknown kind, a bad N, or a stats file that is missing, unreadable, or holds no usable mu/sigma."""
    text = (text or DEFAULT).strip()
    kind, sep, arg = text.partition(":")
    if kind == VAL and not sep:
        return ReferenceChoice(VAL)
    if kind == TRAIN:
        if not sep:
            return ReferenceChoice(TRAIN, DEFAULT_TRAIN_IMAGES)
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 2:
            raise UserError(f"{FLAG} {text}: N must be an integer >= 2 (FID needs two images), e.g. train:5000")
        return ReferenceChoice(TRAIN, n)
    if kind == STATS and arg:
        return _stats_choice(Path(arg).expanduser())
    raise UserError(f"{FLAG} {text!r}: not a reference; give {USAGE}")


def _stats_choice(path: Path) -> ReferenceChoice:
    """A checked stats: choice. Every config of a grid parses the same file: it is read and hashed once
    per process and file version (an ADM reference batch is about 1.5 GB)."""
    try:
        st = path.stat()
        version = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        version = (str(path), 0, -1)
    if version not in _CHECKED:
        read_stats(path)  # refuses a bad file now, before any run starts
        _CHECKED[version] = ReferenceChoice(STATS, path=path.resolve(), sha1=file_digest(path))
    return _CHECKED[version]


_CHECKED: dict[tuple[str, int, int], ReferenceChoice] = {}


def read_stats(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(mu, sigma, layout) of a statistics file; UserError naming what is wrong and the fix."""
    where = f"{FLAG} stats:{path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file; give the path of a pytorch-fid or ADM .npz statistics file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if not {"mu", "sigma"} <= names:
                hint = (" (ADM's sample batches hold only arr_0: use a reference batch, which also holds mu and "
                        "sigma)" if "arr_0" in names else "")
                raise UserError(f"{where}: holds {sorted(names)[:6]}, not mu and sigma: neither pytorch-fid's "
                                f"layout (mu, sigma) nor ADM's reference batch (arr_0, mu, sigma, ...){hint}; write "
                                "one with `python -m pytorch_fid --save-stats IMAGES OUT.npz`")
            mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{where}: not a readable .npz ({type(exc).__name__}: {exc}); give a pytorch-fid or ADM "
                        ".npz statistics file") from None
    if mu.shape != (FEATURE_DIM,) or sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise UserError(f"{where}: mu {mu.shape} and sigma {sigma.shape}, expected ({FEATURE_DIM},) and "
                        f"({FEATURE_DIM}, {FEATURE_DIM}): Inception pool3 statistics (pytorch-fid --dims 2048)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"{where}: mu or sigma holds NaN or infinity; recompute the statistics")
    layout = ADM if "arr_0" in names or "mu_s" in names else PYTORCH_FID
    return mu, sigma, layout
