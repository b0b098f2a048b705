"""Character data: the printed fallback's properties, the Omniglot-fails path, the disk cache."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

import fewshot.characters as characters
import fewshot.printed as printed_module
from fewshot.characters import (BACKGROUND_SPLIT, EVALUATION_SPLIT, character_names, characters_source,
                                glyph_name, load_characters)
from fewshot.printed import INSTANCES_PER_CLASS
from fewshot.data import DOWNLOAD_TIMEOUT, MNIST_MEAN, MNIST_STD

_GENERATE = characters.printed_characters  # the real generator (~5 s a seed)
_GENERATED: dict[int, dict] = {}


def _generate_once(seed: int = 0) -> dict:
    if seed not in _GENERATED:
        _GENERATED[seed] = _GENERATE(seed)
    return _GENERATED[seed]


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test: its own data dir, offline, and no source decided yet (glyph table kept: slow)."""
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FEWSHOT_OFFLINE", "1")
    characters._printed.cache_clear()  # the glyph table (printed.glyph_table) is kept: slow
    characters._source.cache_clear()  # no source decided yet (it is a memo keyed by the settings)
    monkeypatch.setattr(characters, "printed_characters", _generate_once)  # once per seed
    yield
    characters._source.cache_clear()
    characters._printed.cache_clear()


@pytest.fixture(scope="module")
def printed() -> dict:
    """The default seed's printed benchmark, generated once for the module."""
    return _generate_once(0)


def test_splits_disjoint_and_labels_global(printed: dict) -> None:
    bg = printed["background_labels"].unique()
    ev = printed["evaluation_labels"].unique()
    assert len(set(bg.tolist()) & set(ev.tolist())) == 0
    everything = torch.cat([bg, ev]).sort().values
    assert torch.equal(everything, torch.arange(len(printed["codes"])))  # ids 0..C−1, each once
    assert abs(len(bg) / len(ev) - 2) < 0.05  # about 2:1
    assert len(ev) >= 200  # hundreds of identities, not ten


def test_shapes_dtype_normalisation_and_counts() -> None:
    images, labels = load_characters(EVALUATION_SPLIT, classes=7)
    assert images.dtype == torch.float32 and tuple(images.shape[1:]) == (1, 28, 28)
    assert labels.dtype == torch.int64 and len(labels) == len(images) == 7 * INSTANCES_PER_CLASS
    assert torch.equal(torch.bincount(labels)[labels.unique()], torch.full((7,), INSTANCES_PER_CLASS))
    black, white = (0 - MNIST_MEAN) / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD
    corners = images[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.full_like(corners, black))  # white ink on a black ground
    brightest = images.flatten(1).amax(1)
    assert torch.allclose(brightest, torch.full_like(brightest, white), atol=1e-5)
    ink = (images > black + 0.5).float().mean()
    assert 0.05 < ink < 0.5  # a glyph, not an empty or a filled square


def test_full_split_has_twenty_per_class(printed: dict) -> None:
    for split in (BACKGROUND_SPLIT, EVALUATION_SPLIT):
        counts = torch.bincount(printed[f"{split}_labels"])
        assert set(counts[counts > 0].tolist()) == {INSTANCES_PER_CLASS}


def test_deterministic_for_a_seed(printed: dict) -> None:
    again = _GENERATE(0)
    for key in ("evaluation_pixels", "evaluation_labels", "background_pixels", "background_labels"):
        assert torch.equal(again[key], printed[key])
    other = _GENERATE(1)
    assert not torch.equal(other["evaluation_labels"].unique(), printed["evaluation_labels"].unique())


def test_classes_subset_is_seeded_and_nested() -> None:
    _, a = load_characters(BACKGROUND_SPLIT, classes=5)
    _, b = load_characters(BACKGROUND_SPLIT, classes=9)
    assert len(a.unique()) == 5 and set(a.tolist()) <= set(b.tolist())  # first 5 of the same order
    _, again = load_characters(BACKGROUND_SPLIT, classes=5)
    assert torch.equal(a, again)


def test_no_two_classes_render_identically() -> None:
    table = printed_module.glyph_table()
    clean, owner, face = table["clean"], table["glyph_class"], table["glyph_face"]
    for f in range(len(printed_module.FACES)):
        rows = face == f
        flat = clean[rows].flatten(1)
        rms = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # RMS pixel difference, 0..1
        rms.fill_diagonal_(float("inf"))
        assert rms.min() > 0.01, f"two classes look the same in {printed_module.FACES[f]}"
        assert len(owner[rows].unique()) == int(rows.sum())  # one glyph per class and face
    # Latin A, Greek Alpha and Cyrillic A are one class, named by the Latin letter.
    codes = table["codes"].tolist()
    assert ord("A") in codes and 0x391 not in codes and 0x410 not in codes


