"""Chapter 9's protocol (``fewshot.protocol.verification_*``) and ``python -m fewshot verify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot import protocol
from fewshot.__main__ import main
from fewshot.config import PROFILES
from fewshot.protocol import (MAX_SHOTS, VERIFY_COLUMNS, VerificationRow, verification_markdown,
                              verification_pairs, verification_results, verification_splits,
                              verification_table)
from fewshot.run import Run
from fewshot.tables import flat

RUN = Run(torch.device("cpu"), PROFILES["quick"], 0, "")  # seed 0, the quick size

ROOT = Path(__file__).resolve().parents[1]
FARS = ("0.1", "0.01", "0.001")


def identities(n_ids: int = 80, per_id: int = 20, dim: int = 4, noise: float = 0.6,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-made 'images' (N, 1, 1, dim): one random centre per identity plus noise, ids 100…"""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_ids, dim, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(per_id) + 100
    points = centres[labels - 100] + noise * torch.randn(len(labels), dim, generator=g)
    return points.reshape(len(labels), 1, 1, dim), labels


# ----- the splits -----
def test_character_splits_are_disjoint_by_identity() -> None:
    _, labels = identities()
    splits = verification_splits(labels, "characters", seed=0)
    cal, test = splits["calibration"], splits["test"]

    def ids(split: protocol.VerificationSplit) -> set[int]:
        used = torch.cat([*split.enrol.values(), split.mated, split.nonmated])
        return set(labels[used].tolist())

    assert ids(cal) and ids(test) and not ids(cal) & ids(test)
    assert len(ids(cal)) + len(ids(test)) == 80
    for split in (cal, test):
        enrolled = set(split.enrol)
        assert set(labels[split.mated].tolist()) == enrolled
        assert not set(labels[split.nonmated].tolist()) & enrolled  # never enrolled
        enrol_rows = torch.cat(list(split.enrol.values()))
        assert all(len(v) == MAX_SHOTS for v in split.enrol.values())
        assert not set(enrol_rows.tolist()) & set(split.mated.tolist())  # a probe is not its template
        assert split.pairs is None


def test_mnist_splits_are_disjoint_by_image() -> None:
    labels = torch.arange(5, 10).repeat_interleave(30)
    splits = verification_splits(labels, "mnist", seed=0)
    cal, test = splits["calibration"], splits["test"]
    assert not set(cal.pairs.tolist()) & set(test.pairs.tolist())
    assert len(cal.pairs) + len(test.pairs) == len(labels)
    for split in (cal, test):
        assert len(split.enrol) == protocol.MNIST_ENROLLED
        used = torch.cat([*split.enrol.values(), split.mated, split.nonmated])
        assert sorted(used.tolist()) == split.pairs.tolist()  # every image of the half, once
        assert not set(labels[split.nonmated].tolist()) & set(split.enrol)
    assert list(cal.enrol) == list(test.enrol)  # the same digits are enrolled in both halves


def test_splits_depend_on_the_seed_only() -> None:
    _, labels = identities()
    a, b = verification_splits(labels, seed=3), verification_splits(labels, seed=3)
    assert torch.equal(a["test"].mated, b["test"].mated)
    assert not torch.equal(a["test"].mated, verification_splits(labels, seed=4)["test"].mated)


# ----- calibration never touches the test split -----
@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch):
    """``verification_data`` replaced by hand-made identities; ``set(x)`` swaps the images."""
    held = dict(zip(("images", "labels"), identities()))
    monkeypatch.setattr(protocol, "verification_data", lambda run, data="characters": (
        held["images"], held["labels"]))
    return held


def test_thresholds_are_calibrated_without_the_test_identities(fake_data: dict) -> None:
    first = verification_results(RUN, "characters", methods=["pixels"])[0]
    test = verification_splits(fake_data["labels"], "characters", seed=0)["test"]
    test_rows = torch.cat([*test.enrol.values(), test.mated, test.nonmated])
    images = fake_data["images"].clone()
    images[test_rows] = torch.randn(images[test_rows].shape) * 5  # new test probes and templates
    fake_data["images"] = images
    second = verification_results(RUN, "characters", methods=["pixels"])[0]
    assert second.thresholds == first.thresholds  # calibration did not move
    assert second.open_set_threshold == first.open_set_threshold
    assert set(first.thresholds) == {0.1, 0.01, 0.001}
    assert second.test.eer != first.test.eer  # …while the test numbers did

    cal = verification_splits(fake_data["labels"], "characters", seed=0)["calibration"]
    images = images.clone()
    images[cal.mated] += torch.randn(images[cal.mated].shape)
    fake_data["images"] = images
    third = verification_results(RUN, "characters", methods=["pixels"])[0]
    assert third.thresholds != second.thresholds  # the calibration split is what decides them


def test_row_rates_are_read_at_the_calibrated_thresholds(fake_data: dict) -> None:
    result = verification_results(RUN, "characters", methods=["pixels"])[0]
    row = result.row()
    assert set(flat(row)) == set(VERIFY_COLUMNS)  # the command line's JSON keys
    for far, t in result.thresholds.items():
        test_far, frr = result.test.far_frr(t)
        assert row.tar(far) == row.tar_at_far[far] == pytest.approx(1 - frr)
        assert row.far_at_threshold[far] == pytest.approx(test_far)
        assert flat(row)["tar_at_far"][f"{far:g}"] == row.tar(far)
    assert row.dir_at_fpir == pytest.approx(result.open_set.at(result.open_set_threshold)[0])
    assert flat(row)["dir_at_fpir_0.1"] == row.dir_at_fpir
    # the calibration split's own FAR at its threshold is within the target, by construction
    for far, t in result.thresholds.items():
        assert result.calibration.far_frr(t)[0] <= far


