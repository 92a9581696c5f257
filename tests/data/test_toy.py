"""toy2d (generated points) and digits (bundled with scikit-learn): no files involved."""

import pytest
import torch

from vaelab.config import Config, DataConfig
from vaelab.data import get_spec, load_dataset
from vaelab.errors import ConfigError


def toy(**kw):
    return load_dataset(DataConfig(dataset="toy2d", **{"toy2d_train_size": 500, "toy2d_test_size": 200, **kw}))


def test_toy2d_points_are_uniform_in_the_unit_square_with_quadrant_labels():
    ds = toy()
    assert get_spec("toy2d").kind == "points"
    assert ds.train.images.shape == (500, 1, 1, 2) and ds.test.images.shape == (200, 1, 1, 2)
    assert ds.train.images.dtype == torch.float32 and ds.image_shape == (1, 1, 2)
    x, y = ds.train.images[:, 0, 0, 0], ds.train.images[:, 0, 0, 1]
    assert 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() <= 1
    assert abs(x.mean() - 0.5) < 0.05 and abs(y.var() - 1 / 12) < 0.01  # U(0, 1): mean 1/2, variance 1/12
    expected = (x >= 0.5).long() + 2 * (y >= 0.5).long()
    assert torch.equal(ds.train.labels, expected) and set(ds.train.labels.tolist()) == {0, 1, 2, 3}


def test_toy2d_symmetric_range():
    ds = toy(toy2d_range="symmetric")
    points = ds.train.images.view(-1, 2)
    assert points.min() >= -1 and points.max() <= 1 and points.min() < -0.9 and points.max() > 0.9
    assert torch.equal(ds.train.labels, (points[:, 0] >= 0).long() + 2 * (points[:, 1] >= 0).long())


def test_toy2d_is_seeded_and_splits_are_independent_streams():
    a, b = toy(), toy()
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert not torch.equal(toy(toy2d_seed=1).train.images, a.train.images)
    bigger = toy(toy2d_train_size=800)
    assert torch.equal(bigger.test.images, a.test.images)  # the test set does not depend on the train size
    assert torch.equal(bigger.train.images[:500], a.train.images)


def test_toy2d_validation_and_slices_work_as_for_images():
    ds = toy(validation_size=100, train_examples=300, eval_examples=50)
    assert len(ds.train) == 300 and len(ds.validation) == 50 and len(ds.test) == 50 and ds.eval_name == "val"


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_points_cannot_be_binarised(mode):
    with pytest.raises(ConfigError, match=f"data.binarize={mode} applies to images; toy2d is point data"):
        toy(binarize=mode)


def test_toy2d_options_are_validated():
    with pytest.raises(ConfigError, match="data.toy2d_range must be one of unit, symmetric"):
        Config.from_dict({"data": {"toy2d_range": "square"}})
    with pytest.raises(ConfigError, match="data.toy2d_train_size must be >= 1"):
        Config.from_dict({"data": {"toy2d_train_size": 0}})


def test_digits_fixed_split_in_unit_range():
    ds = load_dataset(DataConfig(dataset="digits"))
    assert ds.train.images.shape == (1437, 1, 8, 8) and ds.test.images.shape == (360, 1, 8, 8)
    assert ds.train.images.min() == 0 and ds.train.images.max() == 1
    assert set((ds.train.images * 16).round().unique().tolist()) <= set(range(17))  # 0..16 / 16
    assert sorted(torch.bincount(torch.cat([ds.train.labels, ds.test.labels])).tolist())[0] == 174
    again = load_dataset(DataConfig(dataset="digits"))
    assert torch.equal(again.test.images, ds.test.images) and torch.equal(again.test.labels, ds.test.labels)
    static = load_dataset(DataConfig(dataset="digits", binarize="static", validation_size=137))
    assert len(static.train) == 1300 and set(static.train.images.unique().tolist()) <= {0.0, 1.0}
