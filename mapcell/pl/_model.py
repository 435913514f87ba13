from __future__ import annotations

import os
from typing import Literal

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from mapcell.model import MapCell
from mapcell.pl._utils import finish, new_axes, resolve_model

#: Curves of :func:`history`, as scvi-tools' ``model.history`` names them.
_CURVES = {"train_loss": "training cells", "validation_loss": "held-out cells"}


def _type_distances(model: MapCell) -> np.ndarray:
    # Types x types: the distance between the nearest prototypes of two types, 0 on the diagonal.
    state = model.reference
    between = torch.cdist(state.prototypes, state.prototypes)
    n_types = len(state.labels)
    owners = state.prototype_types
    distances = np.zeros((n_types, n_types))
    for i in range(n_types):
        for j in range(i + 1, n_types):
            block = between[owners == i][:, owners == j]
            distances[i, j] = distances[j, i] = float(block.min())
    return distances


def prototypes(
    model: MapCell | str | os.PathLike,
    *,
    order: Literal["similarity", "model"] = "similarity",
    cmap: str = "YlOrRd_r",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """How far apart the model holds its cell types: a heatmap of prototype distances.

    Each cell of the heatmap is the distance in the mapcell embedding between the nearest
    prototypes of two types (between their centres, with one prototype per type). Dark cells
    are types the model can hardly tell apart: a query cell between them gets a low
    confidence. Embedded cells lie on the unit sphere, so distances lie between 0 and 2.

    Parameters
    ----------
    model
        A trained :class:`~mapcell.MapCell`, or the path of its bundle.
    order
        ``"similarity"``: types next to their nearest types (average-linkage clustering);
        ``"model"``: the model's label order.
    cmap
        A matplotlib colormap name; the default shows near types dark red, far ones pale
        yellow (the diagonal is left white).
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    model = resolve_model(model)
    if order not in ("similarity", "model"):
        msg = f"order must be 'similarity' or 'model', not {order!r}"
        raise ValueError(msg)
    labels = model.labels
    distances = _type_distances(model)
    index = np.arange(len(labels))
    if order == "similarity" and len(labels) > 2:
        index = leaves_list(linkage(squareform(distances, checks=False), method="average"))
    distances = distances[np.ix_(index, index)]
    names = [labels[i] for i in index]

    size = 0.45 * len(names) + 2.5
    figure, ax = new_axes(ax, (size + 1.0, size))
    shown = np.where(np.eye(len(names), dtype=bool), np.nan, distances)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")  # a copy: the diagonal
    image = ax.imshow(shown, cmap=colormap, vmin=0, aspect="equal")
    limit = np.nanmax(shown) if len(names) > 1 else 1.0
    for (i, j), value in np.ndenumerate(shown):
        if np.isfinite(value):
            colour = "white" if value < 0.4 * limit else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(names)), names)
    ax.set_title("distance between cell types (dark: hard to tell apart)", fontsize=10)
    figure.colorbar(image, ax=ax, label="distance between nearest prototypes", shrink=0.8)
    return finish(figure, ax, show, return_fig)


def history(
    model: MapCell | str | os.PathLike,
    *,
    log: bool = False,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """The training curves: the loss of training and of held-out cells, per epoch.

    The held-out cells are the reference cells that did not train the network (they calibrate
    the thresholds); their best epoch is marked. A held-out curve that rises while training
    falls means the network learns the training cells by heart: train with more cells per type
    (``n_shots``) or fewer epochs.

    Parameters
    ----------
    model
        A trained :class:`~mapcell.MapCell`, or the path of its bundle (bundles keep the curves).
    log
        Draw the loss on a log scale.
    ax
        Draw into these axes instead of a new figure.
    show
        Show the figure (default: scanpy's ``sc.settings.autoshow``).
    return_fig
        Return the figure instead of showing it.

    Returns
    -------
    The figure with ``return_fig=True``; otherwise ``None`` when shown, else the axes.
    """
    model = resolve_model(model)
    recorded = getattr(model, "history_", None) or {}
    curves = {key: recorded[key] for key in _CURVES if key in recorded and len(recorded[key])}
    if "train_loss" not in curves:
        msg = (
            "this model has no training curves: it was loaded from a bundle written without "
            "its history, or trained outside mapcell; train it again to see them"
        )
        raise ValueError(msg)

    figure, ax = new_axes(ax, (5.0, 3.5))
    for key, name in _CURVES.items():
        if key not in curves:
            continue
        loss = np.asarray(curves[key], dtype=float).ravel()
        epochs = np.arange(1, len(loss) + 1)
        ax.plot(epochs, loss, marker="o", markersize=2.5, linewidth=1.2, label=name)
        if key == "validation_loss":
            best = int(np.nanargmin(loss))
            ax.axvline(epochs[best], color="grey", linestyle=":", linewidth=1)
            ax.plot(
                epochs[best],
                loss[best],
                marker="*",
                markersize=10,
                color="black",
                linestyle="none",
                label=f"best held-out loss (epoch {epochs[best]})",
            )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{model.loss_config['loss']} loss")
    ax.set_title(f"training curves ({len(curves['train_loss'])} epochs)", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return finish(figure, ax, show, return_fig)
