"""Latent-space figures: grid bounds and orientation, dimension choice, the spectrum against
scikit-learn's PCA, interpolation paths, scatter for 1/2/3/20 dimensions, toy 2-D figures."""

import numpy as np
import pytest
import torch

from vaelab.plots.figures import save_figure, tick_label_width
from vaelab.plots.latents import (interpolation_pairs, latent_spectrum, lerp, manifold_latents, most_active_dims,
                                  plot_interpolations, plot_latent_manifold, plot_latent_scatter,
                                  plot_points_manifold, plot_points_samples, plot_singular_values, plot_toy2d,
                                  prior_bounds, slerp)

from .conftest import png_array, png_size, synthetic_dataset, tiny_model


def test_prior_bounds_from_quantiles_or_a_range():
    model = tiny_model((1, 28, 28), 3)
    lo, hi = prior_bounds(model, quantile=0.025)
    assert lo == pytest.approx([-1.959964] * 3, abs=1e-5) and hi == pytest.approx([1.959964] * 3, abs=1e-5)
    lo, hi = prior_bounds(model, quantile=0.05)
    assert hi == pytest.approx([1.644854] * 3, abs=1e-5)
    assert [list(b) for b in prior_bounds(model, [5.0])] == [[-5.0] * 3, [5.0] * 3]
    assert [list(b) for b in prior_bounds(model, [-1.0, 3.0])] == [[-1.0] * 3, [3.0] * 3]


def test_manifold_grid_grows_rightwards_and_upwards_with_other_dims_at_the_prior_mean():
    model = tiny_model((1, 28, 28), 4)
    lo, hi = np.full(4, -2.0), np.full(4, 2.0)
    z, axes = manifold_latents(model, 5, [1, 3], lo, hi)
    assert z.shape == (25, 4)
    grid = z.reshape(5, 5, 4)
    assert grid[0, :, 1].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]  # dims[0] grows to the right
    assert grid[:, 0, 3].tolist() == [2.0, 1.0, 0.0, -1.0, -2.0]  # dims[1] grows upwards
    assert torch.all(z[:, [0, 2]] == 0)  # prior mean
    z1, _ = manifold_latents(model, 7, [2], lo, hi)
    assert z1.shape == (7, 4) and z1[:, 2].tolist() == pytest.approx(np.linspace(-2, 2, 7).tolist())


@pytest.mark.parametrize("latent_dim, dims, size", [(1, None, (20, 1)), (2, None, (20, 20)), (5, [4, 1], (20, 20))])
def test_latent_manifold_strip_square_and_two_chosen_dims(tmp_path, latent_dim, dims, size):
    model = tiny_model((1, 28, 20), latent_dim)
    fig = plot_latent_manifold(model, steps=20, dims=dims, dims_note=" (chosen)")
    ax = fig.axes[0]
    xlabel = f"z_{(dims or [0])[0] + 1}"  # the figures count latent dimensions from 1, as --manifold-dims
    assert ax.get_xlabel() == xlabel
    if latent_dim > 1:
        assert ax.get_ylabel() == f"z_{(dims or [0, 1])[1] + 1}"
    ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert ticks == sorted(ticks) and -1.96 < ticks[0] < -1 and 1 < ticks[-1] < 1.96  # prior's 95% interval
    assert all(round(10 * v) == pytest.approx(10 * v) for v in ticks)  # round values
    if latent_dim == 5:
        assert "z_5 and z_2 (chosen), the other 3 at the prior mean" in fig.texts[0].get_text().replace("\n", " ")
    width, height = png_size(save_figure(fig, tmp_path / "m.png"))
    cols, rows = size
    scale = (width - 12 - 12 - (0 if latent_dim == 1 else tick_label_width(4) + 22)) / (cols * 20)
    assert scale == int(scale) and scale >= 1  # every tile is 20 wide, 28 high, pixel-exact


def test_most_active_dims_are_those_whose_means_vary_most():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(500, 6)) * np.array([0.01, 2.0, 0.1, 0.01, 3.0, 0.5])
    assert most_active_dims(means) == [1, 4]


def test_latent_spectrum_matches_pca_and_counts_dimensions():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    means = rng.normal(size=(2000, 20)) * np.geomspace(3, 0.01, 20) + 5.0  # offset: centring matters
    spectrum = latent_spectrum(means)
    pca = PCA().fit(means)
    assert spectrum.explained == pytest.approx(pca.explained_variance_ratio_, rel=1e-9)
    assert spectrum.singular_values == pytest.approx(pca.singular_values_, rel=1e-9)
    for t, k in spectrum.dims_needed.items():
        assert spectrum.cumulative[k - 1] >= t and (k == 1 or spectrum.cumulative[k - 2] < t)
    exact = np.diag([2.0, 1.0, 1.0, 0.0])  # variances 4:1:1:0 after centring the 4 x 4 matrix
    s = latent_spectrum(np.vstack([exact, -exact]), thresholds=(0.6, 0.7, 0.95, 1.0))
    assert s.explained == pytest.approx([4 / 6, 1 / 6, 1 / 6, 0])
    assert s.dims_needed == {0.6: 1, 0.7: 2, 0.95: 3, 1.0: 3}
    assert s.to_dict()["dims_needed"] == {"60%": 1, "70%": 2, "95%": 3, "100%": 3}


