"""fewshot.verify: the gallery, verification rates, calibration and open-set rates, on hand-made data."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
import torch

from fewshot.verify import (FAR_TARGETS, Gallery, model_fingerprint, open_set_rates, threshold_at_far,
                            verification_rates)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def img(*points: tuple[float, float]) -> torch.Tensor:
    """Tiny 'images' (K, 1, 1, 2) whose flattened embedding is the 2-D point itself."""
    return torch.tensor(points, dtype=torch.float32).reshape(len(points), 1, 1, 2)


class Net(torch.nn.Module):
    """A linear embedding 2 → 2 with a given weight; records its mode and grad state when called."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(weight * torch.eye(2))
        self.seen: list[tuple[bool, bool]] = []

    def get_embedding(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.lin(x.flatten(1))


def points_gallery(metric: str = "euclidean") -> Gallery:
    g = Gallery(flat, metric)
    g.enrol("a", img((0, 0)))
    g.enrol(7, img((3, 4)))
    return g


def pairs(genuine: list[float], impostor: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.tensor(genuine + impostor, dtype=torch.float32)
    same = torch.tensor([True] * len(genuine) + [False] * len(impostor))
    return d, same


# ----- Gallery -----
def test_identify_nearest_identity_and_rejection() -> None:
    g = points_gallery()
    ids, d = g.identify(img((0, 1), (3, 3), (10, 0)))
    assert ids == ["a", 7, 7]
    assert torch.allclose(d, torch.tensor([1.0, 1.0, math.sqrt(65)]))
    ids, d = g.identify(img((0, 1), (3, 3), (10, 0)), threshold=2.0)
    assert ids == ["a", 7, None]  # (10, 0) is 8.06 from its nearest: unknown
    ids, _ = g.identify(img((0, 1)), threshold=1.0)  # distance == threshold is accepted
    assert ids == ["a"]
    ids, d = g.identify(torch.tensor([[[3.0, 4.0]]]))  # one (C, H, W) image
    assert ids == [7] and d.shape == (1,) and d.item() == 0.0


def test_verify_accepts_within_threshold() -> None:
    g = points_gallery()
    accepted, d = g.verify("a", img((0, 1), (1, 1), (2, 0)), threshold=1.5)
    assert accepted.dtype == torch.bool
    assert accepted.tolist() == [True, True, False]
    assert torch.allclose(d, torch.tensor([1.0, math.sqrt(2), 2.0]))
    accepted, _ = g.verify(7, img((3, 4)), threshold=0.0)
    assert accepted.tolist() == [True]


def test_cosine_metric() -> None:
    g = Gallery(flat, "cosine")
    g.enrol("x", img((1, 0)))
    g.enrol("y", img((0, 1)))
    ids, d = g.identify(img((2, 0), (-1, 0), (1, 1)))
    assert ids == ["x", "y", "x"]  # (1, 1) ties: the identity enrolled first
    assert torch.allclose(d, torch.tensor([0.0, 1.0, 1 - 1 / math.sqrt(2)]), atol=1e-6)
    accepted, d = g.verify("x", img((5, 0), (0, 3)), threshold=0.5)
    assert accepted.tolist() == [True, False] and torch.allclose(d, torch.tensor([0.0, 1.0]), atol=1e-6)


def test_enrol_k_images_stores_the_mean() -> None:
    g = Gallery(flat)
    assert g.enrol("m", img((0, 0), (2, 4), (1, -1))) is False
    assert torch.allclose(g.templates, torch.tensor([[1.0, 1.0]]))


def test_re_enrolment_replaces_and_says_so() -> None:
    g = points_gallery()
    assert g.enrol("a", img((10, 10))) is True
    assert len(g) == 2 and g.identities == ["a", 7]
    assert torch.equal(g.templates[0], torch.tensor([10.0, 10.0]))
    assert g.identify(img((0, 0)))[0] == [7]


def test_len_identities_repr() -> None:
    g = points_gallery()
    assert len(g) == 2 and g.identities == ["a", 7] and "a" in g and "b" not in g
    g.identities.append("z")  # a copy
    assert g.identities == ["a", 7]
    assert repr(g) == "Gallery(2 identities ['a', 7], metric='euclidean', dim=2, image_shape=(1, 1, 2))"
    assert repr(Gallery(flat, "cosine")) == "Gallery(empty, metric='cosine')"


def test_module_embed_runs_in_eval_no_grad_and_restores_mode() -> None:
    net = Net(2.0)
    net.train()
    g = Gallery(net.get_embedding)
    g.enrol("a", img((1, 1)))
    assert net.seen == [(False, False)] and net.training
    assert torch.equal(g.templates, torch.tensor([[2.0, 2.0]]))
    assert not g.templates.requires_grad


def test_embed_in_chunks_of_1024() -> None:
    calls = []

    def embed(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x.flatten(1)

    g = Gallery(embed)
    g.enrol("a", torch.zeros(2500, 1, 1, 2))
    assert calls == [1024, 1024, 452]


# ----- save / load -----
def test_save_load_round_trip(tmp_path) -> None:
    g = Gallery(flat, "cosine")
    g.enrol(1, img((0.1, 0.7), (0.3, 0.2)))
    g.enrol("bob", img((1 / 3, 2 / 7)))
    path = tmp_path / "gallery.pt"
    g.save(path)
    h = Gallery.load(path, flat)
    assert h.identities == [1, "bob"] and type(h.identities[0]) is int
    assert torch.equal(h.templates, g.templates) and h.metric == "cosine"
    probes = img((0.5, 0.5), (0.0, 1.0))
    assert h.identify(probes)[0] == g.identify(probes)[0]
    assert torch.equal(h.identify(probes)[1], g.identify(probes)[1])
    assert repr(h) == repr(g)


def test_load_with_a_different_model_raises(tmp_path) -> None:
    net1, net2 = Net(1.0), Net(2.0)
    g = Gallery(net1.get_embedding)
    g.enrol("a", img((1, 2)))
    path = tmp_path / "gallery.pt"
    g.save(path)
    assert torch.equal(Gallery.load(path, net1.get_embedding).templates, g.templates)
    with pytest.raises(ValueError, match="fingerprint"):
        Gallery.load(path, net2.get_embedding)
    with pytest.raises(ValueError, match="fingerprint"):
        Gallery.load(path, flat)  # a plain function cannot stand for the saved model
    with torch.no_grad():
        net1.lin.weight.mul_(1.001)  # retrained in place: also a different model
    with pytest.raises(ValueError, match="fingerprint"):
        Gallery.load(path, net1.get_embedding)


def test_fingerprint() -> None:
    assert model_fingerprint(flat) is None
    a, b = Net(1.0), Net(1.0)
    assert model_fingerprint(a.get_embedding) == model_fingerprint(b.get_embedding) == model_fingerprint(a)
    assert model_fingerprint(a.get_embedding) != model_fingerprint(Net(-1.0).get_embedding)


def test_load_rejects_other_files(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a saved Gallery"):
        Gallery.load(path, flat)



def test_load_names_missing_truncated_and_foreign_files(tmp_path) -> None:
    g = Gallery(flat)
    g.enrol("a", img((1, 2)))
    good = tmp_path / "gallery.pt"
    g.save(good)
    with pytest.raises(FileNotFoundError, match=re.escape(f"no gallery file at {tmp_path / 'nope.pt'}")):
        Gallery.load(tmp_path / "nope.pt", flat)
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        Gallery.load(tmp_path, flat)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("enrolled: alice, bob\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, text, empty):
        with pytest.raises(ValueError, match=re.escape(f"{path} is not a saved Gallery: torch.load cannot "
                                                       "read it")):
            Gallery.load(path, flat)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        Gallery.load(3, flat)
    saved = torch.load(good, weights_only=True)
    for change, words in ((lambda d: d.pop("templates"), "it lacks ['templates']"),
                          (lambda d: d.update(templates=torch.zeros(3)), "templates is not a 2-D float"),
                          (lambda d: d.update(identities=["a", "b"]), "identities ['a', 'b'] do not match"),
                          (lambda d: d.update(metric="dot"), "metric='dot'"),
                          (lambda d: d.update(image_shape=[1, -28]), "image_shape=[1, -28]")):
        damaged = dict(saved)
        change(damaged)
        torch.save(damaged, tmp_path / "damaged.pt")
        with pytest.raises(ValueError, match=re.escape(f"damaged.pt is a damaged Gallery file: {words}")):
            Gallery.load(tmp_path / "damaged.pt", flat)

# ----- Gallery bad input -----
def test_gallery_bad_input() -> None:
    with pytest.raises(ValueError, match="metric='manhattan'"):
        Gallery(flat, "manhattan")
    with pytest.raises(TypeError, match="callable"):
        Gallery("flat")
    empty = Gallery(flat)
    with pytest.raises(ValueError, match="empty"):
        empty.identify(img((0, 0)))
    with pytest.raises(ValueError, match="empty"):
        empty.verify("a", img((0, 0)), 1.0)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        empty.enrol("a", torch.zeros(2, 2))
    g = points_gallery()
    with pytest.raises(ValueError, match="identity='zed'"):
        g.verify("zed", img((0, 0)), 1.0)
    with pytest.raises(ValueError, match=r"shape \(1, 1, 1, 3\)"):
        g.identify(torch.zeros(1, 1, 1, 3))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 1, 2\)"):
        g.enrol("b", torch.zeros(1, 2, 1, 2))
    with pytest.raises(ValueError, match="empty"):
        g.identify(torch.zeros(0, 1, 1, 2))
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ValueError, match="threshold"):
            g.verify("a", img((0, 0)), bad)
        with pytest.raises(ValueError, match="threshold"):
            g.identify(img((0, 0)), threshold=bad)
    with pytest.raises(TypeError, match="identity=True"):
        g.enrol(True, img((0, 0)))
    with pytest.raises(TypeError, match="identity=1.5"):
        g.enrol(1.5, img((0, 0)))
    with pytest.raises(ValueError, match="NaN"):
        g.identify(img((float("nan"), 0)))
    assert g.identities == ["a", 7]  # nothing half-enrolled


def test_bad_embed_outputs() -> None:
    nan = Gallery(lambda x: torch.full((len(x), 2), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        nan.enrol("a", img((0, 0)))
    short = Gallery(lambda x: x.flatten(1)[:1])
    with pytest.raises(ValueError, match="expected 2 rows"):
        short.enrol("a", img((0, 0), (1, 1)))
    assert len(nan) == 0 and len(short) == 0
    g = points_gallery()
    g.embed = lambda x: torch.zeros(len(x), 3)
    with pytest.raises(ValueError, match="3-D"):
        g.identify(img((0, 0)))


# ----- verification rates -----
def direct_auc(d: torch.Tensor, same: torch.Tensor) -> float:
    """P(genuine distance < impostor distance) + ½ P(tie), over all genuine × impostor pairs."""
    g, i = d[same][:, None], d[~same][None, :]
    return ((g < i).float() + 0.5 * (g == i).float()).mean().item()


def check_roc_points(rates) -> None:
    """Every ROC point equals FAR/TAR counted directly at its threshold."""
    for fpr, tpr, t in zip(rates.fpr, rates.tpr, rates.thresholds):
        if t == -np.inf:
            assert fpr == 0 and tpr == 0
            continue
        far, frr = rates.far_frr(float(t))
        assert fpr == pytest.approx(far) and tpr == pytest.approx(1 - frr)


def test_rates_perfectly_separable() -> None:
    r = verification_rates(*pairs([0.1, 0.2], [0.5, 0.7]))
    assert r.auc == 1.0 and r.eer == 0.0 and r.eer_threshold == pytest.approx(0.2)
    assert r.n_genuine == 2 and r.n_impostor == 2
    assert r.thresholds[0] == -np.inf and np.all(np.diff(r.thresholds) > 0)
    assert np.allclose(r.fpr, [0, 0, 0, 0.5, 1]) and np.allclose(r.tpr, [0, 0.5, 1, 1, 1])
    assert np.allclose(r.frr, 1 - r.tpr)
    check_roc_points(r)


def test_rates_inseparable() -> None:
    d, same = pairs([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    r = verification_rates(d, same)
    assert r.auc == 0.5 == direct_auc(d, same)
    # points (fpr, tpr) = (0,0), (⅓,⅓), (⅔,⅔), (1,1); |FRR − FAR| = 1, ⅓, ⅓, 1: the first minimum
    assert r.eer == pytest.approx(0.5) and r.eer_threshold == 1.0
    check_roc_points(r)


def test_rates_with_ties() -> None:
    d, same = pairs([1.0, 2.0], [2.0, 3.0])  # a genuine and an impostor pair tie at 2
    r = verification_rates(d, same)
    assert r.auc == pytest.approx(3.5 / 4) and r.auc == pytest.approx(direct_auc(d, same))
    assert np.allclose(r.thresholds[1:], [1, 2, 3])
    assert np.allclose(r.fpr, [0, 0, 0.5, 1]) and np.allclose(r.tpr, [0, 0.5, 1, 1])
    # |FRR − FAR| = 1, ½, ½, 1 → first minimum at T = 1: EER = (½ + 0) / 2
    assert r.eer == pytest.approx(0.25) and r.eer_threshold == 1.0
    check_roc_points(r)


def test_rates_match_direct_computation_on_random_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    d = torch.randint(0, 8, (60,), generator=gen).float()
    same = torch.rand(60, generator=gen) < 0.4
    d[same] -= 2  # genuine pairs nearer, with many ties
    r = verification_rates(d, same)
    assert r.auc == pytest.approx(direct_auc(d, same))
    check_roc_points(r)
    gap = np.abs(r.frr - r.fpr)
    i = int(np.flatnonzero(np.isclose(gap, gap.min()))[0])  # the first minimum
    assert r.eer == pytest.approx((r.frr[i] + r.fpr[i]) / 2) and r.eer_threshold == r.thresholds[i]


def test_far_frr_by_hand() -> None:
    r = verification_rates(*pairs([1.0, 2.0], [2.0, 3.0]))
    assert r.far_frr(2.0) == (0.5, 0.0)
    assert r.far_frr(1.5) == (0.0, 0.5)
    assert r.far_frr(-1.0) == (0.0, 1.0)
    assert r.far_frr(3.0) == (1.0, 0.0)
    with pytest.raises(ValueError, match="threshold=nan"):
        r.far_frr(float("nan"))


def test_tar_at_far_by_hand_and_left_out_targets() -> None:
    impostor = [float(10 + k) for k in range(100)]  # 10 … 109
    genuine = [0.0, 15.0, 19.5, 200.0]
    r = verification_rates(*pairs(genuine, impostor))
    # FAR ≤ 0.1 allows at most 10 impostors (10 … 19) accepted: T < 20 → genuine 0, 15, 19.5 → 3/4
    assert r.tar_at_far == {0.1: 0.75}  # 0.01 and 0.001 need 1,000 and 10,000 impostors
    assert verification_rates(*pairs(genuine, impostor[:99])).tar_at_far == {}
    many = [float(10 + k) / 10 for k in range(1000)]  # 1.0 … 100.9
    r = verification_rates(*pairs([0.5, 1.05, 2.05, 500.0], many))
    # FAR ≤ 0.01: ≤ 10 impostors (1.0 … 1.9), T < 2: 0.5, 1.05 → ½; FAR ≤ 0.1: T < 11 → ¾
    assert r.tar_at_far == {0.1: 0.75, 0.01: 0.5}
    assert set(FAR_TARGETS) == {0.1, 0.01, 0.001}


def test_rates_bad_input() -> None:
    d, same = pairs([1.0, 2.0], [3.0])
    with pytest.raises(ValueError, match="differ in length"):
        verification_rates(d, same[:2])
    with pytest.raises(ValueError, match="0 impostor"):
        verification_rates(*pairs([1.0, 2.0], []))
    with pytest.raises(ValueError, match="0 genuine"):
        verification_rates(*pairs([], [1.0]))
    with pytest.raises(ValueError, match="NaN"):
        verification_rates(torch.tensor([1.0, float("nan"), 3.0]), same)
    with pytest.raises(ValueError, match="bool"):
        verification_rates(d, same.long())
    with pytest.raises(TypeError, match="same"):
        verification_rates(d, [True, True, False])


# ----- calibration -----
def calibration_pairs(seed: int, n_genuine: int = 100, n_impostor: int = 400):
    gen = torch.Generator().manual_seed(seed)
    d = torch.cat([1 + 0.4 * torch.randn(n_genuine, generator=gen),
                   2 + 0.4 * torch.randn(n_impostor, generator=gen)])
    same = torch.arange(n_genuine + n_impostor) < n_genuine
    return d, same


def test_threshold_at_far_on_calibration_split() -> None:
    d, same = calibration_pairs(seed=1)
    for target in (0.1, 0.05, 0.01):
        t = threshold_at_far(d, same, target)
        far, _ = verification_rates(d, same).far_frr(t)
        assert far <= target
        assert t in d.tolist()  # an observed distance
        above = d[d > t].min().item()  # the next larger observed distance breaks the target
        assert verification_rates(d, same).far_frr(above)[0] > target


def test_threshold_at_far_by_hand() -> None:
    d, same = pairs([0.5, 1.5, 2.5], [1.0, 2.0, 3.0, 4.0])
    assert threshold_at_far(d, same, 0.25) == 1.5  # FAR(1.5) = ¼; FAR(2.0) = ½
    assert threshold_at_far(d, same, 0.5) == 2.5
    assert threshold_at_far(d, same, 1.0) == 4.0


def test_calibration_never_touches_the_test_split() -> None:
    assert list(inspect.signature(threshold_at_far).parameters) == ["distances", "same", "far"]
    cal_d, cal_s = calibration_pairs(seed=1)
    t = threshold_at_far(cal_d, cal_s, 0.05)
    for seed in (2, 3):  # whatever the test split holds, the threshold is the same
        test_d, test_s = calibration_pairs(seed=seed)
        assert threshold_at_far(cal_d, cal_s, 0.05) == t
        far_test, _ = verification_rates(test_d, test_s).far_frr(t)  # reported on test, tuned on cal
        assert 0 <= far_test <= 1
    assert "never on the test split" in threshold_at_far.__doc__


def test_threshold_at_far_bad_input() -> None:
    d, same = pairs([0.5], [1.0, 2.0, 3.0, 4.0])
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="far="):
            threshold_at_far(d, same, bad)
    with pytest.raises(ValueError, match="at least 10 impostor pairs"):
        threshold_at_far(d, same, 0.1)
    with pytest.raises(ValueError, match="tie"):
        threshold_at_far(*pairs([5.0], [1.0, 1.0, 3.0, 4.0]), 0.25)


# ----- open-set identification -----
def test_open_set_rates_by_hand() -> None:
    mated = (["a", "b", "a", "c"], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    truth = ["a", "b", "b", "c"]  # the third search finds the wrong identity
    nonmated = (["a", "b"], torch.tensor([0.25, 0.5]))
    r = open_set_rates(mated, truth, nonmated, thresholds=torch.tensor([0.15, 0.35, 1.0]))
    assert np.allclose(r.dir, [0.25, 0.5, 0.75]) and np.allclose(r.fpir, [0.0, 0.5, 1.0])
    assert r.n_mated == 4 and r.n_nonmated == 2
    assert r.dir_at_fpir(0.0) == 0.5  # T < 0.25: searches at 0.1 and 0.2
    assert r.dir_at_fpir(0.5) == 0.75  # T < 0.5: 0.1, 0.2 and 0.4
    assert r.dir_at_fpir(1.0) == 0.75
    assert r.at(0.3) == (0.5, 0.5)
    r = open_set_rates(mated, truth, nonmated)  # default: every observed distance
    assert np.allclose(r.thresholds, [0.1, 0.2, 0.25, 0.3, 0.4, 0.5])
    assert np.allclose(r.dir, [0.25, 0.5, 0.5, 0.5, 0.75, 0.75])
    assert np.allclose(r.fpir, [0, 0, 0.5, 0.5, 0.5, 1])


def test_open_set_from_gallery_identify() -> None:
    g = points_gallery()
    mated = g.identify(img((0, 1), (3, 2), (2, 3)))  # a at 1; 7 at 2; (2, 3) → 7 at √2
    nonmated = g.identify(img((10, 10), (0, 3)))  # 7 at √85 ≈ 9.2; a at 3 (7 at √10)
    r = open_set_rates(mated, ["a", 7, "a"], nonmated, thresholds=torch.tensor([1.5, 3.0, 20.0]))
    assert np.allclose(r.dir, [1 / 3, 2 / 3, 2 / 3]) and np.allclose(r.fpir, [0, 0.5, 1])


def test_open_set_bad_input() -> None:
    mated = (["a"], torch.tensor([0.1]))
    with pytest.raises(ValueError, match="None"):
        open_set_rates((["a", None], torch.tensor([0.1, 5.0])), ["a", "b"], mated)
    with pytest.raises(ValueError, match="true_identities"):
        open_set_rates(mated, ["a", "b"], mated)
    with pytest.raises(ValueError, match="NaN"):
        open_set_rates(mated, ["a"], (["a"], torch.tensor([float("nan")])))
    with pytest.raises(ValueError, match="B ≥ 1"):
        open_set_rates(mated, ["a"], ([], torch.tensor([])))
    with pytest.raises(TypeError, match="identify"):
        open_set_rates(torch.tensor([0.1]), ["a"], mated)
    r = open_set_rates(mated, ["a"], mated)
    with pytest.raises(ValueError, match="target="):
        r.dir_at_fpir(1.5)


def test_one_embedding_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gallery embeds through ``models.embed`` (one path for batching, device and checks), and
    there is one ``EmbedFn``."""
    import fewshot.models as models
    import fewshot.verify as verify

    assert verify.EmbedFn is models.EmbedFn
    calls = []

    def spy(fn, images, batch_size=1024):
        calls.append(len(images))
        return models.embed(fn, images, batch_size)

    monkeypatch.setattr(verify, "embed_images", spy)
    g = points_gallery()
    g.identify(img((0, 0), (1, 1)))
    assert calls and calls[-1] == 2


def test_a_modules_method_embeds_on_its_device_in_eval_mode_and_keeps_its_mode() -> None:
    import fewshot.models as models

    net = models.EmbeddingNet(4).train()
    out = models.embed(net.get_embedding, torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 4) and net.training  # eval while embedding, training again after
    assert models.module_of(net.get_embedding) is net and models.module_of(len) is None
