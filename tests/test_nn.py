import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mapcell.nn import ClassBalancedSampler, SiameseEncoder
from mapcell.nn._losses import (
    LOSSES,
    contrastive_loss,
    loss_params,
    metric_loss,
    pair_masks,
    supcon_loss,
    triplet_loss,
)
from mapcell.nn._sampler import MIN_BATCHES_PER_EPOCH

LOSS_FUNCTIONS = {"contrastive": contrastive_loss, "triplet": triplet_loss, "supcon": supcon_loss}

# Three types of four cells, each type on its own axis: distance sqrt(2) between types.
GROUPED = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
SEPARATED = F.one_hot(GROUPED, 3).float()
INTERLEAVED = torch.tensor([0, 1, 2] * 4)


def _loss(name, z, labels, batches=None):
    return metric_loss(name, z, labels, batches, **loss_params(name, None, None))


@pytest.mark.parametrize("name", LOSSES)
def test_separated_embedding_has_lower_loss(name):
    separated = _loss(name, SEPARATED, GROUPED)
    shuffled = _loss(name, SEPARATED, INTERLEAVED)

    assert separated.item() < shuffled.item() - 0.1


@pytest.mark.parametrize(
    ("name", "expected"),
    [("contrastive", 0.0), ("triplet", 0.0), ("supcon", math.log(3))],
)
def test_separated_embedding_loss_value(name, expected):
    # supcon: each cell has 3 positives at logit 10 and 8 negatives at logit 0
    assert _loss(name, SEPARATED, GROUPED).item() == pytest.approx(expected, abs=1e-3)


