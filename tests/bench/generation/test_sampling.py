"""The transformer and its sampler: cached decoding equals the full forward pass, filtering keeps
what it should, guidance is the LlamaGen formula, and samples are a function of the generator."""
import torch

from bench.generation.config import SamplingConfig, TransformerConfig
from bench.generation.sampling import batch_generator, class_labels, filter_logits, guided_logits, sample
from bench.generation.transformer import TokenPrior

CFG = TransformerConfig(n_layer=2, n_head=2, n_embd=16)


def _prior(num_classes=0, length=12, vocab=10):
    torch.manual_seed(0)
    return TokenPrior(CFG, vocab, length, num_classes).eval()


def test_cached_step_by_step_logits_equal_the_full_forward():
    prior = _prior(num_classes=3)
    x = torch.randint(0, 10, (4, 12))
    labels = torch.tensor([0, 1, 2, 3])  # 3 is the null class
    with torch.no_grad():
        full = prior(labels, x[:, :-1])
        cache = prior.new_cache(4, torch.device("cpu"))
        steps = [prior(labels, None, cache)] + [prior(labels, x[:, t : t + 1], cache) for t in range(11)]
    assert full.shape == (4, 12, 10)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_the_model_is_causal():
    prior = _prior()
    x = torch.randint(0, 10, (2, 12))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 10
    lab = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        a, b = prior(lab, x[:, :-1]), prior(lab, y[:, :-1])
    assert torch.allclose(a[:, :7], b[:, :7]) and not torch.allclose(a[:, 7:], b[:, 7:])


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # p = 0.7: 0.5 alone is short of it, 0.5 + 0.3 reaches it; the rest goes
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.01)).tolist() == [[False, True, True, True]]  # one stays
    assert not torch.isinf(filter_logits(logits)).any()
    shuffled = logits[:, [2, 0, 3, 1]]  # filtering follows the values, not the positions
    assert torch.isinf(filter_logits(shuffled, top_p=0.7)).tolist() == [[True, False, True, False]]


def test_guidance_formula():
    c, u = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(guided_logits(c, u, 1.0), c)
    assert torch.equal(guided_logits(c, u, 3.0), torch.tensor([4.0, -2.0]))


def test_samples_are_a_function_of_the_generator():
    prior = _prior(num_classes=2)
    cfg = SamplingConfig(top_k=5, cfg_scale=2.0)
    labels = class_labels(0, 6, 2)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1] and class_labels(0, 3, 0) is None
    a = sample(prior, 6, cfg, batch_generator(0, 0, torch.device("cpu")), labels)
    b = sample(prior, 6, cfg, batch_generator(0, 0, torch.device("cpu")), labels)
    c = sample(prior, 6, cfg, batch_generator(0, 1, torch.device("cpu")), labels)
    assert a.shape == (6, 12) and a.dtype == torch.long and 0 <= int(a.min()) and int(a.max()) < 10
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_one_is_greedy():
    prior = _prior()
    tokens = sample(prior, 2, SamplingConfig(top_k=1), batch_generator(0, 0, torch.device("cpu")))
    with torch.no_grad():
        logits = prior(torch.zeros(2, dtype=torch.long), tokens[:, :-1])
    assert torch.equal(logits.argmax(-1), tokens)
