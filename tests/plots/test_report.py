"""`vaelab report`: one self-contained HTML file, checked in a real (headless) browser."""

import base64
import os
import re
import shutil

import pytest

from vaelab.cli import main
from vaelab.plots.report import png_size, write_report

from .browser import find_chromium, inspect_html
from .conftest import png_bytes_array

DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def report(trained_runs, tmp_path_factory):
    """A report of the two tiny runs, the second copied without its figures (drawn on demand)."""
    tmp_path = tmp_path_factory.mktemp("report")
    z3 = tmp_path / "z3"
    shutil.copytree(trained_runs["z3"], z3)
    shutil.rmtree(z3 / "figures")
    path = tmp_path / "report.html"
    assert main(["report", str(trained_runs["z2"]), str(z3), "-o", str(path)]) == 0
    return path, z3


def test_report_is_self_contained_and_complete(report):
    path, z3 = report
    text = path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # only data: URIs and in-page anchors
    images = DATA_URI.findall(text)
    # comparison + 7 figures per run (2-D and 3-D latents, image data)
    assert len(images) == 1 + 7 + 7 == text.count("<img ")
    for encoded in images:
        data = base64.b64decode(encoded)
        assert png_bytes_array(data).shape[:2][::-1] == png_size(data)
    assert sorted(p.stem for p in (z3 / "figures").glob("*.png")) == [
        "interpolations", "latent_manifold", "latent_scatter", "loss_curves", "reconstructions", "samples",
        "singular_values"]  # missing figures were drawn
    for needle in ["<h2>Comparison</h2>", "runs differ in: <code>model.latent_dim</code>, <code>objective.beta</code>",
                   "<h2>z2</h2>", "<h2>z3</h2>", "negative ELBO", "nats per example", "config.yaml",
                   "<td>model.latent_dim</td>", "Dimensions needed (3 in all): 95%:", "latent_dim=2, beta=1"]:
        assert needle in text, needle


def test_report_of_a_broken_run_is_one_clear_line(trained_runs, tmp_path, capsys):
    run_dir = tmp_path / "r"
    shutil.copytree(trained_runs["z2"], run_dir)
    (run_dir / "config.yaml").unlink()
    assert main(["report", str(run_dir), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and "config.yaml is missing" in err
    assert not (tmp_path / "x.html").exists()


def test_a_run_whose_figures_cannot_be_drawn_is_reported_with_a_note(trained_runs, tmp_path):
    run_dir = tmp_path / "r"
    shutil.copytree(trained_runs["z2"], run_dir)
    shutil.rmtree(run_dir / "figures")
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "evaluation.json").write_text('{"test": {"nll_is": 97.25, "k": 1000}}')
    text = write_report([run_dir], tmp_path / "one.html").read_text()
    assert "<h3>Evaluation</h3>" in text and "<td>test.nll_is</td><td class=num>97.250</td>" in text
    assert "some figures could not be drawn:" in text and "has no checkpoints/last.safetensors" in text
    assert "<h2>Comparison</h2>" not in text and "<h2>r</h2>" in text


def _chromium_or_skip() -> str:
    found = find_chromium()
    if found:
        return found
    if os.environ.get("VAELAB_REQUIRE_CHROMIUM"):
        pytest.fail("VAELAB_REQUIRE_CHROMIUM is set but no chromium was found (install Debian's chromium)")
    pytest.skip("chromium not found: install Debian's `chromium` package (.ci/run does) or set VAELAB_CHROMIUM")


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = _chromium_or_skip()
    path, _ = report
    shot = tmp_path / "report-screenshot.png"
    check = inspect_html(path, screenshot=shot, chromium=chromium)
    assert check.title == "vaelab report: 2 runs"
    assert len(check.images) == 15
    assert check.broken_images == [], check.broken_images
    assert all(image["naturalWidth"] > 0 and image["complete"] for image in check.images)
    assert check.errors == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = png_size(shot.read_bytes())
    assert width == 1280 and height >= 2000 and check.page_size[1] >= height
    pixels = png_bytes_array(shot.read_bytes())
    assert pixels.std() > 20  # a page with content, not a blank screenshot


def test_the_browser_check_catches_a_broken_page(tmp_path):
    chromium = _chromium_or_skip()
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>broken</title></head><body>"
                    '<img alt="bad" src="data:image/png;base64,iVBORw0KGgoAAAAN">'
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    check = inspect_html(page, chromium=chromium)
    assert [image["alt"] for image in check.broken_images] == ["bad"]
    assert any("boom" in e for e in check.errors) and any("undefinedFunction" in e for e in check.errors)
