"""Image grids, pixel-exact layout, fixed example indices, loss curves, reconstructions and
samples: sizes, aspect, colour and the pixels themselves."""

import numpy as np
import pytest
import torch

from vaelab.plots.figures import (DPI, fixed_indices, grid_figure, image_grid, plot_loss_curves,
                                  plot_reconstructions, plot_samples, save_figure, tick_label_width, tile_centres)

from .conftest import history_rows, png_array, png_size, tiny_model


def test_image_grid_places_tiles_row_by_row_with_white_padding():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.25, 0.5)])  # 3 tiles 2x3
    grid = image_grid(images, n_cols=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
    assert np.all(grid[1:3, 1:4] == 0.0) and np.all(grid[1:3, 5:8] == 0.25) and np.all(grid[4:6, 1:4] == 0.5)
    assert np.all(grid[4:6, 5:8] == 1.0)  # unused tile stays blank
    assert np.all(grid[0] == 1.0) and np.all(grid[:, 4] == 1.0)  # padding
    assert tile_centres(2, 3, 1) == [2.5, 6.5]


def test_fixed_indices_round_robin_over_classes_and_spread_for_unlabelled():
    labels = torch.tensor([3, 1, 1, 0, 3, 0, 2, 2])
    assert fixed_indices(labels, 6) == [3, 1, 6, 0, 5, 2]  # first of 0,1,2,3 then second of 0,1
    assert fixed_indices(labels, 100) == [3, 1, 6, 0, 5, 2, 7, 4]
    assert fixed_indices(torch.zeros(101), 5) == [0, 25, 50, 75, 100]
    assert fixed_indices(labels, 6) == fixed_indices(labels.numpy(), 6)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 28, 20), (3, 32, 32)])
def test_grid_figure_is_pixel_exact_and_keeps_tile_aspect(tmp_path, shape):
    c, h, w = shape
    images = torch.rand(20, c, h, w)
    grid = image_grid(images, 10)
    path = save_figure(grid_figure(grid, "title", scale=3), tmp_path / "g.png")
    width, height = png_size(path)
    # image area = 3 px per image pixel, plus fixed margins (12 px each side, title band)
    assert width == grid.shape[1] * 3 + 24
    top = 14 + 19
    assert height == grid.shape[0] * 3 + top + 12
    pixels = png_array(path)
    # the first tile, read back at its centre, holds the first image's centre pixel
    y, x = top + (1 + h // 2) * 3 + 1, 12 + (1 + w // 2) * 3 + 1
    expected = images[0, :, h // 2, w // 2].numpy() * 255
    got = pixels[y, x].astype(float)
    assert np.allclose(got if c == 3 else got[:1], expected, atol=2)


def test_colour_images_are_drawn_in_colour_and_gray_ones_in_gray(tmp_path):
    red = torch.zeros(4, 3, 8, 8)
    red[:, 0] = 1.0
    colour = png_array(save_figure(grid_figure(image_grid(red, 2), "c", scale=4), tmp_path / "c.png"))
    assert (colour == [255, 0, 0]).all(axis=-1).sum() == 4 * 8 * 8 * 16
    gray = png_array(save_figure(grid_figure(image_grid(torch.full((4, 1, 8, 8), 0.5), 2), "g", scale=4),
                                 tmp_path / "g.png"))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_loss_curves_have_units_legends_and_a_log_option(tmp_path):
    history = history_rows(5)
    fig = plot_loss_curves(history, "test", log_scale=True)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["negative ELBO", "reconstruction NLL  -E_q[log p(x|z)]",
                                               "KL(q(z|x) || p(z))"]
    for ax in axes:
        assert ax.get_ylabel() == "nats per example" and ax.get_xlabel() == "epoch"
        assert ax.get_yscale() == "log"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["train", "test", "best epoch (5)"]
    train_kl = axes[2].lines[0].get_ydata()
    assert list(train_kl) == [row["train_kl"] for row in history]  # KL rises then falls: drawn as is
    path = save_figure(fig, tmp_path / "loss.png")
    assert png_size(path) == (14 * DPI, int(4.2 * DPI))
    assert plot_loss_curves(history).axes[0].get_yscale() == "linear"
    for row in history:  # a Gaussian decoder's NLL can be negative: symmetric log scale
        row["test_recon"] -= 500
    assert [ax.get_yscale() for ax in plot_loss_curves(history, log_scale=True).axes] == ["log", "symlog", "log"]


def test_reconstructions_show_the_inputs_and_the_decoder_means(tmp_path):
    model = tiny_model((1, 28, 20), 2)
    images = torch.rand(20, 1, 28, 20)
    labels = torch.arange(20) % 10
    fig = plot_reconstructions(model, images, labels, [f"c{i}" for i in range(10)])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [f"c{i}" for i in range(10)]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["input", "recon."] * 2
    path = save_figure(fig, tmp_path / "r.png")
    width, height = png_size(path)
    grid_w, grid_h = 10 * 21 + 1, 4 * 29 + 1
    scale = (width - 12 - 12 - tick_label_width(6)) // grid_w
    assert scale >= 2 and (width - 24 - tick_label_width(6)) == grid_w * scale  # tiles keep 28 x 20 pixels
    with torch.no_grad():
        recon = model.decode_mean(model.posterior(images).mean)
    pixels = png_array(path).astype(float)[..., 0]
    left, top = 12 + tick_label_width(6), height - 12 - 22 - grid_h * scale
    at = lambda row, col, y, x: pixels[top + (1 + row * 29 + y) * scale + scale // 2,  # noqa: E731
                                       left + (1 + col * 21 + x) * scale + scale // 2]
    assert at(0, 3, 10, 7) == pytest.approx(255 * images[3, 0, 10, 7].item(), abs=2)
    assert at(1, 3, 10, 7) == pytest.approx(255 * recon[3, 0, 10, 7].item(), abs=2)
    assert at(2, 4, 5, 5) == pytest.approx(255 * images[14, 0, 5, 5].item(), abs=2)


def test_samples_are_seeded_and_sized_by_the_grid(tmp_path):
    model = tiny_model((3, 32, 32), 4)
    a = png_array(save_figure(plot_samples(model, n=16, seed=3), tmp_path / "a.png"))
    b = png_array(save_figure(plot_samples(model, n=16, seed=3), tmp_path / "b.png"))
    c = png_array(save_figure(plot_samples(model, n=16, seed=4), tmp_path / "c.png"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    grid_w = 4 * 33 + 1
    assert a.shape[1] == grid_w * 6 + 24  # 6 screen pixels per image pixel (the cap) + margins
    assert (a[..., 0] != a[..., 1]).any()  # colour samples stay in colour
