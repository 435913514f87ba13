"""The model card: the ``README.md`` of a bundle, written from ``mapcell.json`` for a person.

It says what the reference is, which cell types it knows and from how many cells, which genes it
reads, how it was trained and calibrated, how to use it, and where it should not be trusted. It
is rebuilt from the JSON document alone, so a bundle of any mapcell version gets the same card.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from mapcell._constants import (
    BUNDLE_CONFIG_FILE,
    BUNDLE_WEIGHTS_FILE,
    MIN_CALIBRATION_CELLS,
    MIN_GENE_OVERLAP,
)

#: Genes named in the card; the full list is in ``mapcell.json``.
GENES_SHOWN = 10
#: Prose is wrapped at this width, so the card reads as well in a terminal as rendered.
CARD_WIDTH = 99
_KIND_NAMES = {"symbol": "gene symbols", "ensembl": "Ensembl gene IDs"}
_LOSS_NAMES = {
    "contrastive": "contrastive (pairs of one type pulled together, others pushed apart)",
    "triplet": "batch-hard triplet",
    "supcon": "supervised contrastive",
}


def _cell(text) -> str:
    # A table cell: a "|" in a label would split the row.
    return str(text).replace("|", "\\|")


def _wrap(text: str) -> str:
    # Paragraphs and list items are wrapped; tables and code blocks (which hold no blank line)
    # are kept as they are.
    blocks = []
    for block in text.split("\n\n"):
        if block.startswith(("|", "```")):
            blocks.append(block)
            continue
        lines = []
        for line in block.split("\n") if block.startswith("- ") else [block.replace("\n", " ")]:
            indent = "  " if line.startswith("- ") else ""
            lines.append(
                textwrap.fill(
                    line,
                    CARD_WIDTH,
                    subsequent_indent=indent,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _number(value, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not measured"
    if isinstance(value, float) and not math.isfinite(value):
        return "not measured"
    return f"{value:.{digits}f}"


def _title(config: dict) -> str:
    about = config.get("about", {})
    if "name" in about:
        return f"{about['name']} {about['version']}" if "version" in about else about["name"]
    return f"MapCell reference of {len(config['labels'])} cell types"


def _summary(config: dict) -> str:
    about, training = config.get("about", {}), config.get("training", {})
    source = " ".join(about[key] for key in ("species", "tissue") if key in about)
    n_cells = training.get("n_cells")
    trained = f", built from {n_cells} labelled cells" if n_cells else ""
    lines = [
        f"A [mapcell](https://github.com/mapcell/mapcell) reference that labels single-cell "
        f"RNA-seq cells as one of {len(config['labels'])} {source + ' ' if source else ''}cell "
        f'types{trained}, and calls cells that match none of them "Unknown".'
    ]
    if "description" in about:
        lines.insert(0, about["description"].strip())
    return "\n\n".join(lines)


def _overview(config: dict) -> str:
    about, training = config.get("about", {}), config.get("training", {})
    genes = config["genes"]
    kinds = ", ".join(_KIND_NAMES.get(kind, kind) for kind in genes["ids"]) or "names"
    rows = [("cell types", len(config["labels"]))]
    if "n_cells" in training:
        rows.append(
            (
                "reference cells",
                f"{training['n_cells']} ({training.get('n_train', '?')} trained the encoder, "
                f"{training.get('n_calibration', '?')} calibrated the thresholds)",
            )
        )
    rows += [
        ("genes", f"{len(genes['names'])} ({kinds})"),
        ("species", about.get("species", "not stated")),
        ("tissue", about.get("tissue", "not stated")),
        ("license", about.get("license", "not stated: ask the authors before sharing it")),
    ]
    for key in ("authors", "citation", "url"):
        if key in about:
            rows.append((key, about[key]))
    made = config.get("created", "")[:10] or "on an unknown date"
    rows.append(("made", f"{made} with mapcell {config.get('versions', {}).get('mapcell', '?')}"))
    body = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    return f"| | |\n|---|---|\n{body}"


def _usage(config: dict) -> str:
    about = config.get("about", {})
    if "name" in about:
        handle = about["name"] + (f"@{about['version']}" if "version" in about else "")
        call = f'mc.tl.annotate(adata, "{handle}")  # by its registry name, or this folder\'s path'
    else:
        call = 'mc.tl.annotate(adata, "path/to/this/folder")'
    return f"""```python
import mapcell as mc
{call}
adata.obs["mapcell_label"].value_counts()  # the types below, and "Unknown"
```

