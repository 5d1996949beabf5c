"""What the `vqct-official` preset (Preset.official_vqct) adds to a run when it is resolved: VQCT's prior
built from the official union caption corpus and CLIP ViT-B/32's text encoder, both from folders the user
names (--vqct-captions, --vqct-clip); K of `full` = that prior's vocabulary for every method; each
dataset's preprocessing recipe from the official configs; and the training length in epochs converted to
steps from the training split's size. The trainer's side of the recipe (fp32, disc_start counted as
Lightning 1.6 counted it, the discriminator on post-update reconstructions and its zero-gradient steps) is
in the preset's TrainPreset fields. docs/vqct.md compares the preset with the official run field by field.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.core.errors import UserError
from bench.runs.presets import Preset, TrainPreset

CAPTIONS_FLAG, CLIP_FLAG = "--vqct-captions", "--vqct-clip"
RECIPE = "vqct"  # the datasets' name for the official configs' preprocessing (docs/datasets.md)
PRIOR_OPTIONS = ("corpus", "encoder")  # the Options fields of methods that build a word prior (the vqct family)

# The caption folder's layout, in the order of the official corpus (big_code_book_make_clip.py reads the
# CUB captions, then Flowers', then every file of its COCO folder).
CUB_TEXT = Path("cub") / "text_c10"
FLOWERS_TEXT = Path("flowers") / "text_c10"
COCO_TEXT = Path("coco")  # COCO caption JSON files, or annotations/captions_train2014.json below it
COCO_FILE = Path("annotations") / "captions_train2014.json"
LAYOUT = (f"{CUB_TEXT}/ and {FLOWERS_TEXT}/ (one .txt of captions per image, in class folders) and "
          f"{COCO_TEXT}/*.json or {COCO_TEXT / COCO_FILE}")
WHERE_CAPTIONS = ("CUB-200 and Oxford-102 captions are Reed et al.'s text_c10 folders "
                  "(github.com/reedscot/cvpr2016), MS-COCO's are in annotations_trainval2014.zip (cocodataset.org)")
WHERE_CLIP = ("save openai/clip-vit-base-patch32's CLIPTextModelWithProjection and its tokenizer there with "
              "transformers' save_pretrained on a machine that reaches the Hugging Face hub (docs/vqct.md, "
              "\"Using CLIP\")")


@dataclass(frozen=True)
class Adapted:
    """A config's method and dataset options as its preset completes them, and the K that `full` means
    for a method without a vocabulary (None: no K; `full` is then an error for such a method)."""

    method_options: dict[str, Any]
    dataset_options: dict[str, Any]
    shared_vocabulary: Callable[[], int] | None = None


def adapt(cfg: Any, p: Preset, dataset: str) -> Adapted:
    """The RunConfig `cfg`'s options under preset `p` on `dataset` (canonical name). Bad input: one line."""
    given = [flag for flag, value in ((CAPTIONS_FLAG, cfg.vqct_captions), (CLIP_FLAG, cfg.vqct_clip)) if value]
    if not p.official_vqct:
        if given:
            raise UserError(f"{' and '.join(given)}: read only by --preset vqct-official (preset {p.name} takes "
                            f"the prior from --option vqct.corpus=... and vqct.encoder=...); drop "
                            f"{'them' if len(given) > 1 else 'it'} or add --preset vqct-official")
        return Adapted(dict(cfg.method_options), dict(cfg.dataset_options))
    corpus, encoder = corpus_spec(cfg.vqct_captions), encoder_spec(cfg.vqct_clip)
    method_options = dict(cfg.method_options)
    if takes_prior(cfg.method):
        official = {"corpus": corpus, "encoder": encoder}
        for key in PRIOR_OPTIONS:
            # the value the folders give is accepted: the commands the tables print repeat a record's options
            if key in method_options and method_options[key] != official[key]:
                raise UserError(f"--option {cfg.method}.{key}: the vqct-official preset builds the prior from "
                                f"{CAPTIONS_FLAG} and {CLIP_FLAG} ({key} {official[key]}); drop the option (or "
                                f"choose the prior by hand under --preset paper)")
        method_options.update(official)
    dataset_options = dict(cfg.dataset_options)
    if RECIPE in dataset_recipes(dataset):
        dataset_options.setdefault("recipe", RECIPE)
    return Adapted(method_options, dataset_options, functools.partial(vocabulary_size, corpus, encoder))


