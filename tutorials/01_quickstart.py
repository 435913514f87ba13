# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   language_info:
#     name: python
# ---

# %% [markdown]
# # Quick start
#
# Train a reference on part of scanpy's `pbmc68k_reduced` (shipped with scanpy, no download),
# keep the B cells out of it, annotate the other cells, and look at what the model did: the
# training curves, where the B cells' novelty scores fall against the cutoff, which types the
# model confuses, and the query drawn on the reference's own map. Then save the model, load it
# back, and check that the reloaded model labels and places every cell the same way.
#
# Run it as a script (`python tutorials/01_quickstart.py`) or open it as a notebook with
# jupytext; it takes about a minute on a laptop CPU.

# %%
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import mapcell as mc

mc.settings.progress_bar = False

# %% [markdown]
# ## Data: a reference without B cells, and a query with them
#
# `demo_split` puts half of each type in the reference and the other half in the query, and all
# cells of the held-out type in the query: to the model, they are a type it never saw.

# %%
pbmc = mc.datasets.pbmc68k_reduced()  # log1p-normalised values in X, labels in obs["bulk_labels"]
reference, query = mc.datasets.demo_split(pbmc, "bulk_labels", held_out="CD19+ B", seed=0)
print(reference.n_obs, "reference cells;", query.n_obs, "query cells")

# %% [markdown]
# ## Train
#
# Training stops early when the loss of the held-out reference cells (those that calibrate the
# thresholds, never used for training) stops falling; the star marks the epoch kept.

# %%
model = mc.tl.train(reference, labels_key="bulk_labels", seed=0)
mc.pl.history(model)

# %% [markdown]
# ## Annotate and evaluate
#
# `annotate` writes the label, the nearest type, the distance, the novelty score and the
# confidence of every cell into `query.obs`. Here the true labels are known, so `evaluate`
# scores the result: accuracy and macro F1 on the known types, and how well the novelty score
# sets the B cells apart (`novelty_auroc`: 1 is perfect, 0.5 is chance).

# %%
mc.tl.annotate(query, model)
scores = mc.tl.evaluate(query, "bulk_labels")
pd.Series(scores).round(3)

# %% [markdown]
# ## Where the cut falls
#
# A cell's own score (`mapcell_cell_novelty`) is its distance to its nearest type over that
# type's threshold. The novelty score that decides (`mapcell_novelty`) is the median of those
# over the cell and its 29 nearest query cells, because a new type comes as a group of similar
# cells; above the cutoff (1 by default) the cell is called Unknown. Grouped by the *true* type,
# the B cells score higher than every type the model knows. Whether they cross the line
# depends on how tight the thresholds are, and with a few held-out cells per type they are
# loose: the share above the line is written on top of each column.

# %%
mc.pl.novelty(query, "bulk_labels")

# %% [markdown]
# A user without true labels groups by the nearest type instead (the default), and sees the
# same group of high scores inside the types the B cells were nearest to. The default cutoff is
# lenient on purpose: a query from another lab or technology moves known cells away from their
# types, and they should keep their labels. Here query and reference come from one experiment,
# so the cutoff can be lower: draw where 0.5 would cut, then annotate again with it. Most B
# cells are then Unknown instead of being forced into a T-cell or dendritic label, at the price
# of a few known cells.

# %%
mc.pl.novelty(query, cutoff=0.5)
mc.tl.annotate(query, model, novelty_cutoff=0.5)
scores = mc.tl.evaluate(query, "bulk_labels")
pd.Series(scores).round(3)

# %% [markdown]
# ## Which types the model mixes up
#
# The confusion matrix puts the true types in rows and mapcell's labels in columns, Unknown
# last: the held-out B cells belong in the Unknown column, and what is left of them shows the
# known types they resemble. The heatmap of distances between the model's types (between
# their prototypes) shows which types the model holds close together: dark squares are pairs
# it can hardly tell apart, and they are where the confusion matrix has most of its
# off-diagonal cells. The T-cell subsets of this dataset are a known hard case.

# %%
mc.pl.confusion(query, "bulk_labels")

# %%
mc.pl.prototypes(model)

# %% [markdown]
# ## The reference map
#
# `fit_reference_map` draws the reference cells as a UMAP of their mapcell embedding and keeps
# it with the model; `map_to_reference` places the query on that same map without refitting
# it. Every query cell lands among the reference cells it is nearest to, so a new type lands
# beside the known type it resembles: its grey, outlined Unknown cells say it does not belong.

# %%
mc.tl.fit_reference_map(model, reference, seed=0)
mc.tl.map_to_reference(query, model, use_rep="X_mapcell")
mc.pl.reference_map(query, model)

# %% [markdown]
# The same query on scanpy's UMAP of the data (computed on all 700 cells before the split): the
# B cells are a cluster of their own there, and the Unknown cells are theirs.

# %%
mc.pl.embedding(query, basis="umap", color="label")

# %% [markdown]
# ## Save, load, and get the same labels and places
#
# The bundle is a folder of safetensors, JSON and a model card; the reference map travels in
# it.

# %%
with tempfile.TemporaryDirectory() as folder:
    bundle = Path(folder) / "pbmc68k_reference"
    model.save(bundle)
    print(sorted(p.name for p in bundle.iterdir()))
    reloaded = mc.MapCell.load(bundle)
    again = mc.tl.annotate(query, reloaded, novelty_cutoff=0.5, copy=True)
    mc.tl.map_to_reference(again, reloaded, use_rep="X_mapcell")
assert np.array_equal(again.obs["mapcell_label"], query.obs["mapcell_label"])
assert np.allclose(again.obsm["X_mapcell_umap"], query.obsm["X_mapcell_umap"])
print("the reloaded model gives identical labels and map positions")
