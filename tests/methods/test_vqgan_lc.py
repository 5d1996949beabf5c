"""vqgan-lc by its definition (vector-quantize-pytorch has no VQGAN-LC)."""
import pytest
import torch

import methods
from bench.core.errors import UserError
from methods.vqgan_lc import feature_bank
from tests.methods.checks import assert_training_reduces_reconstruction_loss, latent


def test_frozen_codebook_is_kmeans_of_the_prior_vectors_and_independent_of_the_run_seed():
    bank = feature_bank("prior")
    assert bank.shape == (3544, 384)  # the VQCT prior's adjectives and nouns, all-MiniLM-L6-v2
    torch.manual_seed(0)
    a = methods.create("vqgan-lc", 64, 8)
    torch.manual_seed(1)
    b = methods.create("vqgan-lc", 64, 8)
    assert torch.equal(a.frozen_codebook, b.frozen_codebook)
    # Building the codebook draws nothing from the global generator: the projector is initialised as
    # if it were built alone.
    torch.manual_seed(0)
    alone = torch.nn.Linear(384, 8)
    torch.nn.init.normal_(alone.weight, std=8**-0.5)
    assert torch.equal(a.projector.weight, alone.weight) and torch.equal(a.projector.bias, alone.bias)
    # Each centre is the mean of the bank vectors nearest to it (a fixed point of Lloyd's iteration, up
    # to the last move).
    assign = torch.cdist(bank, a.frozen_codebook).argmin(1)
    means = torch.stack([bank[assign == k].mean(0) for k in range(64)])
    assert (means - a.frozen_codebook).norm(dim=1).median() < 1e-2


def test_only_the_projector_learns():
    q = methods.create("vqgan-lc", 32, 8).train()
    assert [n for n, _ in q.named_parameters()] == ["projector.weight", "projector.bias"]
    z = latent(q).requires_grad_(True)
    out = q(z)
    (out.z_q.square().sum() + out.loss).backward()
    assert q.projector.weight.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
    torch.testing.assert_close(out.loss, out.logs["commitment"] + 0.33 * out.logs["codebook"])


def test_codes_are_named_by_their_nearest_word():
    q = methods.create("vqgan-lc", 32, 8)
    labels = q.code_labels()
    assert labels["groups"] == {} and len(labels["words"]) == 32 and all(isinstance(w, str) for w in labels["words"])


def test_bad_sizes_and_sources_fail_fast():
    with pytest.raises(UserError, match="has 3544 feature vectors, fewer than K=4096"):
        methods.create("vqgan-lc", 4096, 8)
    with pytest.raises(UserError, match="feature_source"):
        methods.create("vqgan-lc", 64, 8, feature_source="clip")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    result = assert_training_reduces_reconstruction_loss("vqgan-lc", k=64, steps=60)
    assert len(result["indices"].unique()) > 8