The query may hold raw counts or log1p-normalised values; its genes are matched to the model's
by symbol or Ensembl ID, and genes it lacks count as zero."""


def _cell_types(config: dict) -> str:
    counts = config.get("cell_counts", {})
    thresholds = config["search"]["thresholds"].get("prototype", [])
    rows = []
    for i, label in enumerate(config["labels"]):
        count = counts.get(label, {})
        threshold = _number(thresholds[i]) if i < len(thresholds) else "?"
        name = _cell(label) + (" (added later)" if count.get("added") else "")
        rows.append(
            f"| {name} | {count.get('train', '?')} | {count.get('calibration', '?')} | "
            f"{threshold} |"
        )
    table = "\n".join(rows)
    return f"""| cell type | training cells | calibration cells | threshold |
|---|---:|---:|---:|
{table}

A threshold is a distance in the embedding, where cells lie on the unit sphere (distances from 0
to 2): a query cell farther than that from its nearest type is called "Unknown"."""


def _genes(config: dict) -> str:
    genes, preprocessing = config["genes"], config["preprocessing"]
    names = genes["names"]
    shown = ", ".join(f"`{name}`" for name in names[:GENES_SHOWN])
    more = f" and {len(names) - GENES_SHOWN} more" if len(names) > GENES_SHOWN else ""
    kinds = " and ".join(_KIND_NAMES.get(kind, kind) for kind in genes["ids"]) or "names"
    setup = config.get("setup", {})
    layer = f'layer "{setup["layer"]}"' if setup.get("layer") else "X"
    return (
        f"{len(names)} genes, kept as {kinds}: {shown}{more} (all of them in "
        f"`{BUNDLE_CONFIG_FILE}`). The reference's values ({layer}) were "
        f"{preprocessing['reference_values']}; the model reads log1p of counts per "
        f"{preprocessing['target_sum']:,.0f}. "
        f"Annotation warns when fewer than {MIN_GENE_OVERLAP:.0%} of these genes are found in "
        "the query."
    )


def _shots(training: dict) -> str:
    if training.get("n_shots") is not None:
        return f"{training['n_shots']} cells per type trained the encoder (few-shot)"
    fraction = training.get("calibration_fraction")
    held = f"{fraction:.0%} of each type" if isinstance(fraction, float) else "a share of cells"
    return f"all cells trained the encoder but a held-out {held}"


def _training(config: dict) -> str:
    training, setup = config.get("training", {}), config.get("setup", {})
    encoder, loss = config["encoder"], config["loss"]
    labels_key = training.get("labels_key", setup.get("labels_key"))
    batch_key = training.get("batch_key", setup.get("batch_key"))
    params = ", ".join(f"{key} {value:g}" for key, value in loss.items() if key != "loss")
    layers = "layer" if encoder["n_layers"] == 1 else "layers"
    lines = [
        f"- labels from `obs[{labels_key!r}]`"
        + (
            f"; batches from `obs[{batch_key!r}]`, positive pairs drawn across batches"
            if batch_key
            else "; no batch key"
        ),
        f"- {_shots(training)}",
        f"- loss: {_LOSS_NAMES.get(loss['loss'], loss['loss'])}"
        + (f", {params}" if params else ""),
        f"- encoder: {encoder['n_input']} genes -> {encoder['n_layers']} hidden {layers} of "
        f"{encoder['n_hidden']} -> {encoder['n_latent']} dimensions; dropout "
        f"{encoder['dropout']:g}, input dropout {encoder['input_dropout']:g}",
    ]
    if "epochs_run" in training:
        lines.append(
            f"- {training['epochs_run']} epochs (at most {training.get('max_epochs', '?')}), "
            f"learning rate {training.get('lr', '?')}, weight decay "
            f"{training.get('weight_decay', '?')}, batches of "
            f"{training.get('types_per_batch', '?')} types x "
            f"{training.get('cells_per_type', '?')} cells, seed {training.get('seed')}"
        )
    history = config.get("history", {})
    final = [
        f"{name} {_number(history[key][-1])}"
        for key, name in (("train_loss", "training"), ("validation_loss", "held out"))
        if history.get(key)
    ]
    if final:
        lines.append(f"- final loss: {', '.join(final)}")
    return "\n".join(lines)


def _calibration(config: dict) -> str:
    calibration = config.get("calibration", {})
    quantile = calibration.get("quantile", config.get("training", {}).get("calibration_quantile"))
    thresholds = config["search"]["thresholds"]
    counts = config.get("cell_counts", {})
    n_held = [count.get("calibration", 0) for count in counts.values()]

    def row(name: str, values: list) -> str:
        return f"| {name} | " + " | ".join(_cell(v) for v in values) + " |"

    modes = ("prototype", "knn")
    accuracy = [_number(calibration.get(mode, {}).get("heldout_accuracy")) for mode in modes]
    median = [
        _number(float(np.median(thresholds[mode]))) if thresholds.get(mode) else "?"
        for mode in modes
    ]
    pooled = [
        ", ".join(calibration.get(mode, {}).get("types_with_pooled_threshold", [])) or "none"
        for mode in modes
    ]
    share = f"{1 - quantile:.0%}" if isinstance(quantile, float) else "a few percent"
    intro = (
        f"Each type's threshold is the {quantile} quantile of the distances of its held-out "
        f"reference cells (cells that did not train the encoder) to it, so about {share} of "
        'cells like the reference\'s own are expected to come out "Unknown".'
    )
    if n_held:
        spread = (
            f"{min(n_held)}" if min(n_held) == max(n_held) else f"{min(n_held)} to {max(n_held)}"
        )
        intro += f" Held-out cells per type: {spread}."
    table = "\n".join(
        [
            "| | nearest prototype | kNN vote |",
            "|---|---|---|",
            row("held-out accuracy", accuracy),
            row("median threshold", median),
            row(
                f"types with the pooled threshold (under {MIN_CALIBRATION_CELLS} held out)", pooled
            ),
        ]
    )
    return f"{intro}\n\n{table}"


def _limits(config: dict) -> str:
    about = config.get("about", {})
    source = " ".join(about[key] for key in ("species", "tissue") if key in about)
    counts = config.get("cell_counts", {})
    n_held = [count.get("calibration", 0) for count in counts.values()]
    lines = [
        f"- Meant for: labelling cells of the {source + ' ' if source else ''}cell types listed "
        "above, in data measured like the reference (same species and tissue; data of other labs "
        "and technologies can work when most of the genes are found, but check).",
        '- Cells of types the reference never saw should come out "Unknown", but a new type '
        "close to a known one can take that type's label; look at `mapcell_novelty` and "
        "`mapcell_confidence`, not only at the labels.",
        "- The held-out accuracy is measured on the reference's own cells (same batches, same "
        "labelling); expect lower accuracy on other data, and check a few known markers.",
        "- The labels are only as good as the reference's annotation, at its level of detail; "
        "this is a research tool, not a clinical or diagnostic one.",
    ]
    if n_held and min(n_held) < MIN_CALIBRATION_CELLS:
        lines.append(
            f"- Some types had fewer than {MIN_CALIBRATION_CELLS} held-out cells, so their "
            "thresholds are rough (they take at least the pooled threshold of all types)."
        )
    return "\n".join(lines)


def _files(config: dict) -> str:
    weights = config.get("weights")
    checksum = f" (sha256 `{weights['sha256']}`, {weights['size']:,} bytes)" if weights else ""
    versions = ", ".join(f"{k} {v}" for k, v in config.get("versions", {}).items())
    reference_map = config.get("reference_map")
    map_line = (
        f"- `{BUNDLE_WEIGHTS_FILE}` also holds a 2-D map of "
        f"{reference_map.get('n_cells', '?')} reference cells, on which "
        "`mc.tl.map_to_reference` places query cells.\n"
        if isinstance(reference_map, dict)
        else ""
    )
    return (
        f"- `{BUNDLE_WEIGHTS_FILE}`{checksum}: the encoder's weights, the prototypes and the "
        "reference cells of the kNN mode (safetensors: nothing in it is executed on load).\n"
        f"{map_line}"
        f"- `{BUNDLE_CONFIG_FILE}`: genes, labels, thresholds and every setting above (bundle "
        f"schema {config['schema_version']}, specified in mapcell's documentation, "
        "`docs/bundle.md`).\n"
        "- `README.md`: this card, written from `mapcell.json` when the bundle was saved.\n"
        f"- Package versions: {versions}."
    )


def model_card(config: dict) -> str:
    """The Markdown card of a bundle, from its ``mapcell.json`` document.

    Parameters
    ----------
    config
        The bundle's JSON document (as written by :meth:`mapcell.MapCell.save`).

    Returns
    -------
    The card's text: what the reference is, its cell types with cell counts and thresholds, its
    genes, training settings, calibration metrics, intended use and limits, and its files.
    """
    sections = [
        ("Use", _usage(config)),
        ("Cell types", _cell_types(config)),
        ("Genes and input", _genes(config)),
        ("Training", _training(config)),
        ("Calibration", _calibration(config)),
        ("Intended use and limits", _limits(config)),
        ("Files and provenance", _files(config)),
    ]
    body = "\n\n".join(f"## {title}\n\n{_wrap(text)}" for title, text in sections)
    return f"# {_title(config)}\n\n{_wrap(_summary(config))}\n\n{_overview(config)}\n\n{body}\n"
