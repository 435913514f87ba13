# %% [markdown]
# # mapcell quick start
#
# Train a reference on part of scanpy's `pbmc68k_reduced` (shipped with scanpy, no download),
# keep the B cells out of it, annotate the other cells, and see that the B cells come out
# "Unknown" rather than forced into a type the reference knows. Then save, reload and check
# that the reloaded model labels every cell the same way.
#
# Run it as a script (`python tutorials/01_quickstart.py`) or open it as a notebook with
# jupytext; it takes well under a minute on a laptop CPU.

# %%
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen needed; in Jupyter the figures show inline
import matplotlib.pyplot as plt
import numpy as np

import mapcell as mc

mc.settings.progress_bar = False

# %% [markdown]
# ## Data: a reference without B cells, and a query with them

# %%
pbmc = mc.datasets.pbmc68k_reduced()  # log1p-normalised values in X, labels in obs["bulk_labels"]
reference, query = mc.datasets.demo_split(pbmc, "bulk_labels", held_out="CD19+ B", seed=0)
print(reference.n_obs, "reference cells;", query.n_obs, "query cells")

# %% [markdown]
# ## Train, annotate, evaluate

# %%
model = mc.tl.train(reference, labels_key="bulk_labels", seed=0)
mc.tl.annotate(query, model)
scores = mc.tl.evaluate(query, "bulk_labels")
print({name: round(value, 3) for name, value in scores.items()})

# %% [markdown]
# The B cells were never in the reference: their novelty scores (distance over the nearest
# type's threshold) should sit above those of the known types.

# %%
is_b = query.obs["bulk_labels"] == "CD19+ B"
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(query.obs.loc[~is_b, "mapcell_novelty"], bins=30, alpha=0.6, label="known types")
ax.hist(query.obs.loc[is_b, "mapcell_novelty"], bins=30, alpha=0.6, label="B cells (novel)")
ax.axvline(1.0, color="black", linestyle="--", label="threshold")
ax.set_xlabel("mapcell novelty score")
ax.set_ylabel("cells")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The query on scanpy's UMAP of the data, coloured by mapcell's label (Unknown in grey):

# %%
mc.pl.embedding(query, basis="umap", color="label", show=False)

# %% [markdown]
# ## Save, load, and get the same labels

# %%
with tempfile.TemporaryDirectory() as folder:
    bundle = Path(folder) / "pbmc68k_reference"
    model.save(bundle)
    print(sorted(p.name for p in bundle.iterdir()))
    reloaded = mc.MapCell.load(bundle)
    again = mc.tl.annotate(query, reloaded, copy=True)
assert np.array_equal(again.obs["mapcell_label"], query.obs["mapcell_label"])
print("the reloaded model gives identical labels")
