"""Official VQCT checkpoints: the exact key layout of the official code (taming fork, GCNConv keys),
its prior pickle, reconstruction equal to the official forward, global indices that decode."""
from __future__ import annotations

import pickle

import pytest
import torch

import taming.modules.diffusionmodules.model  # noqa: E402,F401 - a test requirement (requirements/test.txt): fail, never skip, when absent
import torch_geometric.nn  # noqa: E402,F401 - a test requirement (requirements/test.txt): fail, never skip, when absent

from bench.core.errors import UserError  # noqa: E402
from bench.released import load_released  # noqa: E402
from bench.released.vqct_prior import PRIOR_FILE  # noqa: E402
from tests.bench.released import oracles  # noqa: E402
from tests.bench.released.test_safe_load import Hostile  # noqa: E402

EMBED, TOPK = 8, 2
ATOL = 1e-5


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official VQCT run's folder: logs/<run>/checkpoints/last.ckpt, configs/*-project.yaml, and the
    repository's codebook_priors/ prior two folders up."""
    root = tmp_path_factory.mktemp("vqct")
    prior = oracles.vqct_prior()
    (root / "codebook_priors").mkdir()
    with (root / "codebook_priors" / PRIOR_FILE).open("wb") as f:
        pickle.dump(prior, f, protocol=pickle.HIGHEST_PROTOCOL)  # as big_code_book_make_clip.py writes it
    vectors, edges, n_adj = oracles.official_vqct_inputs(prior)
    dd = oracles.ddconfig(ch=32, ch_mult=(1, 2), attn=(8,), z=32)
    torch.manual_seed(0)
    model = oracles.OfficialVQCT(dd, EMBED, oracles.OfficialVQCTQuantizer(vectors, edges, n_adj, EMBED, TOPK)).eval()
    config = {"model": {"target": "taming.models.vqct.VQModel",
                        "params": {"embed_dim": EMBED, "n_embed": 512, "topk": TOPK, "ddconfig": dd,
                                   "lossconfig": oracles.LOSS_CONFIG}}}
    ckpt = oracles.save_lightning(root / "logs" / "run" / "checkpoints" / "last.ckpt", model.state_dict())
    # main.py writes a project config per start (the newest applies) and the trainer's settings beside them
    oracles.write_yaml(root / "logs" / "run" / "configs" / "2023-project.yaml", {"model": {"params": {}}})
    oracles.write_yaml(root / "logs" / "run" / "configs" / "2024-project.yaml", config)
    oracles.write_yaml(root / "logs" / "run" / "configs" / "2024-lightning.yaml", {"lightning": {"trainer": {}}})
    return root, model, ckpt, n_adj, len(vectors)


def test_reconstruction_and_indices_equal_the_official_forward(official):
    _, model, ckpt, n_adj, k = official
    released = load_released("vqct", ckpt)  # config in configs/ above, prior in codebook_priors/ further up
    x = oracles.images(3, 16)
    with torch.no_grad():
        ours, q = released.model(x)
        theirs, (adj_idx, noun_idx) = model(x)
        assert torch.allclose(released.model.quantizer.codebook(), model.quantize.codebook(), atol=1e-6)
        from_indices = released.model.decode_indices(q.indices)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours - theirs).abs().max()
    flat = q.indices.reshape(-1, TOPK + 1)
    assert torch.equal(flat[:, :TOPK], adj_idx)  # adjectives come first: same indices
    assert torch.equal(flat[:, -1], noun_idx[:, 0] + n_adj)  # nouns are global here, local in the official code
    assert torch.allclose(from_indices, ours, atol=ATOL)
    d = released.description
    assert (d["method"], d["codebook_size"], d["embed_dim"]) == ("vqct", k, EMBED)
    assert d["method_options"]["top_k"] == TOPK and d["method_options"]["edge_weight"] == "count"
    assert d["details"]["prior"] == {"n_adj": 5, "n_noun": 5, "edge_entries": 18, "vector_dim": 12}
    assert d["files"]["prior"]["path"].endswith(f"codebook_priors/{PRIOR_FILE}")
    assert d["files"]["config"]["path"].endswith("configs/2024-project.yaml")
    assert "quantize.code_book_mapping." in d["ignored_keys"] and "loss." in d["ignored_keys"]
    assert released.model.quantizer.words[:5] == ["red", "big", "light", "small", "shiny"]


def test_the_graph_is_the_official_one(official):
    """'light' as an adjective has no edges (the one word -> index dict maps it to its noun node), the
    ('light', 'light') occurrence is a self loop that GCNConv replaces by its own, ('red', 'car')
    counts three times; the codebook above already matches GCNConv on this list."""
    _, _, ckpt, n_adj, _ = official
    q = load_released("vqct", ckpt).model.quantizer
    pairs = {tuple(p): int(w) for p, w in zip(q.edge_index.t().tolist(), q.edge_weight.tolist())}
    light_adj, car = q.words.index("light"), q.words.index("car")
    assert light_adj < n_adj and all(light_adj not in p for p in pairs)
    assert pairs[(q.words.index("red"), car)] == 3 and all(a != b for a, b in pairs)


def test_missing_gcn_key_is_named(tmp_path, official):
    root, model, _, _, _ = official
    sd = dict(model.state_dict())
    del sd["quantize.gcn.conv2.lin.weight"]
    ckpt = oracles.save_lightning(tmp_path / "last.ckpt", sd)
    with pytest.raises(UserError, match=r"missing key 'quantize.gcn.conv2.lin.weight' \(the configuration needs it "
                                        r"for quantizer.transfer.layer2.lin.weight\)"):
        load_released("vqct", ckpt, root / "logs" / "run" / "configs" / "2024-project.yaml",
                      root / "codebook_priors" / PRIOR_FILE)


def test_a_prior_of_another_vector_size_is_named_by_the_key_it_breaks(tmp_path, official):
    _, _, ckpt, _, _ = official
    with (tmp_path / PRIOR_FILE).open("wb") as f:
        pickle.dump(oracles.vqct_prior(dim=16), f)
    with pytest.raises(UserError, match=r"key 'quantize.gcn.conv1.lin.weight' has shape \(8, 12\), the configuration "
                                        r"needs \(8, 16\)"):
        load_released("vqct", ckpt, prior_path=tmp_path / PRIOR_FILE)


def test_hostile_prior_runs_nothing(tmp_path, official):
    _, _, ckpt, _, _ = official
    marker = tmp_path / "marker.txt"
    prior = oracles.vqct_prior()
    prior["adj_code_book_num"] = Hostile(marker)
    with (tmp_path / PRIOR_FILE).open("wb") as f:
        pickle.dump(prior, f)
    with pytest.raises(UserError, match=r"refused prior .*test_safe_load.write_marker.*arbitrary code"):
        load_released("vqct", ckpt, prior_path=tmp_path / PRIOR_FILE)
    assert not marker.exists()


def test_without_the_prior_the_error_says_where_it_comes_from(tmp_path, official):
    root, model, _, _, _ = official
    ckpt = oracles.save_lightning(tmp_path / "last.ckpt", model.state_dict())
    config = tmp_path / "model.yaml"
    config.write_text((root / "logs" / "run" / "configs" / "2024-project.yaml").read_text())
    with pytest.raises(UserError, match=rf"needs the official word prior {PRIOR_FILE} .*--prior PATH"):
        load_released("vqct", ckpt, config)
