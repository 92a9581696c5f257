import pytest
import torch

from vaelab.config import DataConfig
from vaelab.data import InMemoryBatches, load_dataset
from vaelab.errors import ConfigError


def config(root, **kw):
    return DataConfig(dataset="tiny-mnist", data_dir=str(root), **kw)


def test_splits_are_in_memory_tensors_in_unit_range(tiny_data):
    root, _ = tiny_data
    ds = load_dataset(config(root))
    assert ds.train.images.shape == (96, 1, 28, 28) and ds.train.images.dtype == torch.float32
    assert ds.test.images.shape == (40, 1, 28, 28)
    assert 0 <= ds.train.images.min() and ds.train.images.max() <= 1
    assert ds.train.labels.dtype == torch.int64 and ds.train.labels[:10].tolist() == list(range(10))
    assert ds.eval_name == "test" and ds.eval is ds.test


def test_validation_split_is_fixed_and_disjoint(tiny_data):
    root, _ = tiny_data
    a = load_dataset(config(root, validation_size=16))
    b = load_dataset(config(root, validation_size=16))
    assert len(a.validation) == 16 and len(a.train) == 80 and a.eval_name == "val"
    assert torch.equal(a.validation.images, b.validation.images)
    full = load_dataset(config(root)).train.images.flatten(1)
    # every original example lands in exactly one of the two splits
    together = torch.cat([a.train.images, a.validation.images]).flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, full.tolist()))
    other = load_dataset(config(root, validation_size=16, split_seed=3))
    assert not torch.equal(other.validation.images, a.validation.images)
    with pytest.raises(ConfigError, match="leaves no training examples"):
        load_dataset(config(root, validation_size=96))


def test_static_binarisation_is_one_fixed_draw(tiny_data):
    root, _ = tiny_data
    a = load_dataset(config(root, binarize="static"))
    b = load_dataset(config(root, binarize="static"))
    assert set(a.train.images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    gray = load_dataset(config(root))
    # a Bernoulli draw: pixels that are 0 stay 0, and the mean follows the gray levels
    assert a.train.images[gray.train.images == 0].sum() == 0
    assert abs(a.train.images.mean() - gray.train.images.mean()) < 0.01


def test_dynamic_binarisation_draws_afresh_per_batch(tiny_data):
    root, _ = tiny_data
    ds = load_dataset(config(root, binarize="dynamic"))
    assert not set(ds.train.images.unique().tolist()) <= {0.0, 1.0}  # train kept gray
    assert set(ds.test.images.unique().tolist()) <= {0.0, 1.0}  # evaluation split fixed binary
    batches = InMemoryBatches(ds.train.images, 96, dynamic_binarize=True, generator=torch.Generator().manual_seed(0))
    first, second = next(iter(batches)), next(iter(batches))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)


def test_the_dynamic_draw_is_bernoulli_of_the_gray_levels_and_seeded():
    from scipy.stats import binomtest

    from vaelab.data.batching import binarize

    gray = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(20_000, 1)
    x = binarize(gray, torch.Generator().manual_seed(0))
    assert x.dtype == gray.dtype and x.shape == gray.shape and set(x.unique().tolist()) <= {0.0, 1.0}
    assert x[:, 0].sum() == 0 and x[:, 4].sum() == 20_000  # P(U < 0) = 0, P(U < 1) = 1
    for column, p in [(1, 0.1), (2, 0.5), (3, 0.9)]:  # the frequency of ones follows p (two-sided binomial test)
        assert binomtest(int(x[:, column].sum()), 20_000, p).pvalue > 1e-4
    assert torch.equal(x, binarize(gray, torch.Generator().manual_seed(0)))
    assert not torch.equal(x, binarize(gray, torch.Generator().manual_seed(1)))


def test_batching_visits_every_example_once_per_pass():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    batches = InMemoryBatches(images, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 3
    seen = torch.cat([b.flatten() for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    again = torch.cat([b.flatten() for b in batches])
    assert not torch.equal(seen, again)  # a fresh permutation each pass
    ordered = torch.cat([b.flatten() for b in InMemoryBatches(images, 4)])
    assert ordered.tolist() == list(range(10))


def test_subset_seed_draws_a_seeded_random_training_subset(tiny_data):
    root, _ = tiny_data

    def train_images(**kw):
        return load_dataset(config(root, **kw)).train.images

    first = train_images(train_examples=20)
    assert torch.equal(first, train_images()[:20])                      # default: the first N
    one, again, other = (train_images(train_examples=20, subset_seed=s) for s in (1, 1, 2))
    assert torch.equal(one, again) and not torch.equal(one, other) and not torch.equal(one, first)
    full = train_images()
    rows = {tuple(r.flatten().tolist()) for r in full}
    assert all(tuple(r.flatten().tolist()) in rows for r in one)          # a subset, no new images
    assert len({tuple(r.flatten().tolist()) for r in one}) == 20          # without repeats
