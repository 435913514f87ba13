from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mapcell._constants import NOVELTY_CUTOFF, NOVELTY_NEIGHBORS

EPILOG = """examples:
  mapcell demo
  mapcell train ref.h5ad --labels cell_type -o pbmc_reference
  mapcell annotate query.h5ad --model pbmc_reference -o query_annotated.h5ad
  mapcell models publish pbmc_reference --name pbmc --version 1.0 --index registry/index.json
  mapcell models list --registry https://example.org/mapcell/index.json
  mapcell annotate query.h5ad --model pbmc@1.0 -o query_annotated.h5ad
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mapcell",
        description="Annotate single-cell data by learned similarity.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--quiet", action="store_true", help="log warnings only, no progress bars")
    commands = parser.add_subparsers(dest="command")

    train = commands.add_parser("train", help="train a reference model on a labelled .h5ad")
    train.add_argument("reference", type=Path, help="labelled reference (.h5ad)")
    train.add_argument("--labels", required=True, help="obs column with the cell types")
    train.add_argument(
        "-o", "--output", required=True, type=Path, help="folder for the model bundle"
    )
    train.add_argument("--batch-key", help="obs column with batches (donors, samples)")
    train.add_argument("--layer", help="layer with counts or log1p values, if not X")
    train.add_argument("--use-raw", action="store_true", help="read values from .raw")
    train.add_argument("--n-shots", type=int, help="cells per type for training (default: all)")
    train.add_argument(
        "--n-top-genes", type=int, default=2000, help="variable genes (0: all genes)"
    )
    train.add_argument(
        "--genes-from",
        type=Path,
        metavar="QUERY.h5ad",
        help="train only on genes this file also has (the query's), so none is missing later",
    )
    train.add_argument(
        "--loss", default="contrastive", choices=("contrastive", "triplet", "supcon")
    )
    train.add_argument("--max-epochs", type=int, help="upper bound on epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true", help="replace an existing bundle")

    annotate = commands.add_parser("annotate", help="annotate a query .h5ad with a trained model")
    annotate.add_argument("query", type=Path, help="query (.h5ad)")
    annotate.add_argument(
        "--model",
        required=True,
        help="bundle folder written by 'mapcell train', its .tar.gz, a URL, a registry "
        "name[@version] or hf://owner/repo[@revision]",
    )
    annotate.add_argument(
        "-o", "--output", required=True, type=Path, help="annotated .h5ad to write"
    )
    annotate.add_argument("--layer", help="layer with counts or log1p values, if not X")
    annotate.add_argument("--use-raw", action="store_true", help="read values from .raw")
    annotate.add_argument(
        "--gene-key", help="var column with gene identifiers (default: found by itself)"
    )
    annotate.add_argument("--mode", default="prototype", choices=("prototype", "knn"))
    annotate.add_argument(
        "--novelty-cutoff",
        type=float,
        default=NOVELTY_CUTOFF,
        help="novelty score above which a cell is Unknown (default: %(default)s)",
    )
    annotate.add_argument(
        "--novelty-neighbors",
        type=int,
        default=NOVELTY_NEIGHBORS,
        help="query cells over which novelty is judged (0: each cell alone; default: %(default)s)",
    )
    annotate.add_argument("--key-added", default="mapcell")
    annotate.add_argument(
        "--overwrite", action="store_true", help="replace an existing output file"
    )

    demo = commands.add_parser(
        "demo", help="train and annotate on scanpy's pbmc68k_reduced (no download)"
    )
    demo.add_argument("--held-out", default="CD19+ B", help="type left out of the reference")
    demo.add_argument("--max-epochs", type=int, help="upper bound on epochs")
    demo.add_argument("--seed", type=int, default=0)

    _models_parser(commands)
    return parser


def _models_parser(commands) -> None:
    models = commands.add_parser(
        "models", help="list, describe, download and publish shared references"
    )
    actions = models.add_subparsers(dest="action", metavar="{list,info,get,publish}")
    actions.required = True
    registry = argparse.ArgumentParser(add_help=False)
    registry.add_argument(
        "--registry",
        metavar="URL",
        help="registry index (URL or path); default: mc.settings.registry_url or "
        "MAPCELL_REGISTRY_URL",
    )
    actions.add_parser("list", parents=[registry], help="the references a registry offers")
    info = actions.add_parser(
        "info", parents=[registry], help="all about one reference, and its card if downloaded"
    )
    info.add_argument("name", help="name or name@version")
    get = actions.add_parser(
        "get", parents=[registry], help="download a reference into the cache and check it"
    )
    get.add_argument("name", help="name[@version], a URL, a .tar.gz or hf://owner/repo[@revision]")
    get.add_argument(
        "--force", action="store_true", help="download a registry reference again, even if cached"
    )

    publish = actions.add_parser(
        "publish", help="check a bundle, write its archive and print its registry entry"
    )
    publish.add_argument("bundle", type=Path, help="bundle folder written by 'mapcell train'")
    publish.add_argument("--name", help="registry name (default: the bundle's own, if any)")
    publish.add_argument(
        "--version",
        dest="bundle_version",
        metavar="VERSION",
        help="version, for example 1.0 (default: the bundle's own, if any)",
    )
    for field in ("description", "species", "tissue", "license", "authors", "citation"):
        publish.add_argument(f"--{field}")
    publish.add_argument("--homepage", help="a page about the reference (its paper, its data)")
    publish.add_argument(
        "-o", "--output-dir", type=Path, default=Path("."), help="folder for the archive"
    )
    publish.add_argument(
        "--base-url",
        help="where the archive will be uploaded (a folder URL); default: beside the index",
    )
    publish.add_argument(
        "--index", type=Path, help="add the entry to this local index.json (created if absent)"
    )
    publish.add_argument(
        "--overwrite", action="store_true", help="replace the archive and the index entry"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    import mapcell as mc

    if args.version:
        print(f"mapcell {mc.__version__}")
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    if args.quiet:
        mc.settings.verbosity = "warning"
        mc.settings.progress_bar = False
    from mapcell.cli import _commands
    from mapcell.hub import DownloadError

    run = {
        "train": _commands.train,
        "annotate": _commands.annotate,
        "demo": _commands.demo,
        "models": _commands.models,
    }[args.command]
    try:
        return run(args)
    except (
        FileNotFoundError,
        FileExistsError,
        KeyError,
        ValueError,
        TypeError,
        DownloadError,
        ImportError,
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mapcell {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
