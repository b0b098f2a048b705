"""Chapter 11's deployment: ONNX export and parity (``fewshot.export``), the gallery as JSON
(``Gallery.export`` / ``Gallery.from_export``), the canvas preprocessing (Python reference against
the page's JavaScript) and ``python -m fewshot export``."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot import export, protocol
from fewshot.__main__ import main
from fewshot.data import MNIST_MEAN, MNIST_STD
from fewshot.models import EmbeddingNet, TripletNet
from fewshot.verify import EXPORT_FORMAT, Gallery, model_fingerprint

ROOT = Path(__file__).resolve().parents[1]
PREPROCESS_JS = ROOT / "_extra" / "_static" / "fewshot-demo" / "preprocess.js"
NORMALISATION = export.input_normalisation(18)


def net(seed: int = 0, dim: int = 8) -> EmbeddingNet:
    torch.manual_seed(seed)
    return EmbeddingNet(dim).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# ----- python -m fewshot export, once for the module (an untrained network stands in) -----
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``python -m fewshot export --out DIR --method triplet`` with the trained model replaced by a
    seeded untrained network (training would take minutes); everything else runs as in the book."""
    out = tmp_path_factory.mktemp("export") / "site"
    stand_in = TripletNet(net(1, 32))
    calls = []

    def verification_model(run, method, data="characters", **kw):
        calls.append(method)
        return stand_in, "euclidean"

    real, seen = protocol.verification_results, []

    def verification_results(*args, **kw):  # the real protocol; keep what it returned
        seen.extend(real(*args, **kw))
        return seen

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "verification_model", verification_model)
        mp.setattr(protocol, "verification_results", verification_results)
        mp.setenv("FEWSHOT_PROGRESS", "0")
        assert main(["export", "--out", str(out), "--method", "triplet"]) == 0
    return {"out": out, "model": stand_in, "calls": calls, "result": seen[0]}


def test_cli_writes_the_model_and_the_gallery(built: dict, capsys: pytest.CaptureFixture, run) -> None:
    out = built["out"]
    for name in export.FILES.values():
        assert (out / name).stat().st_size > 0, name
    assert set(built["calls"]) == {"triplet"}
    data = json.loads((out / "gallery.json").read_text())
    assert data["format"] == EXPORT_FORMAT and data["metric"] == "euclidean"
    assert data["embedding_size"] == 32
    assert data["fingerprint"] == model_fingerprint(built["model"].embedding_net)
    evaluation = set(protocol.verification_data(run, "characters")[1].tolist())
    assert set(data["identities"]) == evaluation  # the gallery on load: every evaluation character
    assert len(data["extra"]["names"]) == len(data["identities"])
    # the thresholds are the calibration split's, never the test split's
    calibrated = built["result"].thresholds
    assert {t["far"]: t["threshold"] for t in data["thresholds"]} == pytest.approx(calibrated)
    assert data["input"]["mean"] == MNIST_MEAN and data["input"]["std"] == MNIST_STD
    assert data["input"]["size"] == [1, 28, 28] and data["input"]["ink"] == "light on dark"


def test_parity_torch_against_onnxruntime(built: dict) -> None:
    """The build's own parity on 1,000 evaluation images, and a fresh check at batch sizes 1 and 7."""
    data = json.loads((built["out"] / "gallery.json").read_text())
    assert data["extra"]["parity"] <= 1e-4
    model, path = built["model"], built["out"] / "model.onnx"
    onnx = export.OnnxEmbedding(path)
    for batch in (1, 7):
        x = images(batch, seed=batch)
        with torch.no_grad():
            ref = model.get_embedding(x)
        assert onnx(x).shape == (batch, 32)
        assert (onnx(x) - ref).abs().max() <= 1e-4
    assert export.onnx_parity(model, path, images(5)) <= 1e-4


def test_exported_gallery_runs_on_onnxruntime(built: dict) -> None:
    """The gallery read back with the ONNX network names the probes as the torch network does."""
    out = built["out"]
    onnx = export.OnnxEmbedding(out / "model.onnx")
    assert onnx.fingerprint == model_fingerprint(built["model"].embedding_net)
    deployed = Gallery.from_export(out / "gallery.json", onnx)
    torch_side = Gallery.from_export(out / "gallery.json", built["model"].embedding_net)
    probes = json.loads((out / "probes.json").read_text())
    pixels = torch.tensor(probes["pixels"], dtype=torch.float32).reshape(-1, 1, 28, 28)
    x = (pixels / 255 - MNIST_MEAN) / MNIST_STD
    names, dist = deployed.identify(x)
    names_torch, dist_torch = torch_side.identify(x)
    assert names == names_torch and torch.allclose(dist, dist_torch, atol=1e-4)
    assert set(deployed.deployment.thresholds) <= {0.1, 0.01, 0.001}