def test_case_survives() -> None:
    table = printed_module.glyph_table()
    codes = table["codes"].tolist()
    assert ord("o") in codes and ord("O") in codes  # one font size per face keeps both

    def height(ch: str) -> float:
        rows = table["glyph_class"] == codes.index(ord(ch))
        return float((table["clean"][rows] > 0.25).any(2).sum(1).float().mean())

    assert height("O") > 1.3 * height("o")


def test_character_names() -> None:
    _, labels = load_characters(BACKGROUND_SPLIT, classes=3)
    names = character_names(labels[::INSTANCES_PER_CLASS])
    assert len(names) == 3 and all(len(n) == 1 for n in names)
    codes = printed_module.glyph_table()["codes"]
    assert character_names([int((codes == ord("A")).nonzero())]) == ["A"]
    with pytest.raises(ValueError, match="-1"):
        character_names([-1])


def test_glyph_name_spells_out_the_specials_block() -> None:
    # U+FFFD, a printed glyph of the offline set, would read as an encoding error in a gallery
    assert glyph_name(ord("A")) == "A" and glyph_name(0x2191) == "↑"
    assert glyph_name(0xFFFD) == "U+FFFD" and glyph_name(0xFFF0) == "U+FFF0"
    assert glyph_name(0xFFEF) == chr(0xFFEF)


def test_download_failure_falls_back_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.delenv("FEWSHOT_OFFLINE")
    monkeypatch.setattr(torchvision.datasets, "Omniglot", no_network)
    images, _ = load_characters(EVALUATION_SPLIT, classes=2, quiet=False)
    assert len(images) == 2 * INSTANCES_PER_CLASS
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "printed characters" in lines[0]
    assert "no internet connection" in lines[0] and "OSError" not in lines[0]
    load_characters(BACKGROUND_SPLIT, classes=2, quiet=False)  # decided once: no second line
    assert capsys.readouterr().out == ""
    assert "no internet connection" in characters_source()


def test_offline_source_line() -> None:
    line = characters_source()
    assert line.startswith("printed characters") and "background" in line and "evaluation" in line
    assert len(line) <= 110


def test_timeout_is_set_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import torchvision.datasets

    seen = []

    def slow(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.delenv("FEWSHOT_OFFLINE")
    monkeypatch.setattr(torchvision.datasets, "Omniglot", slow)
    before = socket.getdefaulttimeout()
    assert "download timed out" in characters_source()
    assert seen[-1] == DOWNLOAD_TIMEOUT and socket.getdefaulttimeout() == before  # the download's


def test_disk_cache_and_corrupt_file(tmp_path, monkeypatch: pytest.MonkeyPatch, printed: dict) -> None:
    calls = []

    def counting(seed):
        calls.append(seed)
        return printed

    monkeypatch.setattr(characters, "printed_characters", counting)
    first, _ = load_characters(EVALUATION_SPLIT, classes=2)
    (cache,) = tmp_path.glob("printed_characters_*.pt")
    characters._printed.cache_clear()
    second, _ = load_characters(EVALUATION_SPLIT, classes=2)  # from disk
    assert calls == [0] and torch.equal(first, second)
    cache.write_bytes(b"not a torch file")
    characters._printed.cache_clear()
    third, _ = load_characters(EVALUATION_SPLIT, classes=2)  # corrupt: regenerated, rewritten
    assert calls == [0, 0] and torch.equal(first, third)
    assert torch.load(cache, weights_only=True)["seed"] == 0


def test_unwritable_dir_keeps_data_in_memory(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                             printed: dict) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(blocker / "sub"))
    monkeypatch.setattr(characters, "printed_characters", lambda seed: printed)
    images, _ = load_characters(BACKGROUND_SPLIT, classes=2)
    assert len(images) == 2 * INSTANCES_PER_CLASS


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "train"}, "'train'"),
    ({"split": BACKGROUND_SPLIT, "classes": 1}, "classes=1"),
    ({"split": BACKGROUND_SPLIT, "classes": 10**6}, "classes=1000000"),
    ({"split": BACKGROUND_SPLIT, "classes": 2.5}, "classes=2.5"),
    ({"split": BACKGROUND_SPLIT, "seed": -1}, "seed=-1"),
    ({"split": BACKGROUND_SPLIT, "seed": 1.5}, "seed=1.5"),
])
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    split = kwargs.pop("split")
    with pytest.raises(ValueError, match=match):
        load_characters(split, **kwargs)
