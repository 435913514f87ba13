from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad

import mapcell as mc


def _checked(path: Path) -> Path:
    if not path.exists():
        msg = f"{path} does not exist"
        raise FileNotFoundError(msg)
    return path


def _read(path: Path) -> ad.AnnData:
    return ad.read_h5ad(_checked(path))


def train(args) -> int:
    """``mapcell train``: train on a reference file and save the bundle."""
    if args.output.exists() and not args.overwrite:
        msg = f"{args.output} already exists; pass --overwrite to replace it"
        raise FileExistsError(msg)
    reference = _read(args.reference)
    genes = None
    if args.genes_from is not None:
        genes = ad.read_h5ad(_checked(args.genes_from), backed="r").var_names.to_list()
    model = mc.tl.train(
        reference,
        labels_key=args.labels,
        batch_key=args.batch_key,
        layer=args.layer,
        use_raw=args.use_raw,
        n_shots=args.n_shots,
        n_top_genes=args.n_top_genes or None,
        loss=args.loss,
        max_epochs=args.max_epochs,
        seed=args.seed,
        genes=genes,
    )
    model.save(args.output, overwrite=args.overwrite)
    print(
        f"saved a model of {len(model.labels)} cell types and {len(model.genes)} genes "
        f"to {args.output}"
    )
    return 0


def annotate(args) -> int:
    """``mapcell annotate``: annotate a query file and write it, annotated, atomically."""
    if args.output.exists() and not args.overwrite:
        msg = f"{args.output} already exists; pass --overwrite to replace it"
        raise FileExistsError(msg)
    query = _read(args.query)
    model = mc.MapCell.load(args.model)
    mc.tl.annotate(
        query,
        model,
        key_added=args.key_added,
        layer=args.layer,
        use_raw=args.use_raw,
        gene_key=args.gene_key,
        mode=args.mode,
        novelty_cutoff=args.novelty_cutoff,
        novelty_neighbors=args.novelty_neighbors,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(
        suffix=".h5ad", dir=args.output.parent, prefix=f".{args.output.name}."
    )
    os.close(handle)
    try:
        query.write_h5ad(staging)
        os.replace(staging, args.output)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    counts = query.obs[f"{args.key_added}_label"].value_counts()
    print(f"wrote {args.output}: {query.n_obs} cells")
    print(counts.to_string())
    return 0


def demo(args) -> int:
    """``mapcell demo``: hold one type out of a pbmc68k_reduced reference; find it as Unknown."""
    start = time.perf_counter()
    data = mc.datasets.pbmc68k_reduced()
    reference, query = mc.datasets.demo_split(data, "bulk_labels", args.held_out, seed=args.seed)
    print(
        f"pbmc68k_reduced: reference {reference.n_obs} cells without {args.held_out!r}, "
        f"query {query.n_obs} cells "
        f"({(query.obs['bulk_labels'] == args.held_out).sum()} of them {args.held_out})"
    )
    model = mc.tl.train(
        reference, labels_key="bulk_labels", max_epochs=args.max_epochs, seed=args.seed
    )
    mc.tl.annotate(query, model)
    scores = mc.tl.evaluate(query, "bulk_labels")
    rows = [
        ("accuracy on known types", scores["accuracy"]),
        ("macro F1 on known types", scores["macro_f1"]),
        ("novelty AUROC (held-out type vs known)", scores["novelty_auroc"]),
        (f"share of {args.held_out!r} called Unknown", scores["novel_called_unknown"]),
        ("share of known cells called Unknown", scores["known_called_unknown"]),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value:.3f}")
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


def _size(n_bytes) -> str:
    if n_bytes is None or n_bytes != n_bytes:  # absent, or NaN in a frame
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return "?"


def _list(args) -> int:
    frame = mc.hub.list_models()
    if frame.empty:
        print(f"the registry {mc.settings.registry_url} lists no references")
        return 0
    shown = frame.assign(
        size=frame["size"].map(_size),
        downloaded=frame["downloaded"].map({True: "yes", False: "no"}),
        n_cell_types=frame["n_cell_types"].map(lambda n: "?" if n != n else f"{n:.0f}"),
        description=frame["description"].fillna("").str.slice(0, 60),
    ).rename(columns={"n_cell_types": "types"})
    print(shown.fillna("").to_string(index=False))
    return 0


_INFO_FIELDS = ("name", "version", "description", "species", "tissue", "license",
                "n_cell_types", "n_genes", "size", "sha256", "url", "registry")  # fmt: skip


def _info(args) -> int:
    entry = mc.hub.describe(args.name)
    width = max(len(field) for field in _INFO_FIELDS)
    for field in _INFO_FIELDS:
        if field in entry:
            value = _size(entry[field]) if field == "size" else entry[field]
            print(f"{field:<{width}}  {value}")
    handle = f"{entry['name']}@{entry['version']}"
    if entry["path"] is None:
        print(f"\nnot downloaded yet: mapcell models get {handle}")
        return 0
    print(f"{'downloaded':<{width}}  {entry['path']}\n")
    card = Path(entry["path"]) / "README.md"
    if card.is_file():
        print(card.read_text(encoding="utf-8"))
    return 0


def _get(args) -> int:
    if args.force:
        mc.hub.download(args.name, force=True)
    model = mc.MapCell.load(args.name)
    print(
        f"{args.name}: {len(model.labels)} cell types, {len(model.genes)} genes, checked and "
        f"ready in {model.bundle_path}"
    )
    return 0


def _publish(args) -> int:
    entry = mc.hub.publish(
        args.bundle,
        args.output_dir,
        name=args.name,
        version=args.bundle_version,
        base_url=args.base_url,
        index=args.index,
        overwrite=args.overwrite,
        description=args.description,
        species=args.species,
        tissue=args.tissue,
        license=args.license,
        authors=args.authors,
        citation=args.citation,
        url=args.homepage,
    )
    archive = args.output_dir / entry["url"].rsplit("/", 1)[-1]
    print(json.dumps(entry, indent=2))
    destination = f"to {args.base_url}" if args.base_url else "beside the index"
    if args.index is not None:
        where = f"the entry was added to {args.index}; upload it and the archive {destination}"
    else:
        where = (
            "add the entry above to the 'models' list of the registry's index.json, and "
            f"upload the archive {destination}"
        )
    print(f"next: {where} ({archive})", file=sys.stderr)
    return 0


def models(args) -> int:
    """``mapcell models list | info NAME | get NAME | publish BUNDLE``."""
    if getattr(args, "registry", None):
        mc.settings.registry_url = args.registry
    return {"list": _list, "info": _info, "get": _get, "publish": _publish}[args.action](args)
