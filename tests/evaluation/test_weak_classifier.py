"""A classifier trained on a subset is announced as such, and evaluate prints the classifier's
test accuracy beside the FID and warns loudly about a weak one."""

import json

from vaelab.cli import main


def test_a_subset_classifier_and_a_weak_one_are_warnings(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    assert main(["train", "--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "32", "--no-progress",
                 "--quiet", "--data-dir", str(root), "--epochs", "1", "--latent-dim", "2", "--output-dir",
                 str(tmp_path), "--name", "r"]) == 0
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8", "--train-examples", "20"]) == 0
    err = capsys.readouterr().err
    assert "warning: this classifier learned from only 20 training images, and it is cached as the tiny-mnist" in err
    assert main(["evaluate", str(tmp_path / "r"), "--k", "2", "--fid-samples", "64", "--no-probe"]) == 0
    captured = capsys.readouterr()
    assert "classifier test accuracy" in captured.out
    samples = json.loads((tmp_path / "r" / "evaluation.json").read_text())["samples"]
    assert samples["classifier_test_accuracy"] < 0.8  # one epoch on 20 blobs (fixed seed): near chance
    assert "warning: the cached tiny-mnist classifier has test accuracy" in captured.err
    assert "retrain it on the whole training set" in samples["classifier_warning"]
