"""The training data order is a function of the step alone (so resume is exact), and datasets with
augmentation get the epoch with each index."""
from bench.training.sampler import StepBatchSampler


def test_resumed_sampler_continues_the_same_sequence():
    full = list(StepBatchSampler(10, 4, seed=3, start_step=0, steps=8))
    resumed = list(StepBatchSampler(10, 4, seed=3, start_step=5, steps=8))
    assert resumed == full[5:]


def test_each_epoch_is_a_permutation():
    flat = [i for b in StepBatchSampler(10, 5, seed=0, start_step=0, steps=4) for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # a new order every epoch


def test_epoch_keys():
    keys = [k for b in StepBatchSampler(6, 4, seed=0, start_step=0, steps=3, with_epoch=True) for k in b]
    assert [e for _, e in keys] == [0] * 6 + [1] * 6
    assert sorted(i for i, _ in keys[:6]) == list(range(6))
