"""diveq: the hard nearest code, reached by DiVeQ's reparameterised error; its gradients, its dead-code
replacement, and parity with vector-quantize-pytorch's `VectorQuantize(directional_reparam=True)`."""
import pytest
import torch

import methods


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def test_eval_gives_exactly_the_nearest_code_and_draws_no_noise():
    torch.manual_seed(0)
    q = methods.create("diveq", 16, 4).eval()
    z = torch.randn(2, 4, 3, 3)
    state = torch.get_rng_state()
    out = q(z)
    assert torch.equal(torch.get_rng_state(), state)  # no noise drawn in eval mode
    brute = torch.cdist(_rows(z).double(), q.codebook.detach().double()).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert torch.equal(_rows(out.z_q), q.codebook.detach()[brute])
    assert torch.equal(q.decode_indices(out.indices), out.z_q) and out.loss == 0


def test_training_keeps_the_error_length_and_tilts_the_direction_by_the_noise():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3)
    quiet = methods.create("diveq", 16, 4, noise_variance=0.0).train()
    noisy = methods.create("diveq", 16, 4, noise_variance=1e-2).train()
    noisy.load_state_dict(quiet.state_dict())
    a, b = quiet(z), noisy(z)
    codes = quiet.codebook.detach()[a.indices.reshape(-1)]
    torch.testing.assert_close(_rows(a.z_q), codes, rtol=0, atol=1e-6)  # no noise: the code itself
    assert torch.equal(a.indices, b.indices)
    err = (codes - _rows(z)).norm(dim=1)
    torch.testing.assert_close((_rows(b.z_q) - _rows(z)).norm(dim=1), err, rtol=1e-5, atol=1e-6)
    assert (_rows(b.z_q) - codes).abs().max() > 1e-4  # the noise moved the direction


def test_gradients_follow_the_error_length_to_the_input_and_the_chosen_codes_only():
    torch.manual_seed(0)
    q = methods.create("diveq", 32, 4, noise_variance=0.0).train()
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    out = q(z)
    g = torch.randn_like(out.z_q)
    (out.z_q * g).sum().backward()
    rows, grows, idx = _rows(z.detach()), _rows(g), out.indices.reshape(-1)
    u = torch.nn.functional.normalize(q.codebook.detach()[idx] - rows, dim=1)
    along = (grows * u).sum(1, keepdim=True) * u  # d/dc of ||c - z|| sg[u] against g
    expected = torch.zeros_like(q.codebook)
    expected.index_add_(0, idx, along)
    torch.testing.assert_close(q.codebook.grad, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_rows(z.grad), grows - along, rtol=1e-5, atol=1e-6)
    assert out.loss == 0 and not out.loss.requires_grad


def test_unused_codes_are_replaced_by_used_ones_at_the_end_of_each_window():
    torch.manual_seed(0)
    q = methods.create("diveq", 8, 2, replacement_interval=2, discard_threshold=0.5, perturb_eps=0.0).train()
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]] + [[100.0 + i, -100.0] for i in range(6)]))
    z = torch.tensor([[-0.1, 0.1], [0.1, -0.1], [9.9, 10.0], [10.1, 10.0]]).T.reshape(1, 2, 2, 2)
    q.begin_step(), q(z), q(z), q.end_step()  # two micro-batches are one step
    assert int(q.steps_done) == 1 and q.window_counts.sum() == 8
    assert q.codebook[2:, 0].min() >= 100  # not yet: the window has 2 steps
    q(z)
    assert int(q.steps_done) == 2 and q.window_counts.sum() == 0
    replaced = q.codebook.detach()[2:]
    assert all(any(torch.equal(r, c) for c in q.codebook.detach()[:2]) for r in replaced)
    assert q.codebook[0].abs().sum() == 0 and torch.equal(q.codebook[1].detach(), torch.tensor([10.0, 10.0]))


def test_same_as_vector_quantize_pytorch_directional_reparam():
    """Given our codebook and the same generator state: the same indices, z_q, loss (zero) and input and
    codebook gradients, in training (noise drawn by both, the peer's default variance) and in eval.
    The peer (bench/speed/peers.py) has dead-code threshold 1e-9 (required > 0 there), which its EMA counts
    (starting at 1, decay 0.8) reach only after ~93 steps, so it never fires here; ours keeps its
    100-step window. Tolerance: 1e-6 absolute on z_q, 1e-5 relative + 1e-6 absolute on gradients."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.peers import peers
    from bench.speed.shapes import Shape

    torch.manual_seed(0)
    q = methods.create("diveq", 32, 8, noise_variance=5e-3)
    peer = peers()["diveq"].make(Shape(B=2, H=4, W=4, D=8, K=32), q)  # the speed benchmark's peer, as built there
    assert peer.directional_reparam and peer.directional_reparam_variance == 5e-3
    with torch.no_grad():
        peer._codebook.embed.copy_(q.codebook[None])
    z = torch.randn(2, 8, 4, 4)
    for mode in ("train", "eval"):
        q.train(mode == "train"), peer.train(mode == "train")
        q.codebook.grad = peer._codebook.embed.grad = None
        zs = [z.clone().requires_grad_(True) for _ in range(2)]
        torch.manual_seed(1)
        ours = q(zs[0])
        torch.manual_seed(1)
        quantized, indices, loss = peer(zs[1])
        assert torch.equal(indices, ours.indices)
        torch.testing.assert_close(quantized, ours.z_q, rtol=0, atol=1e-6)
        assert float(loss.detach()) == 0 and float(ours.loss) == 0
        if mode == "train":
            g = torch.randn_like(quantized)
            (ours.z_q * g).sum().backward()
            (quantized * g).sum().backward()
            torch.testing.assert_close(zs[0].grad, zs[1].grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(q.codebook.grad, peer._codebook.embed.grad[0], rtol=1e-5, atol=1e-6)
            assert (ours.z_q - q.decode_indices(ours.indices)).abs().max() > 1e-4  # the noise was on


def test_speed_rows_time_diveq_beside_its_peer_and_sf_diveq_quantising():
    """bench.speed times diveq against the peer above, and sf-diveq with its warm-up off (with the
    default warm-up the timed training step would pass the latent through unquantised)."""
    pytest.importorskip("vector_quantize_pytorch")
    from bench.speed.quantizers import _timed, quantizer_rows
    from bench.speed.shapes import Shape

    shape = Shape(B=2, H=4, W=4, D=8, K=32)
    rows = {r["method"]: r for r in quantizer_rows(["diveq", "sf-diveq"], [shape], torch.device("cpu"), reps=1)}
    assert rows["diveq"]["peer"] == "VectorQuantize(directional_reparam=True)" and rows["diveq"]["peer_ms"] > 0
    assert rows["sf-diveq"]["peer"] == "" and rows["sf-diveq"]["ms"] > 0
    q, _ = _timed("sf-diveq", shape, torch.device("cpu"))
    z = torch.randn(1, 8, 2, 2)
    assert q.options.skip_iters == 0 and not torch.equal(q(z).z_q, z)