def test_five_shot_templates_are_means_and_limited() -> None:
    images, labels = identities()
    emb = images.flatten(1)
    split = verification_splits(labels, "characters", seed=0)["test"]
    one, _ = verification_pairs(emb, labels, split, "euclidean", shots=1)
    five, _ = verification_pairs(emb, labels, split, "euclidean", shots=5)
    assert one.n_genuine == five.n_genuine and one.n_impostor == five.n_impostor  # same probes
    assert five.eer <= one.eer  # averaging the noise away helps these hand-made identities
    with pytest.raises(ValueError, match="shots=6"):
        verification_pairs(emb, labels, split, "euclidean", shots=MAX_SHOTS + 1)


def test_protocol_bad_input() -> None:
    with pytest.raises(ValueError, match="data='faces'"):
        verification_table(RUN, "faces")
    with pytest.raises(ValueError, match="methods"):
        verification_table(RUN, "mnist", methods=["arcface"])
    with pytest.raises(ValueError, match="identities"):
        verification_splits(torch.arange(4).repeat_interleave(20), seed=0)


# ----- the tables' captions -----
def row(data: str, method: str = "pixels") -> VerificationRow:
    return VerificationRow(method, data, "euclidean", 0.9, 0.1, {0.1: 0.8}, {0.1: 0.09}, 0.5, 0.1)


def test_captions_say_what_the_test_split_holds() -> None:
    # characters: the test identities are disjoint from the calibration ones
    chars = verification_markdown([row("characters")]).splitlines()
    assert chars[-1].startswith("*test identities only; thresholds calibrated on the disjoint "
                                "calibration split;")
    # MNIST: the same five digits in both halves, split by image: no "test identities"
    digits = verification_markdown([row("mnist"), row("mnist", "triplet")])
    captions = [line for line in digits.splitlines() if line.startswith("*")]
    assert len(captions) == 2
    assert all(c.startswith("*test images only (the same digits as the calibration images)")
               for c in captions)
    assert "identities" not in digits
    assert "thresholds calibrated on the calibration images, disjoint from the test images" in \
        captions[1]
    assert "mnist: test images only" in protocol.format_verification_table([row("mnist")])
    with pytest.raises(ValueError, match="characters.*mnist"):
        verification_markdown([row("characters"), row("mnist")])  # one caption cannot say both


# ----- the command line -----
@pytest.mark.parametrize("argv", [
    ["verify", "--data", "faces"],
    ["verify", "--seed", "-1"],
    ["verify", "--epochs", "0"],
    ["verify", "--methods", "nearest_neighbour"],
    ["verify", "--data", "mnist", "--methods", "arcface"],
])
def test_verify_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEWSHOT_FAST": "1", "FEWSHOT_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "FEWSHOT_PROGRESS": "0", "FEWSHOT_CACHE_DIR": str(tmp_path / "cache"),
           "FEWSHOT_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "fewshot", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def check_rows(rows: list[dict], data: str, methods: list[str]) -> None:
    assert [r["method"] for r in rows] == methods
    for row in rows:
        assert set(row) == set(VERIFY_COLUMNS)
        assert row["data"] == data
        for key in ("auc", "eer", "dir_at_fpir_0.1", "fpir_at_threshold"):
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, (key, row[key])
        assert set(row["tar_at_far"]) == set(row["far_at_threshold"]) == set(FARS)
        assert all(0.0 <= v <= 1.0 for v in row["tar_at_far"].values())
        tars = [row["tar_at_far"][k] for k in FARS]
        assert tars == sorted(tars, reverse=True)  # a stricter FAR accepts fewer genuine probes


def test_verify_json_schema_on_a_tiny_run(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--json", "--epochs", "1", "--methods", "pixels", "contrastive")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # stdout is JSON only; notes went to stderr
    assert "Characters: printed characters" in done.stderr
    assert "quick profile" in done.stderr
    check_rows(rows, "characters", ["pixels", "contrastive"])
    # the validation (calibration) characters choose each method's distance
    assert all(row["metric"] in ("euclidean", "cosine") for row in rows)
    typed = [VerificationRow(**{k: v for k, v in r.items() if k != "dir_at_fpir_0.1"},
                             dir_at_fpir=r["dir_at_fpir_0.1"]) for r in rows]
    for row in typed:
        row.tar_at_far = {float(k): v for k, v in row.tar_at_far.items()}
    table = verification_markdown(typed)
    lines = table.splitlines()
    assert lines[0] == "| method | dist. | AUC | EER |"  # two tables: one number per system,
    second = lines.index("| method | TAR@10% | TAR@1% | TAR@0.1% | DIR@10% |")  # then the rates
    assert "| contrastive |" in "\n".join(lines[:second]) and "| contrastive |" in "\n".join(lines[second:])
    assert lines[-1].startswith("*test identities only; thresholds calibrated")


def test_verify_mnist_pixels_text_table(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--data", "mnist", "--methods", "pixels")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["method", "dist.", "AUC", "EER"]
    assert lines[2].startswith("pixels")
    assert "mnist" in lines[-1]
    done = run_cli(tmp_path, "--data", "mnist", "--methods", "pixels", "--json")
    check_rows(json.loads(done.stdout), "mnist", ["pixels"])
    assert json.loads(done.stdout)[0]["metric"] == "euclidean"  # digits: no validation split
