"""TensorBoard: image grids every N epochs and the config as hyper-parameters."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vaelab.config import Config
from vaelab.plots.tensorboard import hparam_values, log_epoch_images, should_log_images

from .conftest import synthetic_dataset, tiny_model


def _events(run_dir):
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_training_writes_image_grids_and_hparams(trained_runs):
    events = _events(trained_runs["z2"])
    assert sorted(events.Tags()["images"]) == ["images/latent_manifold", "images/reconstructions", "images/samples"]
    # --tensorboard-images-every 2 over 2 epochs: epoch 2 only
    assert [e.step for e in events.Images("images/samples")] == [2]
    sizes = {tag: (events.Images(tag)[0].width, events.Images(tag)[0].height) for tag in events.Tags()["images"]}
    assert sizes == {"images/samples": (8 * 29 + 1, 8 * 29 + 1), "images/reconstructions": (10 * 29 + 1, 4 * 29 + 1),
                     "images/latent_manifold": (20 * 28, 20 * 28)}
    assert "test/neg_elbo" in events.Tags()["scalars"]
    hparams = events.PluginTagToContent("hparams")
    assert set(hparams) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.latent_dim"].number_value == 2
    assert start.hparams["data.dataset"].string_value == "tiny-mnist"
    assert start.hparams["model.hidden"].string_value == "[16]"
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"test/neg_elbo", "train/kl"}
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "latent_dim: 2" in text


def test_image_schedule():
    config = Config.from_dict({"training": {"epochs": 7}, "figures": {"tensorboard_images_every": 3}})
    assert [e for e in range(1, 8) if should_log_images(config, e)] == [3, 6, 7]
    never = config.replace({"figures.tensorboard_images_every": 0})
    assert not any(should_log_images(never, e) for e in range(1, 8))


def test_hparam_values_are_tensorboard_types():
    values = hparam_values(Config())
    assert values["objective.beta"] == 1.0 and values["training.progress"] == "true"
    assert values["data.data_dir"] == "None" and values["name"] == "None"
    assert all(isinstance(v, (int, float, str)) for v in values.values())


class _Writer:
    def __init__(self):
        self.images = {}

    def add_image(self, tag, image, step, dataformats):
        self.images[tag] = (image.shape, step, dataformats)


@pytest.mark.parametrize("shape, kind, tags", [
    ((3, 32, 32), "image", {"images/reconstructions", "images/samples", "images/latent_manifold"}),
    ((1, 1, 2), "points", {"images/toy2d"}),
])
def test_images_for_colour_and_point_data_leave_the_model_in_training_mode(shape, kind, tags):
    model = tiny_model(shape, 2).train()
    dataset = synthetic_dataset("d", shape, n_test=40, kind=kind)
    writer = _Writer()
    assert log_epoch_images(writer, model, dataset, Config(), 10)
    assert set(writer.images) == tags and model.training
    for image_shape, step, fmt in writer.images.values():
        assert step == 10 and fmt == "HWC" and image_shape[2] == 3
