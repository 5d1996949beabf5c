"""sf-diveq: training quantises onto the dithered polyline of consecutive codewords (checked against brute
force over the segments), gradients reach both ends of the segment, the official warm-up initialises
the codebook from chunk means, and eval mode quantises to codewords that decode exactly. No peer:
vector-quantize-pytorch has no space-filling variant."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _polyline_distance(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Brute force in float64: each row's distance to the nearest point of the K - 1 segments."""
    x, a, b = x.double()[:, None], codes.double()[:-1][None], codes.double()[1:][None]
    t = (((x - a) * (b - a)).sum(-1) / (b - a).square().sum(-1)).clamp(0, 1)
    return (x - (a + t[..., None] * (b - a))).norm(dim=-1).min(1).values


def test_training_takes_the_nearest_dithered_segment_point_by_brute_force():
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 12, 3, skip_iters=0, noise_variance=0.0).train()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(12, 3))
    z = torch.randn(2, 3, 4, 4)
    torch.manual_seed(5)
    lam = torch.rand(11, 1)  # the dither the forward pass draws first
    torch.manual_seed(5)
    out = q(z)
    c = q.codebook.detach().double()
    points = (1 - lam.double()) * c[:-1] + lam.double() * c[1:]
    segment = torch.cdist(_rows(z).double(), points).argmin(1)
    torch.testing.assert_close(_rows(out.z_q).double(), points[segment], rtol=0, atol=1e-5)
    nearer_end = segment + (lam[segment, 0] >= 0.5).long()
    assert torch.equal(out.indices.reshape(-1), nearer_end) and out.loss == 0


def test_training_points_lie_on_the_polyline_and_approach_its_nearest_point():
    """Every z_q is on the curve, never nearer to z than the curve's nearest point; over many dithers the
    best comes within 0.02 of that distance (codes of unit scale; the nearest codeword alone is up to
    0.83 farther for these rows): the dithered search samples each segment."""
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 8, 2, skip_iters=0, noise_variance=0.0).train()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(8, 2))
    z = torch.randn(1, 2, 3, 3) * 1.5
    rows, codes = _rows(z), q.codebook.detach()
    nearest = _polyline_distance(rows, codes)
    best = torch.full_like(nearest, float("inf"))
    for _ in range(300):
        zq = _rows(q(z).z_q.detach())
        assert _polyline_distance(zq, codes).max() < 1e-5
        dist = (zq - rows).double().norm(dim=1)
        assert (dist >= nearest - 1e-5).all()
        best = torch.minimum(best, dist)
    assert (best - nearest).max() <= 0.02


def test_gradients_reach_the_input_and_both_ends_of_the_chosen_segment():
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 10, 3, skip_iters=0, noise_variance=0.0).train()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(10, 3))
    z = torch.randn(1, 3, 1, 1, requires_grad=True)
    torch.manual_seed(3)
    lam = torch.rand(9, 1)
    torch.manual_seed(3)
    out = q(z)
    g = torch.randn(1, 3, 1, 1)
    (out.z_q * g).sum().backward()
    codes, row, grow = q.codebook.detach(), _rows(z.detach())[0], _rows(g)[0]
    s = int(torch.cdist(row[None], (1 - lam) * codes[:-1] + lam * codes[1:]).argmin())
    u1, u2 = F.normalize(codes[s] - row, dim=0), F.normalize(codes[s + 1] - row, dim=0)
    expected = torch.zeros_like(codes)
    expected[s] = (1 - lam[s]) * (grow @ u1) * u1
    expected[s + 1] = lam[s] * (grow @ u2) * u2
    torch.testing.assert_close(q.codebook.grad, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_rows(z.grad)[0], grow - expected[s] - expected[s + 1], rtol=1e-5, atol=1e-6)


def test_warm_up_passes_latents_through_then_initialises_from_chunk_means():
    """skip_iters=4, avg_iters=2: steps 1-3 are unquantised, steps 2 and 3 are collected and the codebook
    becomes the means of K consecutive chunks of their latents (the official rule, floor(rows / K) rows
    each); step 4 quantises. A checkpoint taken mid-collection resumes to the same codebook."""
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 4, 2, skip_iters=4, avg_iters=2).train()
    batches = [torch.randn(1, 2, 3, 3) for _ in range(4)]
    for step in range(2):
        out = q(batches[step])
        assert torch.equal(out.z_q, batches[step]) and int(out.indices.abs().sum()) == 0
    resumed = methods.create("sf-diveq", 4, 2, skip_iters=4, avg_iters=2).train()
    resumed.load_state_dict(q.state_dict())
    for model in (q, resumed):
        model.begin_step(), model(batches[2][:, :, :1]), model(batches[2][:, :, 1:]), model.end_step()
    collected = torch.cat([_rows(batches[1]), _rows(batches[2])])  # 18 rows, chunks of 4
    expected = collected[:16].reshape(4, 4, 2).mean(1)
    torch.testing.assert_close(q.codebook.detach(), expected)
    assert torch.equal(resumed.codebook, q.codebook)
    out = q(batches[3])
    assert not torch.equal(out.z_q, batches[3]) and int(q.steps_done) == 4


def test_eval_quantises_to_the_nearest_codeword_and_decodes_it_exactly():
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 16, 4).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    state = torch.get_rng_state()
    out = q(z)
    assert torch.equal(torch.get_rng_state(), state)  # no dither and no noise in eval mode
    brute = torch.cdist(_rows(z.detach()).double(), q.codebook.detach().double()).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert torch.equal(q.decode_indices(out.indices), out.z_q.detach())
    out.z_q.sum().backward()
    assert z.grad.abs().sum() > 0 and q.codebook.grad.abs().sum() > 0


def test_impossible_options_are_refused():
    with pytest.raises(UserError, match="at least 2 codes"):
        methods.create("sf-diveq", 1, 4)
    with pytest.raises(UserError, match="avg_iters .* must not exceed skip_iters"):
        methods.create("sf-diveq", 16, 4, skip_iters=10, avg_iters=20)


def test_the_micro_batches_of_one_step_share_its_dither():
    """Bracketed by the trainer, every micro-batch of a step is quantised on the same dithered curve (one
    per step, as the official code's one per batch): the two halves give what the whole batch gives."""
    torch.manual_seed(0)
    q = methods.create("sf-diveq", 16, 3, skip_iters=0, noise_variance=0.0).train()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(16, 3))
    z = torch.randn(4, 3, 2, 2)
    torch.manual_seed(7)
    whole = q(z)
    torch.manual_seed(7)
    q.begin_step()
    first = q(z[:2])
    torch.manual_seed(99)  # the trainer reseeds every micro-batch
    second = q(z[2:])
    q.end_step()
    assert torch.equal(torch.cat([first.indices, second.indices]), whole.indices)
    torch.testing.assert_close(torch.cat([first.z_q, second.z_q]), whole.z_q, rtol=0, atol=1e-6)
    assert int(q.steps_done) == 2 and q._step_dither is None
