"""Figures of a short real-MNIST run with a 20-D latent (skipped without VAELAB_DATA_DIR)."""

import json

import pytest

from vaelab.cli import main

from .conftest import png_size


@pytest.mark.slow
@pytest.mark.figures
def test_figures_of_a_20d_mnist_run(real_data_dir, tmp_path):
    assert main(["train", "--data-dir", str(real_data_dir), "--train-examples", "3000", "--eval-examples", "1000",
                 "--epochs", "1", "--no-progress", "--quiet", "--output-dir", str(tmp_path), "--name", "z20"]) == 0
    figures = tmp_path / "z20" / "figures"
    assert sorted(p.stem for p in figures.glob("*.png")) == [
        "interpolations", "latent_manifold", "latent_scatter", "loss_curves", "reconstructions", "samples",
        "singular_values"]
    assert png_size(figures / "reconstructions.png")[0] > 800
    spectrum = json.loads((figures / "latent_spectrum.json").read_text())
    assert spectrum["n_examples"] == 1000 and spectrum["latent_dim"] == 20
    needed = spectrum["dims_needed"]
    assert 1 <= needed["95%"] <= needed["98.5%"] <= needed["99%"] <= 20
    report = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "z20"), "-o", str(report)]) == 0
    assert report.read_text().count("data:image/png;base64,") == 7
