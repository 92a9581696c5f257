"""Your own data: each format round-trips from a tiny file written here; bad files give one line."""

import numpy as np
import pytest
import torch
import yaml

import vaelab
from vaelab.cli import main
from vaelab.config import Config, DataConfig
from vaelab.data import load_dataset
from vaelab.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
X_TRAIN = (RNG.random((60, 12, 10)) * 255).astype(np.uint8)  # (N, H, W) gray levels
X_TEST = (RNG.random((20, 12, 10)) * 255).astype(np.uint8)
Y_TRAIN, Y_TEST = np.arange(60) % 3, np.arange(20) % 3
TINY = {"model": {"hidden": [16], "latent_dim": 2}, "training": {"epochs": 1, "batch_size": 20, "progress": False}}


def check_splits(ds, labelled=True):
    assert ds.image_shape == (1, 12, 10) and ds.train.images.dtype == torch.float32
    assert torch.allclose(ds.train.images[:, 0], torch.from_numpy(X_TRAIN / 255).float())
    assert torch.allclose(ds.test.images[:, 0], torch.from_numpy(X_TEST / 255).float())
    if labelled:
        assert ds.train.labels.tolist() == Y_TRAIN.tolist() and ds.spec.classes == ("0", "1", "2")
    else:
        assert ds.spec.classes == ("none",) and set(ds.train.labels.tolist()) == {0}
    assert len(ds.spec.sha256) == 64 and ds.spec.source


def test_npz_round_trips_with_labels_and_without(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=X_TRAIN, x_test=X_TEST, y_train=Y_TRAIN, y_test=Y_TEST)
    check_splits(load_dataset(DataConfig(dataset=str(tmp_path / "d.npz"))))
    np.savez(tmp_path / "u.npz", x_train=X_TRAIN / 255.0, x_test=X_TEST / 255.0)  # floats in [0, 1]
    check_splits(load_dataset(DataConfig(dataset=str(tmp_path / "u.npz"))), labelled=False)


def test_pt_and_safetensors_round_trip(tmp_path):
    from safetensors.numpy import save_file

    tensors = {"x_train": torch.from_numpy(X_TRAIN), "x_test": torch.from_numpy(X_TEST),
               "y_train": torch.from_numpy(Y_TRAIN), "y_test": torch.from_numpy(Y_TEST)}
    torch.save(tensors, tmp_path / "d.pt")
    check_splits(load_dataset(DataConfig(dataset=str(tmp_path / "d.pt"))))
    save_file({"x_train": X_TRAIN, "x_test": X_TEST, "y_train": Y_TRAIN.astype(np.int64),
               "y_test": Y_TEST.astype(np.int64)}, str(tmp_path / "d.safetensors"))
    check_splits(load_dataset(DataConfig(dataset=str(tmp_path / "d.safetensors"))))


def test_channel_layouts_and_validation_split(tmp_path):
    rgb = (RNG.random((30, 8, 8, 3)) * 255).astype(np.uint8)  # (N, H, W, C)
    np.savez(tmp_path / "hwc.npz", x_train=rgb, x_test=rgb[:5])
    np.savez(tmp_path / "chw.npz", x_train=rgb.transpose(0, 3, 1, 2), x_test=rgb[:5].transpose(0, 3, 1, 2))
    a = load_dataset(DataConfig(dataset=str(tmp_path / "hwc.npz"), validation_size=10))
    b = load_dataset(DataConfig(dataset=str(tmp_path / "chw.npz"), validation_size=10))
    assert a.image_shape == b.image_shape == (3, 8, 8) and len(a.train) == 20 and len(a.validation) == 10
    assert torch.equal(a.train.images, b.train.images)
    binary = load_dataset(DataConfig(dataset=str(tmp_path / "hwc.npz"), binarize="static"))
    assert set(binary.train.images.unique().tolist()) <= {0.0, 1.0}


def write_folder(root, size=(10, 12), mode="L"):
    from PIL import Image

    for split, n in (("train", 4), ("test", 2)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                array = (RNG.random((size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])) * 255).astype(np.uint8)
                Image.fromarray(array, mode).save(root / split / name / f"{i}.png")


def test_image_folder_round_trips_and_resizes_only_when_asked(tmp_path):
    from PIL import Image

    write_folder(tmp_path / "imgs")
    ds = load_dataset(DataConfig(dataset=str(tmp_path / "imgs")))
    assert ds.image_shape == (1, 12, 10) and ds.spec.classes == ("cat", "dog")
    assert ds.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and len(ds.test) == 4
    first = np.asarray(Image.open(tmp_path / "imgs" / "train" / "cat" / "0.png"), dtype=np.float32) / 255
    assert torch.allclose(ds.train.images[0, 0], torch.from_numpy(first))
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(tmp_path / "imgs" / "test" / "dog" / "odd.png")
    with pytest.raises(DataError, match=r"mixed image sizes: .*odd.png is 9x7 .*data.image_size=H W"):
        load_dataset(DataConfig(dataset=str(tmp_path / "imgs")))
    resized = load_dataset(DataConfig(dataset=str(tmp_path / "imgs"), image_size=[8, 6]))
    assert resized.image_shape == (1, 8, 6) and len(resized.test) == 5
    write_folder(tmp_path / "rgb", mode="RGB")
    assert load_dataset(DataConfig(dataset=str(tmp_path / "rgb"))).image_shape == (3, 12, 10)


