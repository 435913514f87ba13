import numpy as np
import pytest
import torch

from mapcell._constants import MIN_CALIBRATION_CELLS
from mapcell.search import calibrate_thresholds, compute_prototypes, knn_vote, nearest_prototype
from mapcell.search._prototypes import MIN_THRESHOLD

CPU = torch.device("cpu")


def _distances(query: np.ndarray, references: np.ndarray) -> np.ndarray:
    return np.linalg.norm(query[:, None, :] - references[None, :, :], axis=2)


def _brute_nearest(query, prototypes, owners, n_types):
    distance = _distances(query, prototypes)
    per_type = np.stack([distance[:, owners == t].min(axis=1) for t in range(n_types)], axis=1)
    ordered = np.sort(per_type, axis=1)
    return per_type.argmin(axis=1), ordered[:, 0], 1 - ordered[:, 0] / ordered[:, 1]


def _brute_knn(query, references, types, n_types, k):
    distance = _distances(query, references)
    nearest, mean_distance, share = [], [], []
    for row in distance:
        picked = np.argsort(row)[:k]
        votes = np.bincount(types[picked], minlength=n_types)
        summed = np.bincount(types[picked], weights=row[picked], minlength=n_types)
        tied = np.flatnonzero(votes == votes.max())
        winner = tied[np.argmin(summed[tied])]
        nearest.append(winner)
        mean_distance.append(summed[winner] / votes[winner])
        share.append(votes[winner] / k)
    return np.array(nearest), np.array(mean_distance), np.array(share)


@pytest.fixture
def random_search():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(40, 5)).astype(np.float32)
    prototypes = rng.normal(size=(12, 5)).astype(np.float32)
    owners = np.repeat(np.arange(4), 3)
    rng.shuffle(owners)
    return query, prototypes, owners


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_nearest_prototype_matches_brute_force(random_search, chunk_size):
    query, prototypes, owners = random_search

    result = nearest_prototype(
        torch.from_numpy(query),
        torch.from_numpy(prototypes),
        torch.from_numpy(owners),
        4,
        device=CPU,
        chunk_size=chunk_size,
    )

    nearest, distance, confidence = _brute_nearest(query, prototypes, owners, 4)
    np.testing.assert_array_equal(result.nearest, nearest)
    np.testing.assert_allclose(result.distance, distance, atol=1e-4)
    np.testing.assert_allclose(result.confidence, confidence, atol=1e-4)


def test_nearest_prototype_confidence_compares_types_not_prototypes():
    query = torch.tensor([[0.0, 0.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.1], [2.0, 0.0]])
    owners = torch.tensor([0, 0, 1])

    result = nearest_prototype(query, prototypes, owners, 2, device=CPU, chunk_size=10)

    assert result.nearest.tolist() == [0]
    np.testing.assert_allclose(result.distance, [1.0])
    np.testing.assert_allclose(result.confidence, [0.5])  # 1 - 1/2, not 1 - 1/1.1


def test_nearest_prototype_single_type(random_search):
    query, prototypes, _ = random_search

    result = nearest_prototype(
        torch.from_numpy(query),
        torch.from_numpy(prototypes),
        torch.zeros(12, dtype=torch.long),
        1,
        device=CPU,
        chunk_size=7,
    )

    np.testing.assert_array_equal(result.nearest, 0)
    np.testing.assert_array_equal(result.confidence, 1)
    np.testing.assert_allclose(result.distance, _distances(query, prototypes).min(1), atol=1e-4)


@pytest.fixture
def line():
    # type 0 at x = 0, 0.1, 0.2; type 1 at x = 1, 1.1
    references = torch.tensor([[0.0, 0], [0.1, 0], [0.2, 0], [1.0, 0], [1.1, 0]])
    return references, torch.tensor([0, 0, 0, 1, 1])


