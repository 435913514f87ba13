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
# # How many cells per type? The few-shot regime
#
# A Siamese reference learns from pairs, so it can be trained on a few labelled cells per
# type; MapCell used 20 to 25. Here we train the same reference on 5, 10, 20 and 50 cells per
# type (`n_shots`) and watch the labels and the novelty scores change.
#
# The data: 10x's pbmc3k with the Seurat tutorial's labels (nine types, from the shared data
# folder). Half of each type is the reference, the other half the query; the B cells are kept
# out of the reference, so the query has a type the model never saw. The reference cells not
# used for training calibrate the thresholds, so fewer shots also means more calibration
# cells. It takes about a minute on a laptop CPU.

# %%
import anndata as ad
import matplotlib.pyplot as plt
import pandas as pd

import mapcell as mc

mc.settings.progress_bar = False
mc.settings.verbosity = "warning"  # four trainings: keep the log short

pbmc3k = ad.read_h5ad(mc.datasets.shared_data_dir() / "pbmc3k" / "pbmc3k_2000hvg.h5ad")
reference, query = mc.datasets.demo_split(pbmc3k, "classified", held_out="B", seed=0)
reference.obs["classified"].value_counts()

# %% [markdown]
# ## Four references, from 5 to 50 cells per type
#
# Every run has the same seed, genes (all 2000 of the file) and epochs; only `n_shots`
# changes. Each model annotates the same query, and `evaluate` scores it: accuracy and macro
# F1 on the eight known types, how well the novelty score ranks the B cells above the known
# cells (`novelty_auroc`), and the shares of known and novel cells called Unknown.

# %%
shots = [5, 10, 20, 50]
rows, annotated = {}, {}
for n_shots in shots:
    model = mc.tl.train(
        reference,
        labels_key="classified",
        n_shots=n_shots,
        n_top_genes=None,
        max_epochs=30,
        seed=0,
    )
    result = mc.tl.annotate(query, model, copy=True)
    rows[n_shots] = mc.tl.evaluate(result, "classified")
    annotated[n_shots] = result
table = pd.DataFrame(rows).T.rename_axis("cells per type")
table.round(3)

# %% [markdown]
# ## What changes with more shots
#
# More cells per type give a better metric for the known types: accuracy and macro F1 rise
# from 5 to 50 cells. The novelty ranking is good at every size: the B cells, as a group,
# score above the known cells (AUROC 0.85 to 0.99). Yet no cell is called Unknown at the
# default cutoff at any size: over their neighbourhoods the B cells score higher than the known
# cells, but under the thresholds that the reference's own held-out cells set, and they take
# T-cell labels. More shots buy better labels; the novelty scores say where to
# look, and the cutoff is a choice to make for each reference (below).

# %%
novel = (query.obs["classified"] == "B").to_numpy()
medians = pd.DataFrame(
    {
        n_shots: {
            "B cells (novel)": annotated[n_shots].obs.loc[novel, "mapcell_novelty"].median(),
            "known cells": annotated[n_shots].obs.loc[~novel, "mapcell_novelty"].median(),
        }
        for n_shots in shots
    }
).T
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
positions = range(len(shots))
for name in ("accuracy", "macro_f1", "novelty_auroc"):
    axes[0].plot(positions, table[name], marker="o", label=name)
axes[0].set_ylim(0, 1.02)
axes[0].set_ylabel("score")
axes[0].set_title("labels of the known types, and the novelty ranking", fontsize=10)
for name in medians:
    axes[1].plot(positions, medians[name], marker="o", label=name)
axes[1].axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="cutoff")
axes[1].set_ylim(0, 1.1)
axes[1].set_ylabel("median novelty score")
axes[1].set_title("novelty scores against the cutoff", fontsize=10)
for ax in axes:
    ax.set_xticks(positions, [str(n) for n in shots])
    ax.set_xlabel("cells per type (n_shots)")
    ax.legend(frameon=False, fontsize=8)

# %% [markdown]
# ## The novelty scores, side by side
#
# The novelty score divides a cell's distance by its type's threshold, so the scores of
# different models share one scale: 1 is the cutoff. Drawn by true type for the smallest and
# the largest reference, they show where the B cells fall against the known types. (The
# `ax` parameter puts both figures side by side.)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True, layout="constrained")
for ax, n_shots in zip(axes, (shots[0], shots[-1]), strict=True):
    mc.pl.novelty(annotated[n_shots], "classified", ax=ax, show=False)
    ax.set_xlabel(f"true type; the model trained on {n_shots} cells per type")

# %% [markdown]
# And the confusion of the 5-shot and the 50-shot models, with Unknown as the last column:

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
for ax, n_shots in zip(axes, (shots[0], shots[-1]), strict=True):
    mc.pl.confusion(annotated[n_shots], "classified", ax=ax, show=False)
    ax.set_title(f"{n_shots} cells per type", fontsize=10)

# %% [markdown]
# With 5 cells per type the diagonal is weak for the T-cell types and the CD14+ monocytes;
# with 50 it is strong, and what confusion is left is mostly between naive and memory CD4 T
# cells, the pair of types closest in expression. The B cells, with no column of their own,
# mostly take a T-cell label.
#
# In practice: 20 cells per type is a sound start (as MapCell found), and more pays off for
# types that look alike. Check the novelty scores of a new reference before trusting its
# Unknown calls (`mc.pl.novelty`), and move the cutoff (`novelty_cutoff`) to where a group
# of high scores begins.

# %%
query = annotated[shots[-1]]
scores = rows[shots[-1]]
