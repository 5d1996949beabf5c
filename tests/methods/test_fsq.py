import pytest
import torch

import methods
from bench.core.errors import UserError
from methods.fsq import PAPER_LEVELS, auto_levels
from tests.methods.checks import assert_checkpoint_restores_state, assert_training_reduces_reconstruction_loss, latent


@pytest.mark.parametrize("k, levels", sorted(PAPER_LEVELS.items()))
def test_paper_table_sizes_get_the_paper_levels(k, levels):
    q = methods.create("fsq", k, 32)
    assert q.levels == levels and q.latent_channels == len(levels)


def test_the_automatic_rule_alone_reproduces_the_paper_table():
    # The documented fallback rule (fewest levels in [3, 8], most balanced) gives Table 1 by itself.
    from methods import fsq

    for k, levels in PAPER_LEVELS.items():
        options = [f for f in fsq._factorisations(k, fsq.MAX_LEVEL) if f]
        best = min(options, key=lambda f: (len(f), -min(f), tuple(-x for x in f)))
        assert best == levels, k


@pytest.mark.parametrize("k, levels", [(64, (8, 8)), (256, (8, 8, 4)), (512, (8, 8, 8)), (100, (5, 5, 4))])
def test_other_sizes(k, levels):
    assert auto_levels(k) == levels


@pytest.mark.parametrize("k, near", [(11, "8, 9, 12, 15"), (1, "3, 4"), (2, "3, 4"), (1025, "1008, 1024, 1029, 1050")])
def test_impossible_k_names_the_nearest_valid_sizes(k, near):
    with pytest.raises(UserError, match=f"nearest valid sizes: {near} "):
        methods.create("fsq", k, 8)


def test_explicit_levels_must_multiply_to_k():
    assert methods.create("fsq", 60, 8, levels=(5, 4, 3)).levels == (5, 4, 3)
    with pytest.raises(UserError, match="give 60 codes, not the codebook size 64"):
        methods.create("fsq", 64, 8, levels=(5, 4, 3))
    assert methods.create("fsq", 64, 8, levels="8,8").levels == (8, 8)  # the command line's text form
    with pytest.raises(UserError, match="must be a tuple of integers or None"):
        methods.create("fsq", 64, 8, levels="8,eight")


def test_each_channel_takes_exactly_its_levels():
    q = methods.create("fsq", 1000, 8).eval()  # 8, 5, 5, 5
    z = torch.linspace(-6, 6, 2001).view(1, 1, 1, -1).expand(1, 4, 1, -1).contiguous()
    out = q(z)
    assert [len(out.z_q[0, c].unique()) for c in range(4)] == [8, 5, 5, 5]
    assert int(out.indices.min()) == 0 and int(out.indices.max()) == 999


def test_straight_through_rounding_gradient():
    q = methods.create("fsq", 64, 8).train()
    z = latent(q).requires_grad_(True)
    q(z).z_q.sum().backward()
    assert (z.grad > 0).all()  # d tanh / dz > 0 everywhere: rounding passes the gradient through


def test_checkpoint_restores_state():
    assert_checkpoint_restores_state("fsq")


@pytest.mark.slow
def test_training_reduces_reconstruction_loss():
    assert_training_reduces_reconstruction_loss("fsq")


def test_a_level_below_two_is_refused_once_by_the_declared_range():
    """levels_for no longer re-checks the range FSQOptions.levels declares; the user sees one line."""
    with pytest.raises(UserError, match=r"^method 'fsq' option 'levels': each item must be >= 2, got \(1, 64\)$") as err:
        methods.create("fsq", 64, 8, levels=(1, 64))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"^fsq: levels must be a sequence of integers such as \(8, 5, 5, 5\), got \(\)$"):
        methods.create("fsq", 1, 8, levels=())
