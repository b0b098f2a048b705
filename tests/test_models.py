"""The embedding CNN and its wrappers: shapes, architecture, shared weights, bad inputs; ``embed``."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from fewshot.margins import CosFace
from fewshot.models import ClassificationNet, EmbeddingNet, HeadNet, SiameseNet, TripletNet, embed


def images(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [2, 32])
def test_embedding_shapes(dim: int) -> None:
    net = EmbeddingNet(dim)
    assert net(images(3)).shape == (3, dim)
    assert net.embed_dim == dim


def test_architecture() -> None:
    net = EmbeddingNet(7)
    leaves = [m for m in net.modules() if not list(m.children())]
    kinds = [type(m) for m in leaves]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU] * 4 + [nn.Linear]
    convs = [m for m in leaves if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 32), (32, 32), (32, 64), (64, 64)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (2, 2)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [m.num_features for m in leaves if isinstance(m, nn.BatchNorm2d)] == [32, 32, 64, 64]
    assert [m.negative_slope for m in leaves if isinstance(m, nn.LeakyReLU)] == [0.1] * 4
    fc = leaves[-1]
    assert (fc.in_features, fc.out_features) == (3136, 7)


@pytest.mark.parametrize("wrapper", [SiameseNet, TripletNet])
def test_wrappers_share_the_same_parameters(wrapper: type) -> None:
    net = EmbeddingNet(4)
    model = wrapper(net)
    assert [id(p) for p in model.parameters()] == [id(p) for p in net.parameters()]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())


def test_siamese_step_through_one_branch_moves_the_other() -> None:
    model = SiameseNet(EmbeddingNet(3)).eval()
    x1, x2 = images(2, seed=1), images(2, seed=2)
    e1, e2 = model(x1, x2)
    torch.testing.assert_close(e2, model.embedding_net(x2))
    before = e2.detach().clone()
    e1.pow(2).sum().backward()  # gradient through the first branch only
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    _, after = model(x1, x2)
    assert not torch.allclose(before, after.detach())


def test_triplet_step_through_anchor_moves_positive_and_negative() -> None:
    model = TripletNet(EmbeddingNet(3)).eval()
    a, p, n = images(2, seed=1), images(2, seed=2), images(2, seed=3)
    ea, ep, en = model(a, p, n)
    before = (ep.detach().clone(), en.detach().clone())
    ea.pow(2).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    _, ep2, en2 = model(a, p, n)
    assert not torch.allclose(before[0], ep2.detach())
    assert not torch.allclose(before[1], en2.detach())


@pytest.mark.parametrize("make", [
    lambda net: net, SiameseNet, TripletNet, lambda net: ClassificationNet(net, 10),
    lambda net: HeadNet(net, CosFace(net.embed_dim, 10, scale=16.0))])
def test_get_embedding_matches_embedding_net(make) -> None:
    net = EmbeddingNet(5)
    model = make(net).eval()
    x = images(3)
    torch.testing.assert_close(model.get_embedding(x), net(x), rtol=0, atol=0)


def test_classification_logits_shape() -> None:
    assert ClassificationNet(EmbeddingNet(2))(images(4)).shape == (4, 10)
    assert ClassificationNet(EmbeddingNet(8), n_classes=3)(images(4)).shape == (4, 3)
    with pytest.raises(ValueError, match="n_classes=1"):
        ClassificationNet(EmbeddingNet(2), n_classes=1)


@pytest.mark.parametrize("bad", [0, -3, 2.0, "2", None])
def test_bad_embed_dim(bad) -> None:
    with pytest.raises(ValueError, match=re.escape(f"embed_dim={bad!r}")):
        EmbeddingNet(bad)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28), (2, 784)])
def test_bad_image_shape(shape: tuple) -> None:
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        EmbeddingNet(2)(torch.zeros(shape))


def test_classification_net_takes_images_only() -> None:
    model = ClassificationNet(EmbeddingNet(2), 3).eval()
    assert model(images(4)).shape == (4, 3)
    with pytest.raises(TypeError):
        model(images(4), torch.tensor([0, 1, 2, 0]))  # labels belong to a margin head (HeadNet)


def test_head_net_trains_the_head_and_applies_the_margin() -> None:
    net = EmbeddingNet(4)
    head = CosFace(4, 3, scale=10.0, margin=0.35)
    model = HeadNet(net, head).eval()
    assert {id(p) for p in head.parameters()} <= {id(p) for p in model.parameters()}  # the optimiser sees it
    x, y = images(5), torch.tensor([0, 1, 2, 0, 1])
    plain, with_margin = model(x), model(x, y)
    assert plain.shape == with_margin.shape == (5, 3)
    torch.testing.assert_close(plain, head(net(x), None))
    # CosFace subtracts s·m from each row's target logit only
    expected = plain.clone()
    expected[torch.arange(5), y] -= 10.0 * 0.35
    torch.testing.assert_close(with_margin, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# embed: many images in batches

def test_embed_in_batches_matches_one_pass() -> None:
    model = ClassificationNet(EmbeddingNet(3))
    model.train()
    x = images(10, seed=4)
    out = embed(model, x, batch_size=3)  # 4 batches: 3 + 3 + 3 + 1
    assert not model.training  # eval mode: BatchNorm uses its running statistics
    assert out.shape == (10, 3) and out.device.type == "cpu" and not out.requires_grad
    torch.testing.assert_close(out, model.get_embedding(x).detach(), rtol=1e-5, atol=1e-5)
    flat = embed(lambda b: b.flatten(1), x, batch_size=4)
    assert torch.equal(flat, x.flatten(1))


def test_embed_runs_channels_last_and_gives_the_model_back_unchanged() -> None:
    model = EmbeddingNet(8).eval()
    x = images(6, seed=5)
    weights = {n: (p, p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    seen = []
    model.features[1][0].register_forward_pre_hook(
        lambda m, _: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last)))
    out = embed(model, x)
    assert seen == [True]  # a 32→32 convolution ran with channels-last weights
    for name, p in model.named_parameters():  # the same Parameter, memory and layout as before
        assert p is weights[name][0] and p.data_ptr() == weights[name][1], name
        assert p.stride() == weights[name][2], name
    torch.testing.assert_close(out, model(x).detach(), rtol=1e-5, atol=1e-5)
    # a model already in channels_last (as during training) gives bit-identical embeddings
    same = EmbeddingNet(8).eval()
    same.load_state_dict(model.state_dict())
    same.to(memory_format=torch.channels_last)
    assert torch.equal(embed(same, x), out)
    assert same.features[1][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_embed_rejects_a_function_returning_the_wrong_number_of_rows() -> None:
    with pytest.raises(ValueError, match="returned 3 rows for 4 images"):
        embed(lambda b: b.flatten(1)[:3], images(4))
    with pytest.raises(ValueError, match="returned 5 rows for 4 images"):
        embed(lambda b: torch.cat([b.flatten(1), b.flatten(1)[:1]]), images(4))
    with pytest.raises(ValueError, match="returned list rows"):
        embed(lambda b: b.flatten(1).tolist(), images(4))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_embed_rejects_non_finite_embeddings(bad: float) -> None:
    def broken(b: torch.Tensor) -> torch.Tensor:
        out = b.flatten(1)[:, :2].clone()
        out[0, 1] = bad
        return out

    with pytest.raises(ValueError, match="embeddings holds 1 NaN or infinite"):
        embed(broken, images(4))
    nan_images = images(4)
    nan_images[2, 0, 10, 10] = math.nan
    with pytest.raises(ValueError, match="embeddings holds"):  # a network passes NaN images through
        embed(EmbeddingNet(2), nan_images)


def test_embed_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no images"):
        embed(EmbeddingNet(2), torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size=0"):
        embed(EmbeddingNet(2), images(2), batch_size=0)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        embed(EmbeddingNet(2), [[0.0]])
