"""VQCT quantizer: the GCN against torch_geometric, the index layout, exact decoding, ablations."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench.core.errors import UserError
from methods.vqct import VQCTOptions, VQCTQuantizer, load_prior, normalized_adjacency

K, DIM = 64, 8


def _make(name="vqct", k=K, dim=DIM, **options):
    torch.manual_seed(0)
    return methods.create(name, k, dim, **options)


def _z(q, b=2, s=4, seed=1):
    torch.manual_seed(seed)
    return torch.randn(b, q.latent_channels, s, s)


def test_gcn_matches_torch_geometric_gcnconv():
    from torch_geometric.nn import GCNConv

    q = _make().eval()
    net = q.transfer
    conv1, conv2 = GCNConv(q.lm_codes.shape[1], DIM), GCNConv(DIM, DIM)
    with torch.no_grad():
        conv1.lin.weight.copy_(net.layer1.lin.weight)
        conv1.bias.copy_(net.layer1.bias)
        conv2.lin.weight.copy_(net.layer2.lin.weight)
        conv2.bias.copy_(net.layer2.bias.add(0.1))
        net.layer2.bias.add_(0.1)  # non-zero biases, so their placement is checked too
        ref = conv2(F.relu(conv1(q.lm_codes, q.edge_index)), q.edge_index)
        torch.testing.assert_close(q.codebook(), ref, atol=1e-5, rtol=1e-4)
    assert q.edge_index.shape[1] > 0


def test_normalized_adjacency_matches_gcn_norm_with_isolated_nodes():
    from torch_geometric.nn import GCNConv

    ei = torch.tensor([[0, 1, 1, 3], [1, 0, 3, 1]])  # nodes 2 and 4 isolated
    conv = GCNConv(5, 5, bias=False)
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(5))
        a_hat = conv(torch.eye(5), ei)  # A_hat @ I @ I
    ours = normalized_adjacency(ei, 5).to_dense()
    torch.testing.assert_close(ours, a_hat)
    assert torch.equal(ours[2], torch.eye(5)[2])


def test_indices_are_top_k_adjectives_then_offset_noun():
    q = _make().eval()
    n_adj = q.code_groups["adj"][1]
    assert q.code_groups == {"adj": (0, n_adj), "noun": (n_adj, K)} and 0 < n_adj < K
    z = _z(q)
    with torch.no_grad():
        out = q(z)
        cb = q.codebook()
    assert out.indices.shape == (2, 4, 4, 3)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2 * DIM)
    idx = out.indices.reshape(-1, 3)
    d_adj = torch.cdist(rows[:, :DIM], cb[:n_adj])
    assert torch.equal(idx[:, :2].sort(1).values, d_adj.topk(2, largest=False).indices.sort(1).values)
    assert torch.equal(idx[:, 2], torch.cdist(rows[:, DIM:], cb[n_adj:]).argmin(1) + n_adj)
    assert int(idx[:, :2].max()) < n_adj and int(idx[:, 2].min()) >= n_adj
    q_rows = out.z_q.permute(0, 2, 3, 1).reshape(-1, 2 * DIM)
    torch.testing.assert_close(q_rows[:, :DIM], cb[idx[:, :2]].mean(1))
    torch.testing.assert_close(q_rows[:, DIM:], cb[idx[:, 2]])


def test_codebook_size_split_in_the_vocabulary_ratio():
    prior = load_prior(VQCTOptions())
    q = _make(k=256, dim=4)
    n_adj = round(256 * prior.n_adj / (prior.n_adj + prior.n_noun))
    assert q.code_groups == {"adj": (0, n_adj), "noun": (n_adj, 256)}
    assert q.words[:n_adj] == prior.adjectives[:n_adj] and q.words[n_adj:] == prior.nouns[: 256 - n_adj]


def test_codebook_larger_than_vocabulary_is_refused():
    prior = load_prior(VQCTOptions())
    too_many = prior.n_adj + prior.n_noun + 1
    for call in (lambda: methods.create("vqct", too_many, DIM),
                 lambda: VQCTQuantizer.prepare(too_many, DIM, VQCTOptions()),
                 lambda: methods.create("vqct-nopos", too_many, DIM)):
        with pytest.raises(UserError) as e:
            call()
        assert "larger than the prior's vocabulary" in str(e.value) and "\n" not in str(e.value)


def test_bad_options_fail_fast():
    with pytest.raises(UserError, match="top_k=2 needs at least"):
        methods.create("vqct", 2, DIM)  # one adjective code
    with pytest.raises(UserError, match="transfer must be one of"):
        methods.create("vqct", K, DIM, transfer="gat")
    with pytest.raises(UserError, match="no option"):
        methods.create("vqct", K, DIM, topk=3)


def test_decode_is_exact_after_training_steps():
    q = _make().train()
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    for step in range(3):
        z = _z(q, seed=step)
        out = q(z)
        (out.loss + out.z_q.square().mean()).backward()
        opt.step()
        opt.zero_grad()
    q.eval()
    with torch.no_grad():
        out = q(_z(q, b=3, s=5, seed=9))
        q_rows = q.decode_indices(out.indices)
    torch.testing.assert_close(q_rows, out.z_q, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
    q = _make()
    q.train()
    with torch.no_grad():
        a, b = q.codebook(dropout=True), q.codebook(dropout=True)
    assert not torch.equal(a, b)
    q.eval()
    assert torch.equal(q.codebook(), q.codebook())


def test_gradients_reach_the_transfer_network_not_the_word_vectors():
    q = _make().train()
    out = q(_z(q))
    out.loss.backward()
    assert q.transfer.layer1.lin.weight.grad.abs().sum() > 0
    assert q.transfer.layer2.lin.weight.grad.abs().sum() > 0
    assert not q.lm_codes.requires_grad and "lm_codes" not in dict(q.named_parameters())


def test_losses_as_vqgan():
    q = _make().eval()
    z = _z(q)
    out = q(z)
    d = F.mse_loss(out.z_q, z)
    torch.testing.assert_close(out.loss, d + 0.25 * d)
    torch.testing.assert_close(_make(legacy=True).eval()(z).loss, 0.25 * d + d)


def test_checkpoint_round_trip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    q = _make().eval()
    save_file({k: v.contiguous() for k, v in q.state_dict().items()}, str(tmp_path / "q.safetensors"))
    r = _make()
    r.load_state_dict(load_file(str(tmp_path / "q.safetensors")))
    r.eval()
    assert torch.equal(r.codebook(), q.codebook())


def test_ablation_nopos_one_joint_codebook():
    q = _make("vqct-nopos").eval()
    assert q.code_groups == {} and q.latent_channels == 2 * DIM
    prior = load_prior(VQCTOptions())
    assert q.adj_range == q.noun_range == (0, K)
    idx = q(_z(q)).indices
    assert idx.shape[-1] == 3 and int(idx.max()) < K
    counts = sorted(prior.adj_counts + prior.noun_counts, reverse=True)
    assert q.lm_codes.shape[0] == K and q.edge_index.shape[1] > 0
    assert counts[K - 1] >= counts[K]  # the K most frequent words of either kind


def test_ablation_mlp_ignores_the_graph():
    q = _make("vqct-mlp").eval()
    with torch.no_grad():
        before = q.codebook()
        empty = torch.zeros(2, 0, dtype=torch.long)
        assert torch.equal(q.transfer(q.lm_codes, normalized_adjacency(empty, K), False), before)
    assert not any("lin." in n for n, _ in q.named_parameters())


def test_ablation_linear_is_a_linear_map_of_frozen_codes():
    q = _make("vqct-linear").eval()
    lin = q.transfer.layer1
    torch.testing.assert_close(q.codebook(), q.lm_codes @ lin.weight.t() + lin.bias)
    assert sum(p.numel() for p in q.parameters()) == lin.weight.numel() + lin.bias.numel()


def test_ablation_random_codes_have_the_shape_of_the_prior():
    lm, rnd = _make(), _make("vqct-random")
    assert rnd.lm_codes.shape == lm.lm_codes.shape and not torch.allclose(rnd.lm_codes, lm.lm_codes)
    assert torch.equal(rnd.edge_index, lm.edge_index)


def test_ablation_top1():
    q = _make("vqct-top1").eval()
    out = q(_z(q))
    assert out.indices.shape[-1] == 2
    cb = q.codebook().detach()
    rows = out.z_q.permute(0, 2, 3, 1).reshape(-1, 2 * DIM)
    torch.testing.assert_close(rows[:, :DIM], cb[out.indices.reshape(-1, 2)[:, 0]])


def test_variants_are_registered_with_their_switches():
    opts = {n: methods.build_options(n) for n in methods.available() if n.startswith("vqct")}
    assert set(opts) == {"vqct", "vqct-nopos", "vqct-mlp", "vqct-linear", "vqct-random", "vqct-top1"}
    assert (opts["vqct-nopos"].pos_split, opts["vqct-mlp"].transfer, opts["vqct-linear"].transfer,
            opts["vqct-random"].codes, opts["vqct-top1"].top_k) == (False, "mlp", "linear", "random", 1)


def test_usage_reported_per_codebook():
    from bench.evaluation.metrics.usage import CodeUsage

    q = _make().eval()
    usage = CodeUsage(q.codebook_size, q.code_groups)
    usage.update(q(_z(q, b=4, s=8)).indices)
    stats = usage.stats()
    for key in ("utilization", "utilization_adj", "utilization_noun", "perplexity_adj", "dead_codes_noun"):
        assert key in stats
    n_adj = q.code_groups["adj"][1]
    assert stats["utilization_adj"] == float((usage.counts[:n_adj] > 0).sum()) / n_adj


def test_prepare_builds_the_prior_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text("A red car.\nA big dog.\n" * 12)
    opts = methods.build_options("vqct", corpus=f"text:{corpus}", encoder="glove")
    VQCTQuantizer.prepare(4, DIM, opts)
    assert len(list((tmp_path / "cache" / "codebook_priors").glob("*/metadata.json"))) == 1
    q = methods.create("vqct", 4, DIM, corpus=f"text:{corpus}", encoder="glove", top_k=1)
    assert q.words == ["big", "red", "car", "dog"]


def test_propagation_gradient_is_the_dense_products():
    from methods.vqct import propagate

    q = _make()
    dense = q.adjacency.to_dense()
    assert torch.equal(dense, dense.t())  # the custom backward relies on A_hat being symmetric
    h = torch.randn(K, 5, requires_grad=True)
    g = torch.randn(K, 5)
    (propagate(q.adjacency, h) * g).sum().backward()
    h_ref = h.detach().clone().requires_grad_(True)
    ((dense @ h_ref) * g).sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad)


def test_cached_propagated_codes_follow_the_word_vectors():
    # The first layer uses A_hat @ lm_codes computed once; the codebook must equal the uncached
    # A_hat (X W) form, and loading other word vectors (a vqct-random checkpoint) must refresh it.
    q = _make().eval()
    with torch.no_grad():
        uncached = q.transfer(q.lm_codes, q.adjacency, False)
        torch.testing.assert_close(q.codebook(), uncached, atol=1e-5, rtol=1e-4)
        other = _make("vqct-random")
        q.load_state_dict(other.state_dict())
        torch.testing.assert_close(q.codebook(), other.eval().codebook(), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(q.codebook(), uncached)


def test_fast_dropout_keeps_the_expected_share_and_scale():
    from methods.vqct import fast_dropout

    torch.manual_seed(0)
    h = torch.ones(400, 500)
    out = fast_dropout(h, 0.3, True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert fast_dropout(h, 0.3, False) is h
