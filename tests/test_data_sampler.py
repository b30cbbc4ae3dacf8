"""The sampler: per-epoch seeded orders, class balance, DDP shards, mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.data import sampler as sampler_module
from fer_lightning.data.sampler import EpochSampler


def indices(sampler):
    pairs = list(sampler)
    assert {epoch for _, epoch in pairs} <= {sampler.epoch}
    return [i for i, _ in pairs]


def test_shuffle_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochSampler(50, "shuffle", seed=3)
    first = indices(sampler)
    assert sorted(first) == list(range(50))
    assert indices(EpochSampler(50, "shuffle", seed=3)) == first
    sampler.set_epoch(1)
    assert indices(sampler) != first
    assert indices(EpochSampler(50, "shuffle", seed=4)) != first


def test_balanced_sampling_equalises_class_frequencies():
    labels = np.repeat([0, 1, 2], [1000, 100, 10])
    sampler = EpochSampler(len(labels), "balanced", seed=0, labels=labels)
    drawn = []
    for epoch in range(10):
        sampler.set_epoch(epoch)
        drawn += indices(sampler)
    frequencies = np.bincount(labels[drawn], minlength=3) / len(drawn)
    assert np.allclose(frequencies, 1 / 3, atol=0.02)
    assert len(set(np.array(drawn)[labels[drawn] == 2])) == 10  # every rare sample is used


@pytest.mark.parametrize("mode", ["shuffle", "balanced"])
def test_training_shards_are_equal_and_cover_the_epoch(monkeypatch, mode):
    labels = np.arange(10) % 3
    shards = []
    for rank in range(3):
        monkeypatch.setattr(sampler_module, "rank_and_world", lambda r=rank: (r, 3))
        sampler = EpochSampler(10, mode, seed=1, labels=labels)
        shards.append(indices(sampler))
        assert len(sampler) == len(shards[-1]) == 4
    if mode == "shuffle":
        assert set(np.concatenate(shards)) == set(range(10))  # padded by repeating two samples


def test_evaluation_shards_hold_every_sample_exactly_once(monkeypatch):
    shards = []
    for rank in range(3):
        monkeypatch.setattr(sampler_module, "rank_and_world", lambda r=rank: (r, 3))
        sampler = EpochSampler(10, "sequential")
        shards.append(indices(sampler))
        assert len(sampler) == len(shards[-1])
    assert sorted(np.concatenate(shards)) == list(range(10))


def test_resuming_mid_epoch_continues_the_same_order():
    sampler = EpochSampler(20, "shuffle", seed=5)
    sampler.set_epoch(2)
    full = indices(sampler)
    resumed = EpochSampler(20, "shuffle", seed=5)
    resumed.load_state_dict({"epoch": 2, "yielded": 7})
    resumed.set_epoch(2)  # Lightning calls this at the start of the resumed epoch
    assert indices(resumed) == full[7:]
    assert indices(resumed) == full  # the epoch after a resume starts from its beginning


def test_defaults_are_the_sequential_order_with_seed_0():
    assert indices(EpochSampler(5)) == [0, 1, 2, 3, 4]
    assert indices(EpochSampler(20, "shuffle")) == indices(EpochSampler(20, "shuffle", seed=0))


def test_bad_modes_and_labels_are_refused_with_what_to_pass():
    with pytest.raises(ValueError, match=r"^mode must be one of \('sequential', .*got 'random'$"):
        EpochSampler(4, "random")
    needs_labels = r"^the balanced mode needs one label per sample$"
    with pytest.raises(ValueError, match=needs_labels):
        EpochSampler(4, "balanced")
    with pytest.raises(ValueError, match=needs_labels):
        EpochSampler(4, "balanced", labels=np.zeros(3, dtype=np.int64))
