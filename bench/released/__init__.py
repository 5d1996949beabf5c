"""Released tokenizers from local files, loaded onto the shared autoencoder so that they are
evaluated exactly as trained runs are.

    from bench.released import load_released
    released = load_released("taming", "vqgan_imagenet_f16_16384/ckpts/last.ckpt")   # config found beside it
    xrec, q = released.model(x)                  # x in [-1, 1]; the evaluator's model interface
    released.description                         # source "released", kind, path, sha256, method, options, ...

Kinds (one adapter module each, registered in `ADAPTERS`): `taming` (taming-transformers VQModel
and GumbelVQ), `vqct` (the official VQCT code's checkpoints with its word-prior file), `llamagen`
(LlamaGen's VQ tokenizers), `vqbench` (vqbench's own run folders). Each maps the file's keys onto the
shared autoencoder and a registered quantizer, or refuses with a one-line UserError naming the key
it could not place, the key it misses, or the key whose shape differs. Files are read with
`torch.load(weights_only=True)` or safetensors only (safe_load.py): nothing in them is executed.
docs/checkpoints.md says where each kind is published and which numbers it should be read beside.
"""
from bench.released import llamagen, taming, vqbench, vqct  # noqa: F401 - importing registers the adapters
from bench.released.load import Released, load_released, parse_spec, sha256_file
from bench.released.registry import ADAPTERS, Adapted, Sources, describe, kinds, register_adapter

__all__ = ["ADAPTERS", "Adapted", "Released", "Sources", "describe", "kinds", "load_released", "parse_spec",
           "register_adapter", "sha256_file"]
