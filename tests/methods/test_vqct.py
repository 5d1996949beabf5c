"""VQCT quantizer: the GCN against torch_geometric fed the public code's edge list, the official loss by
hand, the index layout, exact decoding, the whole vocabulary, ablations."""
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


def _official_edge_list(q, prior):
    """The public code's GCN input: one (adjective, noun) entry per bigram occurrence among the kept
    words, then the reversed copy of the whole list (big_code_book_make_clip.py + the quantizer)."""
    sub = prior.subset(q.codebook_size)
    pairs = [(a, sub.n_adj + n) for a, n, c in sub.edges for _ in range(c)]
    e = torch.tensor(pairs, dtype=torch.long).t()
    return torch.cat([e, e.flip(0)], dim=1)


def _gcnconv_codebook(q, edge_index):
    """torch_geometric's 2-layer GCN (as the public code's GCN module) with q's weights, eval mode, in
    float64 (the sums over repeated entries round differently in float32)."""
    from torch_geometric.nn import GCNConv

    net = q.transfer
    conv1, conv2 = GCNConv(q.lm_codes.shape[1], DIM).double(), GCNConv(DIM, DIM).double()
    with torch.no_grad():
        conv1.lin.weight.copy_(net.layer1.lin.weight)
        conv1.bias.copy_(net.layer1.bias)
        conv2.lin.weight.copy_(net.layer2.lin.weight)
        conv2.bias.copy_(net.layer2.bias)
        return conv2(F.relu(conv1(q.lm_codes, edge_index)), edge_index)


def test_gcn_matches_gcnconv_fed_one_entry_per_bigram_occurrence():
    q = _make().double().eval()
    with torch.no_grad():
        q.transfer.layer2.bias.add_(0.1)  # non-zero biases, so their placement is checked too
    official = _official_edge_list(q, load_prior(VQCTOptions()))
    assert official.shape[1] > q.edge_index.shape[1]  # some pairs occur more than once: the counts matter
    with torch.no_grad():
        torch.testing.assert_close(q.codebook(), _gcnconv_codebook(q, official))
    # The buffers hold each pair once with its count; the duplicated list sums to the same adjacency.
    torch.testing.assert_close(normalized_adjacency(official, K).to_dense(), _make().adjacency.to_dense())


def test_binary_graph_matches_gcnconv_on_deduplicated_edges():
    q = _make(edge_weight="binary").double().eval()
    assert torch.equal(q.edge_weight, torch.ones_like(q.edge_weight))
    with torch.no_grad():
        torch.testing.assert_close(q.codebook(), _gcnconv_codebook(q, q.edge_index))
        assert not torch.allclose(q.codebook(), _make().double().eval().codebook(), atol=1e-4)


def test_edge_weights_are_the_priors_bigram_counts():
    q = _make()
    sub = load_prior(VQCTOptions()).subset(K)
    counts = {(a, sub.n_adj + n): float(c) for a, n, c in sub.edges}
    got = {(int(i), int(j)): float(w) for (i, j), w in zip(q.edge_index.t(), q.edge_weight)}
    assert got == {**counts, **{(j, i): c for (i, j), c in counts.items()}}
    assert max(got.values()) > 1


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
    # The chosen codes are at the top-2 / nearest distances. Compared by distance, not by index: this
    # prior has adjective codes equal to 1e-8 (isolated words the GCN maps alike), and which of several
    # such codes a float32 search returns depends on the CPU's rounding (an AMD EPYC picked code 15 where
    # cdist ranks 17 first, in float64 15 is nearest by 6e-9; an Intel Xeon agreed with cdist).
    d_adj = torch.cdist(rows[:, :DIM], cb[:n_adj])
    torch.testing.assert_close(d_adj.gather(1, idx[:, :2]).sort(1).values,
                               d_adj.topk(2, largest=False).values, rtol=0, atol=1e-5)
    d_noun = torch.cdist(rows[:, DIM:], cb[n_adj:])
    torch.testing.assert_close(d_noun.gather(1, idx[:, 2:] - n_adj)[:, 0], d_noun.min(1).values, rtol=0, atol=1e-5)
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
    with pytest.raises(UserError, match="loss must be one of"):
        methods.create("vqct", K, DIM, loss="hinge")
    with pytest.raises(UserError, match="edge_weight must be one of"):
        methods.create("vqct", K, DIM, edge_weight="tfidf")
    with pytest.raises(UserError, match="goes with transfer='none'"):
        methods.create("vqct", K, DIM, codes="learned")  # a learned codebook has no GCN to feed
    with pytest.raises(UserError, match="goes with transfer='none'"):
        methods.create("vqct", K, DIM, transfer="none")


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


def _hand_quantized(q, z):
    """z_q of eval-mode forward, from the codebook and the indices by hand."""
    out = q(z)
    cb = q.codebook().detach()
    idx = out.indices.reshape(-1, out.indices.shape[-1])
    rows = torch.cat([cb[idx[:, :-1]].mean(1), cb[idx[:, -1]]], dim=1)
    return out, rows.view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)