def test_singular_value_figure_marks_the_thresholds(tmp_path):
    rng = np.random.default_rng(2)
    spectrum = latent_spectrum(rng.normal(size=(300, 20)) * np.geomspace(1, 1e-4, 20))
    fig = plot_singular_values(spectrum)
    left, right = fig.axes
    assert left.get_yscale() == "log"  # collapsed dimensions span decades
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert legend[0] == "cumulative share"
    assert legend[1:] == [f"{p} with {spectrum.dims_needed[t]} of 20 dimensions"
                          for p, t in (("95%", 0.95), ("98.5%", 0.985), ("99%", 0.99))]
    assert right.get_ylabel() == "cumulative explained variance (%)"
    assert png_size(save_figure(fig, tmp_path / "s.png")) == (1300, 460)


def test_lerp_and_slerp_paths():
    t = torch.linspace(0, 1, 5)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(lerp(a, b, t)[2], torch.tensor([0.5, 0.5]))
    path = slerp(a, b, t)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.ones(5), atol=1e-6)  # stays on the circle
    assert torch.allclose(path[2], torch.tensor([2 ** -0.5, 2 ** -0.5]), atol=1e-6)
    assert torch.allclose(slerp(a, 2 * a, t), lerp(a, 2 * a, t))  # parallel: falls back to lerp
    assert interpolation_pairs([0, 1, 2, 3, 4], 5) == ([0, 2], [1, 3])
    assert interpolation_pairs([0, 10, 20, 30], 2, spread=True) == ([0, 10], [20, 30])


@pytest.mark.parametrize("method", ["linear", "spherical"])
def test_interpolation_rows_start_and_end_at_the_reconstructions(tmp_path, method):
    model = tiny_model((1, 28, 28), 3)
    a, b = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    fig = plot_interpolations(model, a, b, steps=6, method=method, row_names=["x", "y", "z"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["a", "0", "0.2", "0.4", "0.6", "0.8", "1", "b"]
    assert method in fig.texts[0].get_text()
    pixels = png_array(save_figure(fig, tmp_path / "i.png"))
    assert pixels.shape[0] > 3 * 29 and pixels.shape[1] > 8 * 29
    with pytest.raises(ValueError, match="linear or spherical"):
        plot_interpolations(model, a, b, method="cubic")


@pytest.mark.parametrize("d, xlabel", [(1, "z_1"), (2, "z_1"), (3, "z_1"), (20, "principal component 1")])
def test_latent_scatter_for_each_dimension(tmp_path, d, xlabel):
    rng = np.random.default_rng(d)
    means = rng.normal(size=(300, d))
    labels = np.arange(300) % 10
    fig = plot_latent_scatter(means, labels, [str(i) for i in range(10)])
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith(xlabel)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(i) for i in range(10)]
    if d == 1:
        offsets = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
        assert offsets.min() >= -0.35 and offsets.max() <= 9.35  # one jittered strip per class
    if d == 3:
        assert ax.get_zlabel() == "z_3"
    if d == 20:
        assert "% of variance" in ax.get_xlabel() and "projected from 20 dimensions by PCA" in ax.get_title()
    width, height = png_size(save_figure(fig, tmp_path / "s.png"))
    assert width == 860 and height in (500, 640, 720)


def test_toy2d_figures_for_one_and_two_latent_dimensions(tmp_path):
    data = synthetic_dataset("points", (1, 1, 2), n_test=200, kind="points")
    for d in (1, 2):
        model = tiny_model((1, 1, 2), d)
        fig = plot_toy2d(model, data.test.images, data.test.labels, data.spec.classes)
        inputs, codes, recon = fig.axes
        assert inputs.get_title() == "input points x" and recon.get_title().startswith("reconstructions")
        assert codes.get_xlabel() == "z_1" and codes.get_title() == f"latent codes E_q[z|x] ({d}-D)"
        # the same colour per quadrant in all three panels
        colours = [tuple(np.round(c.get_facecolor()[0], 3)) for c in inputs.collections]
        assert colours == [tuple(np.round(c.get_facecolor()[0], 3)) for c in codes.collections]
        assert colours == [tuple(np.round(c.get_facecolor()[0], 3)) for c in recon.collections]
        assert len(set(colours)) == 4
        assert inputs.get_xlim() == recon.get_xlim()
        assert png_size(save_figure(fig, tmp_path / f"t{d}.png")) == (1600, 540)
        manifold = plot_points_manifold(model, data.test.images.reshape(-1, 2).numpy(), steps=7)
        assert manifold.axes[0].get_xlabel() == "x_1"
        samples = plot_points_samples(model, data.test.images.reshape(-1, 2).numpy(), n=50)
        assert samples.axes[0].collections[1].get_offsets().shape == (50, 2)