def corpus_spec(folder: str | None) -> str:
    """The union corpus of the official prior under `folder` (codebooks.corpus spec); a one-line
    UserError naming what is missing and where to get it."""
    if not folder:
        raise UserError(f"the vqct-official preset builds VQCT's prior from the official captions: give "
                        f"{CAPTIONS_FLAG} DIR, a folder holding {LAYOUT}; {WHERE_CAPTIONS}")
    root = Path(folder).expanduser().resolve()
    parts = []
    for part in (CUB_TEXT, FLOWERS_TEXT):
        if not (root / part).is_dir() or not any((root / part).rglob("*.txt")):
            raise UserError(f"{CAPTIONS_FLAG} {folder}: no caption files under {root / part}; expected {LAYOUT}; "
                            f"{WHERE_CAPTIONS}")
        parts.append(f"folder:{root / part}")
    coco = root / COCO_TEXT
    if coco.is_dir() and any(coco.glob("*.json")):
        parts.append(f"coco:{coco}")  # every caption file of the folder, as the official script reads it
    elif (coco / COCO_FILE).is_file():
        parts.append(f"coco:{coco / COCO_FILE}")
    else:
        raise UserError(f"{CAPTIONS_FLAG} {folder}: no COCO caption JSON in {coco} or {coco / COCO_FILE}; "
                        f"expected {LAYOUT}; {WHERE_CAPTIONS}")
    return "union:" + ",".join(parts)


def encoder_spec(folder: str | None) -> str:
    """`clip:FOLDER` (codebooks.encoders spec) for a folder holding a saved CLIP text encoder; a one-line
    UserError naming what is missing and where to get it."""
    if not folder:
        raise UserError(f"the vqct-official preset encodes VQCT's words with CLIP ViT-B/32's text encoder: give "
                        f"{CLIP_FLAG} DIR, a local folder; {WHERE_CLIP}")
    root = Path(folder).expanduser().resolve()
    if not (root / "config.json").is_file():
        raise UserError(f"{CLIP_FLAG} {folder}: no saved model there (no config.json in {root}); {WHERE_CLIP}")
    return f"clip:{root}"


def takes_prior(method: str) -> bool:
    """Whether the method builds a word prior (its Options have the corpus and encoder fields)."""
    import methods

    names = {f.name for f in dataclasses.fields(methods.entry(method).cls.Options)}
    return all(key in names for key in PRIOR_OPTIONS)


def dataset_recipes(dataset: str) -> dict[str, Any]:
    """The preprocessing recipes of a dataset's loader: the RECIPES its module passes to datasets.files.make
    (ade20k, mscoco and cub200 have `vqct`); none for the others."""
    import sys

    import datasets

    module = sys.modules.get(datasets.entry(dataset).factory.__module__)
    return dict(getattr(module, "RECIPES", {}))


def vocabulary_size(corpus: str, encoder: str) -> int:
    """Adjectives + nouns of the official prior (built once per machine, then cached): what
    `--codebook-sizes full` means under vqct-official for a method without words, so it is compared with
    VQCT at VQCT's K."""
    from codebooks import BuildConfig, build_prior

    prior = build_prior(BuildConfig(corpus=corpus, encoder=encoder))  # default rules = the official filter
    return prior.n_adj + prior.n_noun


def steps_per_epoch(n_images: int, train: TrainPreset) -> int:
    """Optimizer steps of one epoch as the official loop counted them: Lightning's DDP sampler gives each of
    the GPUs ceil(n / GPUs) images (it pads the last shard), and each GPU's DataLoader keeps its last, partial
    batch (drop_last=False). The GPUs are the global batch over the micro-batch (2 x 8 in the official run)."""
    per_gpu = train.micro_batch or train.batch_size
    shard = -(-n_images // (train.batch_size // per_gpu))  # ceil division
    return -(-shard // per_gpu)


def length(train: TrainPreset, n_images: int, steps_given: int | None) -> TrainPreset:
    """`train` with `steps_per_epoch` from the training split's `n_images` and `steps` = epochs x that, or
    `steps_given` (--steps), which replaces the length but leaves the conversion recorded."""
    if n_images < 1:
        raise UserError("the training split is empty, so an epoch has no steps")
    per_epoch = steps_per_epoch(n_images, train)
    steps = int(steps_given) if steps_given is not None else train.epochs * per_epoch
    return dataclasses.replace(train, steps=steps, steps_per_epoch=per_epoch)


@functools.lru_cache(maxsize=64)
def _train_images(dataset: str, resolution: int, root: str | None, options: tuple) -> int:
    import datasets

    return len(datasets.create(dataset, "train", resolution, root, **dict(options)))


def train_images(dataset: str, resolution: int, root: str | None, options: dict[str, Any]) -> int:
    """Images in the training split (listed, not decoded; memoised in this process: resolving a grid
    asks once per config)."""
    return _train_images(dataset, resolution, root, tuple(sorted(options.items())))