def test_onnx_parity_refuses_another_model(built: dict) -> None:
    with pytest.raises(ValueError, match="another model"):
        export.onnx_parity(net(5, 32), built["out"] / "model.onnx", images(2))


def test_from_export_refuses_another_model(built: dict) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        Gallery.from_export(built["out"] / "gallery.json", net(5, 32))


# ----- bad input to the exporter -----
def test_export_onnx_refuses_what_is_not_an_embedding_network(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="EmbeddingNet"):
        export.export_onnx(torch.nn.Linear(3, 2), tmp_path / "m.onnx")


def test_export_onnx_refuses_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        export.export_onnx(net(), tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="not a writable file"):
        export.export_onnx(net(), tmp_path)


def test_onnx_embedding_refuses_bad_files_and_shapes(built: dict, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"<!DOCTYPE html> not a model")
    with pytest.raises(ValueError, match="onnxruntime can load"):
        export.OnnxEmbedding(junk)
    with pytest.raises(ValueError, match="no such"):
        export.OnnxEmbedding(tmp_path / "none.onnx")
    onnx = export.OnnxEmbedding(built["out"] / "model.onnx")
    for bad in (torch.zeros(2, 28, 28), torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 28, 28).long()):
        with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
            onnx(bad)


# ----- Gallery.export / Gallery.from_export -----
@pytest.fixture
def small_gallery() -> Gallery:
    gallery = Gallery(net(), "cosine")
    for i, name in enumerate(["a", "b", 7]):
        gallery.enrol(name, images(2, seed=i))
    return gallery