def test_official_loss_and_its_gradient_by_hand():
    q = _make().eval()
    z = _z(q).requires_grad_(True)
    out, zq = _hand_quantized(q, z)
    adj, noun = slice(0, DIM), slice(DIM, 2 * DIM)
    # per half h: mean((sg[q_h] - z_h)^2) + 0.25 * mean((q_h - sg[z_h])^2), halves summed
    d = (zq - z.detach()) ** 2
    expected = sum(d[:, h].mean() + 0.25 * d[:, h].mean() for h in (adj, noun))
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.logs["commitment"], d[:, adj].mean() + d[:, noun].mean())
    (grad,) = torch.autograd.grad(out.loss, z)
    n_half = z[:, adj].numel()
    torch.testing.assert_close(grad, 2 * (z.detach() - zq) / n_half)  # commitment weight 1 on each half
    # vqgan's form, one mean over both halves with beta on the commitment term: 1/8 of that gradient
    z2 = z.detach().clone().requires_grad_(True)
    standard = _make(loss="standard").eval()(z2)
    torch.testing.assert_close(standard.loss, d.mean() + 0.25 * d.mean())
    (grad_standard,) = torch.autograd.grad(standard.loss, z2)
    torch.testing.assert_close(grad_standard, grad / 8)
    torch.testing.assert_close(_make(loss="legacy").eval()(z).loss, 0.25 * d.mean() + d.mean())


def test_official_loss_gradient_to_the_codes_by_hand():
    # The learned codebook of vqct-noprior is the parameter itself, so the codebook term's gradient is
    # checked code by code: beta * 2 (q_h - z_h) / N_h, shared equally by the top_k adjective codes.
    q = _make("vqct-noprior").eval()
    z = _z(q)
    out, zq = _hand_quantized(q, z)
    (grad,) = torch.autograd.grad(out.loss, q.embedding.weight)
    g_rows = (0.25 * 2 * (zq - z) / z[:, :DIM].numel()).permute(0, 2, 3, 1).reshape(-1, 2 * DIM)
    idx = out.indices.reshape(-1, 3)
    expected = torch.zeros_like(q.embedding.weight)
    for j in range(2):
        expected.index_add_(0, idx[:, j], g_rows[:, :DIM] / 2)
    expected.index_add_(0, idx[:, 2], g_rows[:, DIM:])
    torch.testing.assert_close(grad, expected)


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
    assert torch.equal(rnd.edge_index, lm.edge_index) and torch.equal(rnd.edge_weight, lm.edge_weight)
    assert rnd.options.transfer == "gcn"  # frozen random vectors through the same GCN


def test_ablation_noprior_is_a_learned_codebook_with_the_same_split():
    lm, q = _make(), _make("vqct-noprior")
    assert q.code_groups == lm.code_groups and q.latent_channels == 2 * DIM
    params = dict(q.named_parameters())
    assert list(params) == ["embedding.weight"] and params["embedding.weight"].shape == (K, DIM)
    assert params["embedding.weight"].abs().max() <= 1.0 / K  # taming's uniform initialisation
    assert not hasattr(q, "transfer") and "lm_codes" not in dict(q.named_buffers())
    assert q.code_labels() is None  # its codes are not words
    assert torch.equal(q.codebook(), q.embedding.weight)
    out = q.eval()(_z(q))
    assert out.indices.shape[-1] == 3 and int(out.indices[..., :2].max()) < q.code_groups["adj"][1]
    assert int(out.indices[..., 2].min()) >= q.code_groups["noun"][0]
    assert methods.entry("vqct-noprior").cls.parameter_count(K, DIM, q.options) == K * DIM


def test_full_codebook_size_is_the_whole_vocabulary():
    prior = load_prior(VQCTOptions())
    full = VQCTQuantizer.full_codebook_size(DIM, VQCTOptions())
    assert full == prior.n_adj + prior.n_noun
    assert methods.entry("vqgan").cls.full_codebook_size(DIM, methods.build_options("vqgan")) is None
    q = _make(k=full, dim=4).eval()
    assert q.code_groups == {"adj": (0, prior.n_adj), "noun": (prior.n_adj, full)}
    assert q.words == prior.adjectives + prior.nouns
    assert q.edge_index.shape[1] == 2 * len(prior.edges)
    assert float(q.edge_weight.sum()) == 2 * sum(c for _, _, c in prior.edges)
    out = q(_z(q))
    assert int(out.indices.max()) < full
    torch.testing.assert_close(q.decode_indices(out.indices), out.z_q, rtol=1e-5, atol=1e-5)
    nopos = _make("vqct-nopos", k=full, dim=4)
    assert nopos.codebook_size == full and nopos.lm_codes.shape[0] == full


def test_parameter_count_is_the_transfer_network():
    for name in ("vqct", "vqct-mlp", "vqct-linear", "vqct-noprior"):
        q = _make(name)
        assert methods.entry(name).cls.parameter_count(K, DIM, q.options) == sum(p.numel() for p in q.parameters()), name


def test_ablation_top1():
    q = _make("vqct-top1").eval()
    out = q(_z(q))
    assert out.indices.shape[-1] == 2
    cb = q.codebook().detach()
    rows = out.z_q.permute(0, 2, 3, 1).reshape(-1, 2 * DIM)
    torch.testing.assert_close(rows[:, :DIM], cb[out.indices.reshape(-1, 2)[:, 0]])


def test_variants_are_registered_with_their_switches():
    opts = {n: methods.build_options(n) for n in methods.available() if n.startswith("vqct")}
    assert set(opts) == {"vqct", "vqct-nopos", "vqct-mlp", "vqct-linear", "vqct-random", "vqct-noprior", "vqct-top1"}
    assert (opts["vqct-nopos"].pos_split, opts["vqct-mlp"].transfer, opts["vqct-linear"].transfer,
            opts["vqct-random"].codes, opts["vqct-top1"].top_k) == (False, "mlp", "linear", "random", 1)
    assert (opts["vqct-noprior"].codes, opts["vqct-noprior"].transfer) == ("learned", "none")
    # the public code's recipe is the default
    assert (opts["vqct"].loss, opts["vqct"].edge_weight, opts["vqct"].beta) == ("official", "count", 0.25)


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
