"""A small randomly initialised CLIP text tower and a letter-level BPE tokenizer, saved to a folder the way
transformers saves a hub model: the stand-in for CLIP ViT-B/32's text encoder in every test that builds a
CLIP prior offline (no registry ships CLIP weights)."""
import json
import string
from pathlib import Path

import torch

PROJECTION_DIM = 24  # the vectors' width (ViT-B/32's is 512)


def save_tiny_clip(folder: Path):
    """Write the model and its tokenizer into `folder` (created) and return the model."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {}
    for t in ["!", '"'] + list(string.ascii_lowercase) + [c + "</w>" for c in string.ascii_lowercase] + \
             ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(t, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=PROJECTION_DIM,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    model = CLIPTextModelWithProjection(cfg).eval()
    model.save_pretrained(folder)
    return model