def test_gallery_round_trip(small_gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    small_gallery.export(path, thresholds={0.1: 0.4, 0.01: 0.2}, normalisation=NORMALISATION,
                         extra={"names": ["a", "b", "seven"]})
    back = Gallery.from_export(path, small_gallery.embed)
    assert back.identities == ["a", "b", 7] and back.metric == "cosine"
    assert torch.equal(back.templates, small_gallery.templates)  # float32, exactly
    assert back.deployment.thresholds == {0.1: 0.4, 0.01: 0.2}
    assert back.deployment.normalisation == NORMALISATION
    assert back.deployment.extra == {"names": ["a", "b", "seven"]}
    probes = images(4, seed=9)
    assert back.identify(probes)[0] == small_gallery.identify(probes)[0]
    assert not list(tmp_path.glob("*.partial"))


def test_gallery_export_refuses_bad_input(small_gallery: Gallery, tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    good = dict(thresholds={0.01: 0.2}, normalisation=NORMALISATION)
    with pytest.raises(ValueError, match="empty"):
        Gallery(net()).export(path, **good)
    for thresholds in ({}, {0.0: 0.2}, {2.0: 0.2}, {0.01: -1.0}, {0.01: math.nan}):
        with pytest.raises(ValueError):
            small_gallery.export(path, thresholds=thresholds, normalisation=NORMALISATION)
    with pytest.raises(ValueError, match="lacks"):
        small_gallery.export(path, thresholds={0.01: 0.2}, normalisation={"mean": 0.1})
    with pytest.raises(ValueError, match="size"):
        small_gallery.export(path, thresholds={0.01: 0.2},
                             normalisation={**NORMALISATION, "size": [1, 32, 32]})
    with pytest.raises(ValueError, match="JSON"):
        small_gallery.export(path, **good, extra={"bad": object()})
    with pytest.raises(ValueError, match="does not exist"):
        small_gallery.export(tmp_path / "missing" / "g.json", **good)
    with pytest.raises(ValueError, match="cannot write"):
        small_gallery.export(tmp_path, **good)  # a folder
    assert not path.exists()


def test_from_export_refuses_truncated_foreign_and_old_files(small_gallery: Gallery,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    small_gallery.export(path, thresholds={0.01: 0.2}, normalisation=NORMALISATION)
    text = path.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[:len(text) // 2])
    with pytest.raises(ValueError, match="truncated"):
        Gallery.from_export(cut, small_gallery.embed)
    data = json.loads(text)
    for change, message in (({"format": "fewshot.verify.Gallery.export/0"}, "another version"),
                            ({"format": "something else"}, "not a gallery export"),
                            ({"templates": [[0.0] * 8] * 2}, "shape"),
                            ({"identities": ["a", "a", 7]}, "unique")):
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=message):
            Gallery.from_export(other, small_gallery.embed)
    del data["thresholds"]
    other.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lacks"):
        Gallery.from_export(other, small_gallery.embed)
    with pytest.raises(ValueError, match="fingerprint"):
        Gallery.from_export(path, net(seed=3))


# ----- from a drawing to the network's input -----
def canvas(box: tuple[int, int, int, int], size: int = 280) -> np.ndarray:
    """An alpha channel with one filled rectangle (top, left, height, width) of full ink."""
    alpha = np.zeros((size, size), np.uint8)
    top, left, h, w = box
    alpha[top:top + h, left:left + w] = 255
    return alpha


def test_a_filled_square_becomes_a_centred_block() -> None:
    out = export.canvas_to_pixels(canvas((30, 50, 100, 100)), extent=18)
    assert out.shape == (28, 28)
    rows, cols = np.nonzero(out)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 22, 5, 22)  # floor(14 − 8.5) = 5
    assert np.all(out[5:23, 5:23] == 1.0)


def test_placement_ignores_where_and_how_large_the_drawing_is() -> None:
    a = export.canvas_to_pixels(canvas((10, 20, 60, 30)), extent=18)
    b = export.canvas_to_pixels(canvas((150, 170, 120, 60)), extent=18)  # moved, twice as large
    assert np.array_equal(a, b)
    rows, _ = np.nonzero(a)  # a 2:1 box padded to a square: 18 high and 9 wide (half pixels at
    assert rows.max() - rows.min() + 1 == 18  # the sides, as the box straddles pixel edges)
    assert a[14].sum() == pytest.approx(9, abs=0.01) and a[14, 14] == 1.0


def test_canvas_to_pixels_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no ink"):
        export.canvas_to_pixels(np.zeros((280, 280), np.uint8), 18)
    with pytest.raises(ValueError, match="2-D"):
        export.canvas_to_pixels(np.zeros((2, 280, 280)), 18)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        export.canvas_to_pixels(np.full((10, 10), 2.0), 18)
    with pytest.raises(ValueError, match="does not fit"):
        export.canvas_to_pixels(canvas((0, 0, 5, 5)), 40)


def test_ink_extent_of_hand_made_images() -> None:
    pixels = torch.zeros(3, 1, 28, 28)
    pixels[0, 0, 4:14, 5:11] = 1  # 10 × 6
    pixels[1, 0, 2:20, 3:5] = 1  # 18 × 2
    pixels[2, 0, 10:22, 8:20] = 0.4  # 12 × 12, faint: the cutoff is relative to the brightest pixel
    x = (pixels - MNIST_MEAN) / MNIST_STD
    assert export.ink_extent(x) == 12


def strokes() -> np.ndarray:
    """A hand-drawn-like stroke image: anti-aliased lines and an ellipse, as a canvas would draw."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (280, 280), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 50), (200, 90), (120, 230)], fill=255, width=22, joint="curve")
    draw.ellipse([150, 150, 240, 250], outline=200, width=14)
    return np.asarray(image)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's preprocess.js")
def test_javascript_preprocessing_matches_the_python_reference() -> None:
    alpha = strokes()
    script = ("const p = require(process.argv[1]);"
              "const d = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "const out = p.canvasToPixels(d.alpha, 280, 280, d.input);"
              "process.stdout.write(JSON.stringify(Array.from(p.normalise(out, d.input))));")
    run = subprocess.run(["node", "-e", script, str(PREPROCESS_JS)], capture_output=True, text=True,
                         input=json.dumps({"alpha": alpha.flatten().tolist(), "input": NORMALISATION}),
                         check=True, timeout=60)
    js = torch.tensor(json.loads(run.stdout)).reshape(1, 1, 28, 28)
    ours = export.pixels_to_input(export.canvas_to_pixels(alpha, NORMALISATION["extent"]), NORMALISATION)
    assert (js * MNIST_STD - ours * MNIST_STD).abs().max() <= 1 / 255 + 1e-6  # in pixel units
    assert (ours > 0).sum() > 30  # the strokes are there