def test_contrastive_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])

    # positives (0,1), (1,0) at sqrt(2): pull 2; negatives (0,2), (2,0) at 0 and (1,2), (2,1)
    # beyond the margin: push (1 + 1 + 0 + 0) / 4
    assert contrastive_loss(z, labels, margin=1.0).item() == pytest.approx(2.5, abs=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_for_identical_embeddings(name):
    raw = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    raw[1] = raw[0]  # identical positive pair
    raw[4] = raw[0]  # identical negative pair
    raw.requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])

    loss = _loss(name, F.normalize(raw, dim=1), labels)
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(raw.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_metric_loss_dispatches(name):
    z = F.normalize(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    params = {"temperature": 0.5} if name == "supcon" else {"margin": 0.7}

    expected = LOSS_FUNCTIONS[name](z, labels, **params)

    assert metric_loss(name, z, labels, **params).item() == pytest.approx(expected.item())


def test_metric_loss_rejects_an_unknown_name():
    with pytest.raises(ValueError, match=r"loss must be one of \('contrastive'.*not 'hinge'"):
        metric_loss("hinge", SEPARATED, GROUPED)


@pytest.mark.parametrize(
    ("name", "margin", "temperature", "expected"),
    [
        ("contrastive", None, None, {"margin": 1.0}),
        ("triplet", None, None, {"margin": 0.3}),
        ("supcon", None, None, {"temperature": 0.1}),
        ("triplet", 1, None, {"margin": 1.0}),
        ("supcon", None, 0.5, {"temperature": 0.5}),
    ],
    ids=["contrastive", "triplet", "supcon", "margin", "temperature"],
)
def test_loss_params(name, margin, temperature, expected):
    assert loss_params(name, margin, temperature) == expected


@pytest.mark.parametrize(
    ("name", "margin", "temperature", "match"),
    [
        ("supcon", 0.5, None, r"margin applies to the 'contrastive' and 'triplet' losses"),
        ("contrastive", None, 0.2, r"temperature applies to the 'supcon' loss; 'contrastive'"),
        ("triplet", None, 0.2, r"temperature applies to the 'supcon' loss; 'triplet'"),
        ("hinge", None, None, r"loss must be one of"),
    ],
    ids=["margin-supcon", "temperature-contrastive", "temperature-triplet", "unknown"],
)
def test_loss_params_errors(name, margin, temperature, match):
    with pytest.raises(ValueError, match=match):
        loss_params(name, margin, temperature)


def test_pair_masks_without_batches():
    positive, negative = pair_masks(torch.tensor([0, 0, 1]))

    assert positive.tolist() == [[False, True, False], [True, False, False], [False] * 3]
    assert negative.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_pair_masks_prefer_cross_batch_positives():
    labels = torch.tensor([0, 0, 0, 1, 1])
    batches = torch.tensor([0, 0, 1, 0, 0])

    positive, negative = pair_masks(labels, batches)

    # type 0 pairs across batches; type 1 lives in one batch, so it keeps its same-batch pair
    expected = [
        [0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
    ]
    assert positive.int().tolist() == expected
    assert torch.equal(negative, pair_masks(labels)[1])


SIZES = (3, 20, 20, 40, 7)


def _labels(sizes=SIZES) -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(len(sizes)), sizes))


def _epoch(sampler) -> list[list[int]]:
    return [batch.tolist() for batch in sampler]


def test_sampler_batches_are_class_balanced():
    labels = _labels()
    sampler = ClassBalancedSampler(labels, types_per_batch=3, cells_per_type=8, seed=0)

    for batch in sampler:
        types, counts = np.unique(labels[batch], return_counts=True)
        assert len(types) == 3
        assert len(set(batch.tolist())) == len(batch)
        np.testing.assert_array_equal(counts, np.minimum(8, np.array(SIZES)[types]))


def test_sampler_caps_types_per_batch():
    sampler = ClassBalancedSampler(_labels(), types_per_batch=16, cells_per_type=2, seed=0)

    assert sampler.types_per_batch == len(SIZES)
    assert all(len(batch) == 2 * len(SIZES) for batch in sampler)


@pytest.mark.parametrize(("seed", "same"), [(7, True), (8, False)], ids=["same", "other"])
def test_sampler_seed(seed, same):
    first = ClassBalancedSampler(_labels(), types_per_batch=2, cells_per_type=4, seed=7)
    second = ClassBalancedSampler(_labels(), types_per_batch=2, cells_per_type=4, seed=seed)

    assert (_epoch(first) == _epoch(second)) is same


def test_sampler_epochs_differ_and_repeat():
    first = ClassBalancedSampler(_labels(), types_per_batch=2, cells_per_type=4, seed=7)
    second = ClassBalancedSampler(_labels(), types_per_batch=2, cells_per_type=4, seed=7)

    first_epochs = [_epoch(first), _epoch(first)]
    second_epochs = [_epoch(second), _epoch(second)]

    assert first_epochs[0] != first_epochs[1]
    assert first_epochs == second_epochs


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [((3, 4), MIN_BATCHES_PER_EPOCH), ((500, 500), 125)],
    ids=["few-shot", "large"],
)
def test_sampler_length(sizes, expected):
    sampler = ClassBalancedSampler(_labels(sizes), types_per_batch=2, cells_per_type=4, seed=0)

    assert len(sampler) == expected
    assert len(_epoch(sampler)) == expected


@pytest.mark.parametrize("n_latent", [2, 16])
def test_encoder_output_is_unit_norm(n_latent):
    torch.manual_seed(0)
    encoder = SiameseEncoder(n_input=10, n_latent=n_latent, n_hidden=8).eval()

    z = encoder(torch.rand(5, 10) * 5)

    assert z.shape == (5, n_latent)
    np.testing.assert_allclose(z.norm(dim=1).detach().numpy(), 1.0, atol=1e-6)


def test_encoder_input_scaling_replaces_zero_std():
    encoder = SiameseEncoder(n_input=3)

    encoder.set_input_scaling(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 0.0]))

    assert encoder.gene_mean.tolist() == [1.0, 2.0, 3.0]
    assert encoder.gene_std.tolist() == [1.0, 2.0, 1.0]
    assert {"gene_mean", "gene_std"} <= set(encoder.state_dict())


def test_encoder_standardises_its_input():
    torch.manual_seed(0)
    plain = SiameseEncoder(n_input=4, n_latent=3, n_hidden=8).eval()
    scaled = copy.deepcopy(plain)
    mean, std = torch.tensor([1.0, 0.0, 2.0, 5.0]), torch.tensor([2.0, 1.0, 0.5, 0.0])
    x = torch.rand(6, 4) * 4

    scaled.set_input_scaling(mean, std)

    expected = plain((x - mean) / torch.where(std > 0, std, 1.0))
    torch.testing.assert_close(scaled(x), expected)