@pytest.mark.parametrize("arrays, message", [
    ({"x_trian": X_TRAIN, "x_test": X_TEST}, r"unknown key 'x_trian' \(did you mean x_train\?\)"),
    ({"x_train": X_TRAIN}, r"no x_test \(found x_train\)"),
    ({"x_train": X_TRAIN, "x_test": X_TEST, "y_train": Y_TRAIN}, "y_train without y_test"),
    ({"x_train": X_TRAIN, "x_test": X_TEST[:, :5]}, r"x_train images are \(1, 12, 10\) .* x_test images are \(1, 5, 10\)"),
    ({"x_train": X_TRAIN * 2.0, "x_test": X_TEST / 255.0}, r"x_train has values in \[0, 508\], outside \[0, 1\]"),
    ({"x_train": X_TRAIN.astype(np.int32), "x_test": X_TEST}, "x_train has dtype int32; give uint8"),
    ({"x_train": X_TRAIN, "x_test": X_TEST, "y_train": Y_TRAIN[:5], "y_test": Y_TEST}, r"y_train has shape \(5,\) but there are 60"),
    ({"x_train": X_TRAIN[:, None, None], "x_test": X_TEST}, r"x_train has shape \(60, 1, 1, 12, 10\)"),
])
def test_bad_arrays_give_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(DataConfig(dataset=str(tmp_path / "bad.npz")))
    assert "\n" not in str(info.value)


def test_bad_files_give_one_line(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    torch.save({"x_train": X_TRAIN, "x_test": X_TEST}, tmp_path / "numpy.pt")  # numpy arrays need unpickling code
    for name, message in (("junk.npz", "not a readable .npz"), ("junk.safetensors", "not a readable .safetensors"),
                          ("numpy.pt", r"weights_only=True"), ("missing.npz", "does not exist")):
        with pytest.raises(DataError, match=message) as info:
            load_dataset(DataConfig(dataset=str(tmp_path / name)))
        assert "\n" not in str(info.value), name


def test_bad_image_folders_name_the_problem(tmp_path):
    write_folder(tmp_path / "a")
    (tmp_path / "a" / "train" / "cat" / "2.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"cannot read image .*train/cat/2.png"):
        load_dataset(DataConfig(dataset=str(tmp_path / "a")))
    write_folder(tmp_path / "b")
    (tmp_path / "b" / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train/empty has no PNG or JPEG image"):
        load_dataset(DataConfig(dataset=str(tmp_path / "b")))
    (tmp_path / "c" / "train" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="has no test/ sub-folder"):
        load_dataset(DataConfig(dataset=str(tmp_path / "c")))


def test_python_api_trains_on_arrays_and_keeps_them(tmp_path):
    run = vaelab.train({**TINY, "output_dir": str(tmp_path), "name": "api"}, verbose=False,
                       data=(torch.from_numpy(X_TRAIN), X_TEST, Y_TRAIN, Y_TEST))
    assert (run.run_dir / "data.npz").is_file() and run.summary["epochs"] == 1
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["data"]["dataset"] == str((run.run_dir / "data.npz").resolve())
    kinds = ["samples", "reconstructions", "latent_scatter"]  # drawn from the kept data.npz
    assert [p.name for p in vaelab.plot_run(run.run_dir, kinds)] == [f"{kind}.png" for kind in kinds]
    check_splits(load_dataset(Config.from_dict(config).data))
    with pytest.raises(DataError, match="x_train has values"):
        vaelab.train({**TINY, "output_dir": str(tmp_path), "name": "bad"}, verbose=False,
                     data=(X_TRAIN * 2.0, X_TEST))


def test_cli_npz_run_records_data_and_resume_refuses_changed_data(tmp_path, capsys):
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=X_TRAIN, x_test=X_TEST, y_train=Y_TRAIN, y_test=Y_TEST)
    args = ["--hidden", "16", "--latent-dim", "2", "--batch-size", "20", "--no-progress", "--quiet"]
    run_dir = tmp_path / "runs" / "mine"
    assert main(["train", "--dataset", str(data), "--epochs", "1", *args, "--output-dir",
                 str(tmp_path / "runs"), "--name", "mine"]) == 0
    recorded = yaml.safe_load((run_dir / "data.json").read_text())
    assert recorded["path"] == str(data.resolve()) and len(recorded["sha256"]) == 64
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0  # unchanged: fine
    np.savez(data, x_train=X_TRAIN[::-1], x_test=X_TEST, y_train=Y_TRAIN, y_test=Y_TEST)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the data changed since the run started" in err and err.count("\n") == 1


def test_image_size_is_for_image_folders_only(tmp_path):
    with pytest.raises(ConfigError, match="built-in dataset"):
        load_dataset(DataConfig(dataset="mnist", image_size=[8, 8]))
    with pytest.raises(ConfigError, match="two values"):
        Config.from_dict({"data": {"image_size": [8]}})


def test_a_builtin_name_stays_builtin_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    from vaelab.data import is_user_dataset

    (tmp_path / "mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_user_dataset("mnist") and is_user_dataset("./mnist") and is_user_dataset("x.npz")