@pytest.mark.parametrize(
    ("x", "k", "nearest", "distance", "confidence"),
    [
        (0.05, 3, 0, (0.05 + 0.05 + 0.15) / 3, 1.0),
        (0.9, 3, 1, (0.1 + 0.2) / 2, 2 / 3),
        (0.45, 2, 0, (0.25 + 0.35) / 2, 1.0),
        (0.62, 4, 1, (0.38 + 0.48) / 2, 0.5),  # 2 votes each: type 1's voters are nearer
        (0.58, 4, 0, (0.38 + 0.48) / 2, 0.5),  # 2 votes each: type 0's voters are nearer
        (0.5, 100, 0, (0.5 + 0.4 + 0.3) / 3, 0.6),  # k above the number of references
    ],
    ids=["unanimous", "majority", "pair", "tie-to-1", "tie-to-0", "k-clamped"],
)
def test_knn_vote_by_hand(line, x, k, nearest, distance, confidence):
    references, types = line

    result = knn_vote(
        torch.tensor([[x, 0.0]]), references, types, 2, k=k, device=CPU, chunk_size=4
    )

    assert result.nearest.tolist() == [nearest]
    np.testing.assert_allclose(result.distance, [distance], atol=1e-5)
    np.testing.assert_allclose(result.confidence, [confidence], atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_knn_vote_matches_brute_force(chunk_size):
    rng = np.random.default_rng(1)
    unit = rng.normal(size=(90, 4))
    unit = (unit / np.linalg.norm(unit, axis=1, keepdims=True)).astype(np.float32)
    query, references, types = unit[:30], unit[30:], rng.integers(0, 3, size=60)

    result = knn_vote(
        torch.from_numpy(query),
        torch.from_numpy(references),
        torch.from_numpy(types),
        3,
        k=5,
        device=CPU,
        chunk_size=chunk_size,
    )

    nearest, distance, share = _brute_knn(query, references, types, 3, k=5)
    np.testing.assert_array_equal(result.nearest, nearest)
    np.testing.assert_allclose(result.distance, distance, atol=1e-4)
    np.testing.assert_allclose(result.confidence, share)


def test_one_prototype_per_type_is_the_mean():
    rng = np.random.default_rng(2)
    embedding = rng.normal(size=(30, 3)).astype(np.float32)
    codes = rng.permutation(np.arange(30) % 3)

    prototypes, owners = compute_prototypes(
        torch.from_numpy(embedding), torch.from_numpy(codes), 3
    )

    expected = np.stack([embedding[codes == t].mean(axis=0) for t in range(3)])
    np.testing.assert_allclose(prototypes.numpy(), expected, atol=1e-6)
    assert owners.tolist() == [0, 1, 2]


@pytest.mark.parametrize(("n_small", "n_small_prototypes"), [(5, 1), (6, 3)], ids=["5", "6"])
def test_kmeans_prototypes(n_small, n_small_prototypes):
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    big = np.concatenate([c + rng.normal(scale=0.1, size=(10, 2)) for c in centres])
    small = 50 + rng.normal(size=(n_small, 2))
    embedding = torch.from_numpy(np.concatenate([big, small]).astype(np.float32))
    codes = torch.tensor([0] * 30 + [1] * n_small)

    prototypes, owners = compute_prototypes(embedding, codes, 2, per_type=3, seed=0)

    assert owners.tolist() == [0, 0, 0] + [1] * n_small_prototypes
    found = prototypes[:3].numpy()
    found = found[np.lexsort(found.T[::-1])]  # sort by x, then y
    cluster_means = big.reshape(3, 10, 2).mean(axis=1)
    expected = cluster_means[np.lexsort(cluster_means.T[::-1])]
    np.testing.assert_allclose(found, expected, atol=1e-5)
    if n_small_prototypes == 1:
        np.testing.assert_allclose(prototypes[3].numpy(), small.mean(axis=0), atol=1e-5)


def test_prototypes_of_an_empty_type():
    with pytest.raises(ValueError, match="cell type code 1 has no cells"):
        compute_prototypes(torch.zeros(4, 2), torch.tensor([0, 0, 2, 2]), 3)


def test_calibration_matches_numpy_quantiles():
    rng = np.random.default_rng(4)
    codes = np.repeat([0, 1, 2], [25, 12, 40])
    distances = rng.uniform(0.1, 1.0, size=len(codes)) * (1 + codes)

    calibration = calibrate_thresholds(distances, codes, 3, quantile=0.9)

    expected = [np.quantile(distances[codes == t], 0.9) for t in range(3)]
    np.testing.assert_allclose(calibration.thresholds, expected, rtol=1e-6)
    assert calibration.n_cells.tolist() == [25, 12, 40]
    assert calibration.pooled.tolist() == [False, False, False]


def test_calibration_pools_small_types():
    rng = np.random.default_rng(5)
    distances = np.concatenate([rng.uniform(0.2, 0.6, 30), [0.01, 0.02, 0.03], [1.5, 1.6, 1.7]])
    codes = np.repeat([0, 1, 2], [30, 3, 3])  # type 3 has no held-out cells

    calibration = calibrate_thresholds(distances, codes, 4, quantile=0.95)

    pooled = np.quantile(distances, 0.95)
    own = [np.quantile(distances[codes == t], 0.95) for t in range(3)]
    np.testing.assert_allclose(calibration.thresholds, [own[0], pooled, own[2], pooled], rtol=1e-6)
    assert calibration.n_cells.tolist() == [30, 3, 3, 0]
    assert calibration.types_pooled(["a", "b", "c", "d"]) == ["b", "c", "d"]


@pytest.mark.parametrize(
    ("n_cells", "pooled"),
    [(MIN_CALIBRATION_CELLS - 1, True), (MIN_CALIBRATION_CELLS, False)],
    ids=["below", "at"],
)
def test_calibration_pooling_boundary(n_cells, pooled):
    distances = np.concatenate([np.full(n_cells, 0.1), np.linspace(0.5, 1.0, 20)])
    codes = np.repeat([0, 1], [n_cells, 20])

    calibration = calibrate_thresholds(distances, codes, 2, quantile=0.5)

    assert calibration.pooled.tolist() == [pooled, False]
    expected = np.quantile(distances, 0.5) if pooled else 0.1
    np.testing.assert_allclose(calibration.thresholds[0], expected, rtol=1e-6)


def test_calibration_floor():
    calibration = calibrate_thresholds(np.zeros(20), np.zeros(20, dtype=int), 1, quantile=0.99)

    np.testing.assert_allclose(calibration.thresholds, [MIN_THRESHOLD])


@pytest.mark.parametrize("quantile", [0.0, 1.0, 1.5, -0.1])
def test_calibration_rejects_a_bad_quantile(quantile):
    with pytest.raises(ValueError, match=r"quantile must lie between 0 and 1 \(0\.95 to 0\.99"):
        calibrate_thresholds(np.ones(20), np.zeros(20, dtype=int), 1, quantile=quantile)


def test_calibration_without_cells():
    with pytest.raises(ValueError, match="no held-out cells to calibrate thresholds on"):
        calibrate_thresholds(np.array([]), np.array([], dtype=int), 2, quantile=0.95)


def test_halfway_to_nearest_type_uses_the_closest_prototypes_of_other_types():
    from mapcell.search._prototypes import halfway_to_nearest_type

    prototypes = torch.tensor([[0.0, 0.0], [4.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    owners = torch.tensor([0, 0, 1, 2])
    np.testing.assert_allclose(halfway_to_nearest_type(prototypes, owners, 3), [0.5, 0.5, 3.0])
    single = halfway_to_nearest_type(prototypes[:1], owners[:1], 1)
    assert np.isinf(single).all()


def test_floor_raises_only_the_thresholds_of_types_with_few_held_out_cells():
    rng = np.random.default_rng(0)
    # type 0: 50 held-out cells; type 1: 3 held-out cells
    distances = np.concatenate([rng.uniform(0, 0.1, 50), [0.05, 0.06, 0.07]])
    codes = np.array([0] * 50 + [1] * 3)
    without = calibrate_thresholds(distances, codes, 2, quantile=0.99)
    floored = calibrate_thresholds(
        distances, codes, 2, quantile=0.99, floor=np.array([0.8, 0.8], dtype=np.float32)
    )
    assert floored.thresholds[0] == pytest.approx(without.thresholds[0])
    assert floored.thresholds[1] == pytest.approx(0.8)
    assert without.thresholds[1] < 0.2
