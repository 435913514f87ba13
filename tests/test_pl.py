"""Every plot draws what it says: checked on its artists, not only that it did not raise."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scanpy as sc
from matplotlib.collections import PathCollection
from matplotlib.colors import TwoSlopeNorm, to_hex
from matplotlib.figure import Figure

import mapcell as mc
from mapcell._constants import UNKNOWN
from mapcell.pl import UNKNOWN_COLOR, UNKNOWN_EDGE
from tests.conftest import KNOWN_TYPES, make_counts


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def _mapped_model(_trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("pl") / "tiny"
    _trained_model.save(path)
    model = mc.MapCell.load(path)
    mc.tl.fit_reference_map(model, make_counts(seed=0, types=KNOWN_TYPES), seed=0)
    return model


@pytest.fixture(scope="module")
def _annotated(_mapped_model):
    query = make_counts(seed=1)
    mc.tl.annotate(query, _mapped_model)
    mc.tl.map_to_reference(query, _mapped_model, use_rep="X_mapcell")
    query.obsm["X_umap"] = query.obsm["X_mapcell"][:, :2].copy()
    assert (query.obs["mapcell_label"] == UNKNOWN).sum() > 10  # the delta cells, mostly
    return query


@pytest.fixture
def annotated(_annotated):
    """The synthetic query, annotated by the tiny model, placed on its map, with an X_umap."""
    return _annotated.copy()


@pytest.fixture
def mapped(_mapped_model):
    """The tiny model with a reference map (shared: plots do not change a model)."""
    return _mapped_model


def _hex(colours) -> set[str]:
    return {to_hex(c) for c in np.atleast_2d(colours)}


def _tick_labels(ticks) -> list[str]:
    return [tick.get_text() for tick in ticks]


# ---------------------------------------------------------------- colours


def test_type_palette_keeps_the_order_given_and_greys_unknown():
    palette = mc.pl.type_palette(["b", UNKNOWN, "a", "b"])
    assert list(palette) == ["b", "a", UNKNOWN]
    assert palette["b"] == sc.pl.palettes.default_20[0]
    assert palette["a"] == sc.pl.palettes.default_20[1]
    assert palette[UNKNOWN] == UNKNOWN_COLOR
    many = mc.pl.type_palette([f"type {i}" for i in range(30)])
    assert len(set(many.values())) == 31  # 30 types and Unknown, all told apart


# ---------------------------------------------------------------- embedding


def test_embedding_draws_unknown_grey_outlined_and_on_top(annotated):
    ax = mc.pl.embedding(annotated, "umap", "label", show=False)
    unknown = (annotated.obs["mapcell_label"] == UNKNOWN).to_numpy()

    top = max(ax.collections, key=lambda c: c.get_zorder())
    assert _hex(top.get_facecolors()) == {UNKNOWN_COLOR}
    assert _hex(top.get_edgecolors()) == {UNKNOWN_EDGE}
    np.testing.assert_allclose(top.get_offsets(), annotated.obsm["X_umap"][unknown])

    # scanpy's layer below draws every cell, Unknown last
    cells = ax.collections[0]
    assert len(cells.get_offsets()) == annotated.n_obs
    assert _hex(cells.get_facecolors()[-unknown.sum() :]) == {UNKNOWN_COLOR}
    legend = {text.get_text() for text in ax.get_legend().get_texts()}
    assert legend == {*KNOWN_TYPES, UNKNOWN}


def test_embedding_keeps_type_colours_in_model_order_and_leaves_adata_alone(annotated):
    uns_before = set(annotated.uns)
    ax = mc.pl.embedding(annotated, "umap", "nearest", show=False)
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    for i, label in enumerate(KNOWN_TYPES):
        assert _hex(handles[label].get_facecolor()) == {sc.pl.palettes.default_20[i]}
    assert set(annotated.uns) == uns_before  # no '..._colors' written into the user's data
    assert ax.get_title() == "nearest known type"


def test_embedding_colours_novelty_around_the_cutoff(annotated):
    ax = mc.pl.embedding(annotated, "umap", "novelty", show=False)
    norm = ax.collections[0].norm
    assert isinstance(norm, TwoSlopeNorm)
    assert norm.vcenter == pytest.approx(1.0)
    assert "above 1: Unknown" in ax.get_title()


def test_embedding_draws_the_reference_map_basis(annotated):
    ax = mc.pl.embedding(annotated, "mapcell_umap", "confidence", show=False)
    drawn = np.asarray(ax.collections[0].get_offsets())
    placed = annotated.obsm["X_mapcell_umap"]
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(placed, axis=0), rtol=1e-6)
    assert ax.get_title() == "confidence"


@pytest.mark.parametrize(
    ("basis", "color", "match"),
    [
        ("tsne", "label", r"adata\.obsm has no 'X_tsne'; compute it"),
        ("umap", "mood", r"color='mood' is neither a field of the annotation"),
    ],
    ids=["basis", "color"],
)
def test_embedding_names_what_is_missing(annotated, basis, color, match):
    with pytest.raises(KeyError, match=match):
        mc.pl.embedding(annotated, basis, color, show=False)


# ---------------------------------------------------------------- novelty


def _cutoff_line(ax):
    flat = [line for line in ax.lines if len(set(line.get_ydata())) == 1]
    assert len(flat) == 1
    return flat[0]


def test_novelty_draws_the_cutoff_and_the_share_above_it(annotated):
    ax = mc.pl.novelty(annotated, show=False)
    assert _cutoff_line(ax).get_ydata()[0] == pytest.approx(1.0)
    assert _tick_labels(ax.get_xticklabels()) == list(KNOWN_TYPES)

    nearest = annotated.obs["mapcell_nearest"].astype(str)
    above = annotated.obs["mapcell_novelty"] > 1.0
    shares = [f"{above[nearest == label].mean():.0%}" for label in KNOWN_TYPES]
    assert [t.get_text() for t in ax.texts if t.get_text().endswith("%")] == shares
    grey = [c for c in ax.collections if _hex(c.get_facecolors()) == {UNKNOWN_COLOR}]
    assert sum(len(c.get_offsets()) for c in grey) == above.sum()


def test_novelty_moves_the_cutoff_where_asked(annotated):
    ax = mc.pl.novelty(annotated, "cell_type", cutoff=0.5, log=True, show=False)
    assert _cutoff_line(ax).get_ydata()[0] == pytest.approx(0.5)
    assert ax.get_yscale() == "log"
    # the true types: the model's first, the novel one after them
    assert _tick_labels(ax.get_xticklabels()) == [*KNOWN_TYPES, "delta"]
    assert ax.get_xlabel() == "cell_type"
    texts = [t.get_text() for t in ax.texts]
    assert " cutoff 0.5" in texts


def test_novelty_draws_a_subset_of_a_large_group_but_counts_every_cell(annotated, monkeypatch):
    monkeypatch.setattr("mapcell.pl._annotation.MAX_POINTS", 5)
    ax = mc.pl.novelty(annotated, cutoff=0.5, show=False)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in points) <= 5 * len(KNOWN_TYPES)
    nearest = annotated.obs["mapcell_nearest"].astype(str)
    above = annotated.obs["mapcell_novelty"] > 0.5
    shares = [f"{above[nearest == label].mean():.0%}" for label in KNOWN_TYPES]
    assert [t.get_text() for t in ax.texts if t.get_text().endswith("%")] == shares


def test_novelty_refuses_a_cutoff_that_is_not_positive(annotated):
    with pytest.raises(ValueError, match=r"cutoff must be a positive novelty score"):
        mc.pl.novelty(annotated, cutoff=0, show=False)


def test_novelty_needs_an_annotation(query):
    with pytest.raises(KeyError, match=r"run mc\.tl\.annotate\(adata, model"):
        mc.pl.novelty(query, show=False)


# ---------------------------------------------------------------- confusion


def test_confusion_has_unknown_as_a_column_and_rows_that_sum_to_one(annotated):
    ax = mc.pl.confusion(annotated, "cell_type", show=False)
    assert _tick_labels(ax.get_xticklabels()) == [*KNOWN_TYPES, UNKNOWN]
    assert _tick_labels(ax.get_yticklabels()) == [*KNOWN_TYPES, "delta"]
    matrix = ax.images[0].get_array()
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    truth = annotated.obs["cell_type"].astype(str)
    called = annotated.obs["mapcell_label"].astype(str)
    delta_unknown = ((truth == "delta") & (called == UNKNOWN)).sum() / (truth == "delta").sum()
    assert matrix[-1, -1] == pytest.approx(delta_unknown)
    assert ax.get_xlabel() == "mapcell label"


def test_confusion_counts_cells(annotated):
    ax = mc.pl.confusion(annotated, "cell_type", values="count", show=False)
    matrix = ax.images[0].get_array()
    assert matrix.sum() == annotated.n_obs
    assert ax.images[0].colorbar.ax.get_ylabel() == "cells"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"true_key": "truth"}, KeyError, r"true_key 'truth' is not a column of adata\.obs"),
        ({"values": "percent"}, ValueError, r"values must be 'fraction' or 'count'"),
    ],
    ids=["true_key", "values"],
)
def test_confusion_refuses_bad_options(annotated, options, error, match):
    with pytest.raises(error, match=match):
        mc.pl.confusion(annotated, **{"true_key": "cell_type", **options}, show=False)


# ---------------------------------------------------------------- model plots


def test_prototypes_shows_the_distances_between_types(mapped):
    ax = mc.pl.prototypes(mapped, order="model", show=False)
    assert _tick_labels(ax.get_xticklabels()) == list(KNOWN_TYPES)
    assert _tick_labels(ax.get_yticklabels()) == list(KNOWN_TYPES)
    shown = ax.images[0].get_array()
    # A type has several prototypes: two types are as far apart as their nearest two.
    points = mapped.reference.prototypes.numpy()
    owners = mapped.reference.prototype_types.numpy()
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=-1)
    expected = np.array(
        [[pairwise[owners == i][:, owners == j].min() for j in range(3)] for i in range(3)]
    )
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(shown[off], expected[off], rtol=1e-5)
    assert np.ma.getmaskarray(shown)[~off].all() or np.isnan(shown.data[~off]).all()
    assert len([t for t in ax.texts if t.get_text()]) == 6


def test_prototypes_puts_near_types_side_by_side(mapped):
    ax = mc.pl.prototypes(mapped, show=False)
    labels = _tick_labels(ax.get_xticklabels())
    assert sorted(labels) == sorted(KNOWN_TYPES)
    shown = ax.images[0].get_array()
    # after clustering, the nearest pair of types are neighbours in the order
    i, j = np.unravel_index(np.nanargmin(np.ma.filled(shown, np.nan)), shown.shape)
    assert abs(int(i) - int(j)) == 1


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, a: mc.pl.prototypes(a), TypeError, r"take a trained mc\.MapCell"),
        (lambda m, a: mc.pl.prototypes(m, order="size"), ValueError, r"order must be"),
        (lambda m, a: mc.pl.history(a), TypeError, r"take a trained mc\.MapCell"),
    ],
    ids=["prototypes-adata", "prototypes-order", "history-adata"],
)
def test_model_plots_refuse_what_they_cannot_draw(mapped, annotated, call, error, match):
    with pytest.raises(error, match=match):
        call(mapped, annotated)


def test_history_draws_both_curves_and_the_best_epoch(mapped):
    ax = mc.pl.history(mapped, show=False)
    lines = {line.get_label(): line for line in ax.lines}
    train = mapped.history_["train_loss"].to_numpy().ravel()
    validation = mapped.history_["validation_loss"].to_numpy().ravel()
    np.testing.assert_allclose(lines["training cells"].get_ydata(), train)
    np.testing.assert_allclose(lines["held-out cells"].get_ydata(), validation)
    np.testing.assert_array_equal(
        lines["training cells"].get_xdata(), np.arange(1, len(train) + 1)
    )
    best = int(np.argmin(validation)) + 1
    assert lines[f"best held-out loss (epoch {best})"].get_xdata()[0] == best
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "contrastive loss"


def test_history_says_when_there_is_none(model):
    model.history_ = {}
    with pytest.raises(ValueError, match=r"this model has no training curves"):
        mc.pl.history(model, show=False)


# ---------------------------------------------------------------- reference map


def test_reference_map_draws_the_reference_pale_and_the_query_on_top(annotated, mapped):
    ax = mc.pl.reference_map(annotated, mapped, show=False)
    background, query = ax.collections[0], ax.collections[1]
    np.testing.assert_allclose(
        background.get_offsets(), mapped.reference_map.coordinates.numpy(), rtol=1e-6
    )
    assert background.get_alpha() < 0.5
    assert len(query.get_offsets()) == annotated.n_obs
    top = max(ax.collections, key=lambda c: c.get_zorder())
    assert _hex(top.get_facecolors()) == {UNKNOWN_COLOR}
    assert len(top.get_offsets()) == (annotated.obs["mapcell_label"] == UNKNOWN).sum()
    # the type names sit on the reference, the query's labels in the legend
    assert {t.get_text() for t in ax.texts} == set(KNOWN_TYPES)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {*KNOWN_TYPES, UNKNOWN}
    # a type has one colour in the background and in the query
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    first = (mapped.reference_map.types == 0).nonzero()[0, 0].item()
    assert _hex(background.get_facecolors()[first]) == _hex(
        handles[mapped.reference_map.labels[0]].get_facecolor()
    )


def test_reference_map_needs_placed_cells_and_a_map(annotated, mapped, model):
    del annotated.obsm["X_mapcell_umap"]
    with pytest.raises(KeyError, match=r"place the cells first with mc\.tl\.map_to_reference"):
        mc.pl.reference_map(annotated, mapped, show=False)
    with pytest.raises(ValueError, match=r"this model has no reference map"):
        mc.pl.reference_map(annotated, model, show=False)


# ---------------------------------------------------------------- what every plot shares


def _every_plot(adata, model):
    return {
        "embedding": lambda **kw: mc.pl.embedding(adata, "umap", **kw),
        "novelty": lambda **kw: mc.pl.novelty(adata, **kw),
        "confusion": lambda **kw: mc.pl.confusion(adata, "cell_type", **kw),
        "prototypes": lambda **kw: mc.pl.prototypes(model, **kw),
        "history": lambda **kw: mc.pl.history(model, **kw),
        "reference_map": lambda **kw: mc.pl.reference_map(adata, model, **kw),
    }


PLOTS = ["embedding", "novelty", "confusion", "prototypes", "history", "reference_map"]


@pytest.mark.parametrize("name", PLOTS)
def test_plots_take_ax_show_and_return_fig(annotated, mapped, name, monkeypatch):
    draw = _every_plot(annotated, mapped)[name]

    _, ax = plt.subplots()
    assert draw(ax=ax, show=False) is ax

    assert isinstance(draw(return_fig=True), Figure)

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    assert draw(show=True) is None
    assert shown == [True]


def test_plots_change_no_global_setting(annotated, mapped):
    rc_before = dict(matplotlib.rcParams)
    scanpy_before = (sc.settings.autoshow, sc.settings.figdir, sc.settings.verbosity)
    for draw in _every_plot(annotated, mapped).values():
        draw(show=False)
    assert dict(matplotlib.rcParams) == rc_before
    assert (sc.settings.autoshow, sc.settings.figdir, sc.settings.verbosity) == scanpy_before
