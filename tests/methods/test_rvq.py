"""rvq by its definition (parity with vector-quantize-pytorch's ResidualVQ is in test_references.py)."""
import pytest
import torch

import methods
from bench.core.errors import UserError
from tests.methods.checks import assert_training_reduces_reconstruction_loss, latent


def _codes(q, indices):
    """Per level codes (L, B, C, H, W) of indices (B, H, W, L)."""
    out = []
    for level in range(q.levels):
        book = 0 if q.options.shared_codebook else level
        out.append(q.embed[book][indices[..., level] - book * q.level_size].permute(0, 3, 1, 2))
    return torch.stack(out)


def test_each_level_quantises_the_residual_of_the_previous():
    torch.manual_seed(0)
    q = methods.create("rvq", 16, 4, levels=3).eval()
    torch.nn.init.normal_(q.embed, std=0.5)
    z = latent(q, seed=1)
    out = q(z)
    codes = _codes(q, out.indices)
    residual = z
    for level in range(3):  # the code chosen at each level is the nearest to what is left
        book = q.embed[level]
        d = ((residual.permute(0, 2, 3, 1).unsqueeze(-2) - book) ** 2).sum(-1)
        assert torch.equal(d.argmin(-1) + level * 16, out.indices[..., level])
        residual = residual - codes[level]
    torch.testing.assert_close(out.z_q, codes.sum(0), rtol=0, atol=1e-6)
    # More levels leave less: the error after all levels is below the error after the first.
    assert (z - out.z_q).pow(2).mean() < (z - codes[0]).pow(2).mean()


def test_separate_codebooks_offset_indices_and_name_their_groups():
    q = methods.create("rvq", 16, 4, levels=3)
    assert q.codebook_size == 48
    assert q.code_groups == {"level0": (0, 16), "level1": (16, 32), "level2": (32, 48)}
    idx = q(latent(q)).indices
    for level in range(3):
        assert int(idx[..., level].min()) >= 16 * level and int(idx[..., level].max()) < 16 * (level + 1)
    shared = methods.create("rvq", 16, 4, levels=3, shared_codebook=True)
    assert shared.codebook_size == 16 and shared.code_groups == {} and tuple(shared.embed.shape) == (1, 16, 4)


def test_quantize_dropout_keeps_a_prefix_of_levels_per_image():
    torch.manual_seed(0)
    q = methods.create("rvq", 16, 4, levels=4, quantize_dropout=True).train()
    torch.nn.init.normal_(q.embed, std=0.5)
    q.embed_avg.copy_(q.embed)
    z = latent(q, b=64)
    frozen = {k: v.clone() for k, v in q.state_dict().items()}
    torch.manual_seed(3)
    out = q(z)
    torch.manual_seed(3)
    kept = torch.randint(1, 5, (64,))  # the draw the forward pass made
    codes = torch.stack([frozen["embed"][l][out.indices[..., l] - 16 * l].permute(0, 3, 1, 2) for l in range(4)])
    for b in range(64):
        torch.testing.assert_close(out.z_q[b], codes[: int(kept[b])].sum(0)[b], rtol=0, atol=1e-6)
    assert len(kept.unique()) == 4
    # In eval every level is used.
    q.eval()
    with torch.no_grad():
        torch.testing.assert_close(q(z).z_q, q.decode_indices(q(z).indices), rtol=0, atol=0)


def test_dropped_levels_do_not_update_their_codebook():
    torch.manual_seed(0)
    q = methods.create("rvq", 16, 4, levels=2, quantize_dropout=True).train()
    before = q.embed.clone()
    z = latent(q, b=2)
    # Find a seed under which both images keep one level only.
    for seed in range(100):
        torch.manual_seed(seed)
        if bool((torch.randint(1, 3, (2,)) == 1).all()):
            break
    torch.manual_seed(seed)
    q(z)
    assert torch.equal(q.embed[1], before[1])
    assert not torch.equal(q.embed[0], before[0])


def test_bad_options_fail_fast():
    with pytest.raises(UserError, match="levels"):
        methods.create("rvq", 16, 4, levels=0)
    with pytest.raises(UserError, match="quantize_dropout_min_levels"):
        methods.create("rvq", 16, 4, levels=2, quantize_dropout_min_levels=3)


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("rvq", k=64, steps=60, kmeans_init=True)
