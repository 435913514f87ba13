"""``MapCell``: a Siamese reference model, trained with scvi-tools, that annotates queries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner
from tqdm.auto import tqdm

from mapcell._constants import (
    CALIBRATION_QUANTILE,
    MIN_CALIBRATION_CELLS,
    NOVELTY_CUTOFF,
    NOVELTY_NEIGHBORS,
    TARGET_SUM,
    UNKNOWN,
)
from mapcell._logging import logger, quiet_lightning, timed
from mapcell._settings import settings
from mapcell._warnings import CalibrationWarning, warn
from mapcell.model._training import SiameseDataModule, SiameseTrainingPlan, split_cells
from mapcell.nn import SiameseEncoder, SiameseModule
from mapcell.nn._losses import LossName, loss_params
from mapcell.pp._genes import GeneMatch, match_genes, normalise_gene_id, reference_gene_ids
from mapcell.pp._values import (
    ExpressionSource,
    ValueReport,
    detect_values,
    expression_source,
    iter_model_input,
    normalised_matrix,
)
from mapcell.search import calibrate_thresholds, compute_prototypes, knn_vote, nearest_prototype
from mapcell.search._neighbours import neighbour_indices, neighbour_median, standardised_pcs
from mapcell.search._prototypes import halfway_to_nearest_type

Mode = Literal["prototype", "knn"]
MODES: tuple[Mode, ...] = ("prototype", "knn")
#: Neighbours in kNN mode; the original MapCell voted among 21.
DEFAULT_K = 21
#: Training steps aimed at when ``max_epochs`` is not given, within the bounds below.
TARGET_STEPS = 1500
EPOCH_BOUNDS = (10, 200)
#: Smallest drop of the held-out loss that counts as an improvement for early stopping.
EARLY_STOPPING_MIN_DELTA = 1e-3


@dataclass
class ReferenceState:
    """What a trained model knows about its cell types, beside the encoder's weights.

    ``prototypes`` (P x dims) belong to the types in ``prototype_types``; ``thresholds`` holds
    one distance cut-off per type for each search mode; ``reference_embedding`` and
    ``reference_types`` are the training cells, the neighbours of kNN mode.
    """

    labels: list[str]
    prototypes: torch.Tensor
    prototype_types: torch.Tensor
    thresholds: dict[str, np.ndarray]
    reference_embedding: torch.Tensor
    reference_types: torch.Tensor
    cell_counts: dict[str, dict[str, int]]
    calibration: dict = field(default_factory=dict)


def _type_codes(labels: pd.Series | np.ndarray, known: list[str]) -> np.ndarray:
    return pd.Categorical(np.asarray(labels, dtype=str), categories=known).codes.astype(np.int64)


class MapCell(BaseModelClass):
    """A Siamese reference: a metric in which distance means difference of cell type.

    Register the reference with :meth:`setup_anndata`, build the model, :meth:`train` it, then
    annotate queries with :func:`mapcell.tl.annotate` (or :meth:`predict`). The one-line way is
    :func:`mapcell.tl.train`.

    Parameters
    ----------
    adata
        The reference, registered with :meth:`setup_anndata`.
    n_latent
        Size of the embedding.
    n_hidden
        Width of the encoder's hidden layers.
    n_layers
        Number of hidden layers. One labelled queries from other technologies better than two
        on most benchmark tasks (benchmarks/NOTES.md, entry 10).
    dropout
        Dropout after each hidden layer.
    input_dropout
        Share of genes zeroed at random in training, for robustness to genes a query lacks.
    n_top_genes
        Train on this many highly variable genes of the reference (``None``: all genes, as the
        original MapCell did).
    genes
        Restrict the model to these genes (for example ``query.var_names``, so that reference
        and query share every model gene); variable genes are then chosen among them.
    loss
        ``"contrastive"`` (MapCell's: pairs pulled together or pushed beyond a margin),
        ``"triplet"`` (batch-hard triplets) or ``"supcon"`` (supervised contrastive).
    margin
        Margin of the contrastive (default 1.0) or triplet (default 0.3) loss; distances on the
        unit sphere lie in [0, 2].
    temperature
        Temperature of the supervised contrastive loss (default 0.1).

    Examples
    --------
    >>> mc.MapCell.setup_anndata(ref, labels_key="cell_type")
    >>> model = mc.MapCell(ref)
    >>> model.train(n_shots=20)
    >>> mc.tl.annotate(query, model)
    """

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        *,
        n_latent: int = 32,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout: float = 0.1,
        input_dropout: float = 0.2,
        n_top_genes: int | None = 2000,
        genes: Sequence[str] | None = None,
        loss: LossName = "contrastive",
        margin: float | None = None,
        temperature: float | None = None,
        registry: dict | None = None,
    ) -> None:
        super().__init__(adata, registry=registry)
        self.loss_config = {"loss": loss, **loss_params(loss, margin, temperature)}
        self.reference: ReferenceState | None = None
        self.training_summary: dict = {}
        if adata is None:
            return  # MapCell.load fills in the rest

        source, report = self._reference_source(adata)
        self.setup = {
            "labels_key": self.adata_manager.registry["setup_args"]["labels_key"],
            "batch_key": self.adata_manager.registry["setup_args"]["batch_key"],
            "layer": self.adata_manager.registry["setup_args"]["layer"],
        }
        selected = self._select_genes(source, report, n_top_genes, genes)
        self.gene_ids = {
            kind: [ids[i] for i in selected]
            for kind, ids in reference_gene_ids(source.var).items()
        }
        self.genes = [str(source.var.index[i]) for i in selected]
        self.preprocessing = {
            "reference_values": report.kind,
            "target_sum": TARGET_SUM,
            "log1p": True,
        }
        encoder = SiameseEncoder(
            len(self.genes),
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            input_dropout=input_dropout,
        )
        self.module = SiameseModule(encoder, self.loss_config["loss"], self._loss_params())
        self._model_summary_string = (
            f"MapCell: {len(self.genes)} genes -> {n_latent} dims, {loss} loss, "
            f"{self.summary_stats.get('n_labels', '?')} cell types"
        )
        self.init_params_ = self._get_init_params(locals())

    # ---------------------------------------------------------------- registration

    @classmethod
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        labels_key: str,
        batch_key: str | None = None,
        layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register a labelled reference.

        Parameters
        ----------
        adata
            The reference: raw counts or log1p-normalised values in ``X`` or ``layer``.
        labels_key
            ``obs`` column with the cell types.
        batch_key
            ``obs`` column with batches (donors, samples); positive pairs are then drawn across
            batches, which teaches the model to ignore batch effects.
        layer
            Layer holding the values, if not ``X``.
        """
        _check_labels(adata, labels_key)
        if batch_key is not None and batch_key not in adata.obs:
            msg = (
                f"batch_key {batch_key!r} is not a column of adata.obs; the columns are "
                f"{list(adata.obs.columns)}"
            )
            raise KeyError(msg)
        detect_values(expression_source(adata, layer=layer), adata)

        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _reference_source(self, adata: ad.AnnData) -> tuple[ExpressionSource, ValueReport]:
        layer = self.adata_manager.registry["setup_args"]["layer"]
        source = expression_source(adata, layer=layer)
        return source, detect_values(source, adata)

    def _select_genes(self, source, report, n_top_genes, genes) -> np.ndarray:
        candidates = np.arange(source.matrix.shape[1])
        if genes is not None:
            wanted = {normalise_gene_id(g) for g in genes}
            keep = np.zeros(len(candidates), dtype=bool)
            for values in reference_gene_ids(source.var).values():
                keep |= np.array([normalise_gene_id(v) in wanted for v in values])
            if not keep.any():
                msg = (
                    "none of the genes= passed are among the reference's genes (var_names "
                    "or ID columns)"
                )
                raise ValueError(msg)
            candidates = candidates[keep]
        if n_top_genes is None or n_top_genes >= len(candidates):
            return candidates
        with timed(f"choosing {n_top_genes} highly variable genes of {len(candidates)}"):
            matrix = normalised_matrix(source, report)[:, candidates]
            hvg = sc.pp.highly_variable_genes(
                ad.AnnData(matrix), n_top_genes=n_top_genes, flavor="seurat", inplace=False
            )
        return candidates[np.flatnonzero(hvg["highly_variable"].to_numpy())]

    def _loss_params(self) -> dict:
        return {key: value for key, value in self.loss_config.items() if key != "loss"}

    @property
    def encoder(self) -> SiameseEncoder:
        """The trained :class:`~mapcell.nn.SiameseEncoder`."""
        return self.module.encoder

    @property
    def labels(self) -> list[str]:
        """The cell types the model knows, including those added by :meth:`add_cell_types`."""
        self._check_trained()
        return list(self.reference.labels)

    def _check_trained(self) -> None:
        if self.reference is None:
            msg = "this MapCell model is not trained yet; call model.train() first"
            raise RuntimeError(msg)

    # ---------------------------------------------------------------- training

    def train(
        self,
        max_epochs: int | None = None,
        *,
        n_shots: int | None = None,
        calibration_fraction: float = 0.2,
        calibration_quantile: float = CALIBRATION_QUANTILE,
        n_prototypes: int = 3,
        types_per_batch: int = 16,
        cells_per_type: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        early_stopping: bool = True,
        early_stopping_patience: int = 10,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        progress_bar: bool | None = None,
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the encoder, then build prototypes and calibrate thresholds.

        Parameters
        ----------
        max_epochs
            Upper bound on epochs; by default about 1500 training steps, 10 to 200 epochs.
        n_shots
            Cells per type used for training (MapCell used 20 to 25; 10 to 50 is typical). The
            reference cells left out calibrate the thresholds, so calibration never sees a
            training cell. ``None`` trains on all but ``calibration_fraction`` of each type.
        calibration_fraction
            Share of each type held out for calibration when ``n_shots`` is None.
        calibration_quantile
            A type's threshold is this quantile of its held-out cells' distances to it: about
            ``1 - quantile`` of cells like the reference's are then called Unknown.
        n_prototypes
            Prototypes per type: k-means centres inside each type with at least twice as many
            training cells (smaller types keep one centroid). Three did as well as one or
            better on every benchmark task (benchmarks/NOTES.md, entry 9).
        types_per_batch, cells_per_type
            A batch holds ``cells_per_type`` cells of each of ``types_per_batch`` types.
        lr, weight_decay
            Adam's learning rate and weight decay.
        early_stopping, early_stopping_patience
            Stop when the held-out loss has not improved for this many epochs.
        accelerator, devices
            Passed to the Lightning trainer (``"auto"`` uses a GPU when there is one).
        progress_bar
            One bar per epoch with the loss; by default ``mc.settings.progress_bar``.
        seed
            Seeds the split, the batches and the weights; by default ``mc.settings.seed``.
            Seeded runs on the CPU repeat exactly.
        **trainer_kwargs
            Passed on to :class:`scvi.train.Trainer`.
        """
        if n_shots is not None and n_shots < 1:
            msg = (
                "n_shots must be a positive number of cells per type (10 to 50 is "
                f"typical), not {n_shots}"
            )
            raise ValueError(msg)
        if not 0 < calibration_fraction < 1:
            msg = (
                "calibration_fraction must lie between 0 and 1 (0.1 to 0.3 is typical), "
                f"not {calibration_fraction}"
            )
            raise ValueError(msg)
        if n_prototypes < 1:
            msg = f"n_prototypes must be at least 1, not {n_prototypes}"
            raise ValueError(msg)
        if not 0 < calibration_quantile < 1:
            msg = (
                "calibration_quantile must lie between 0 and 1 (0.95 to 0.99 is typical), "
                f"not {calibration_quantile}"
            )
            raise ValueError(msg)
        seed = settings.seed if seed is None else seed
        progress_bar = settings.progress_bar if progress_bar is None else progress_bar

        labels = list(
            self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping
        )
        codes = (
            self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel().astype(np.int64)
        )
        batches = None
        if self.setup["batch_key"] is not None:
            batches = torch.as_tensor(
                self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
                .ravel()
                .astype(np.int64)
            )
        train_idx, calibration_idx = split_cells(
            codes, n_shots=n_shots, calibration_fraction=calibration_fraction, seed=seed
        )
        x = torch.as_tensor(self._reference_input())
        labels_tensor = torch.as_tensor(codes)

        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
                self.module = SiameseModule(
                    SiameseEncoder(**self.encoder.config),
                    self.loss_config["loss"],
                    self._loss_params(),
                )
            train_x = x[train_idx]
            self.encoder.set_input_scaling(train_x.mean(0), train_x.std(0))
            data = SiameseDataModule(
                x,
                labels_tensor,
                batches,
                train_idx,
                calibration_idx,
                types_per_batch=types_per_batch,
                cells_per_type=cells_per_type,
                seed=seed,
            )
            if max_epochs is None:
                max_epochs = int(
                    np.clip(math.ceil(TARGET_STEPS / data.batches_per_epoch), *EPOCH_BOUNDS)
                )
            self._run_trainer(
                data,
                max_epochs,
                lr=lr,
                weight_decay=weight_decay,
                early_stopping=early_stopping and data.n_val > 0,
                early_stopping_patience=early_stopping_patience,
                accelerator=accelerator,
                devices=devices,
                progress_bar=progress_bar,
                **trainer_kwargs,
            )

        with timed("building prototypes and calibrating thresholds"):
            self.reference = self._build_reference(
                x,
                codes,
                labels,
                train_idx,
                calibration_idx,
                quantile=calibration_quantile,
                n_prototypes=n_prototypes,
                seed=seed,
            )
        epochs_run = (
            len(self.history_["train_loss"])
            if self.history_ and "train_loss" in self.history_
            else max_epochs
        )
        self.training_summary = {
            "n_cells": len(codes),
            "n_train": len(train_idx),
            "n_calibration": len(calibration_idx),
            "n_shots": n_shots,
            "calibration_fraction": calibration_fraction,
            "calibration_quantile": calibration_quantile,
            "n_prototypes": n_prototypes,
            "max_epochs": max_epochs,
            "epochs_run": int(epochs_run),
            "lr": lr,
            "weight_decay": weight_decay,
            "types_per_batch": types_per_batch,
            "cells_per_type": cells_per_type,
            "seed": seed,
            "labels_key": self.setup["labels_key"],
            "batch_key": self.setup["batch_key"],
        }

    def _reference_input(self) -> np.ndarray:
        source, report = self._reference_source(self.adata)
        index = self._match(source).index
        return np.concatenate(
            [
                x
                for _, x in iter_model_input(
                    source, report, index, settings.batch_size, self.adata
                )
            ]
        )

    def _run_trainer(
        self,
        data,
        max_epochs,
        *,
        lr,
        weight_decay,
        early_stopping,
        early_stopping_patience,
        accelerator,
        devices,
        progress_bar,
        **trainer_kwargs,
    ) -> None:
        plan = SiameseTrainingPlan(
            self.module, lr=lr, weight_decay=weight_decay, optimizer="AdamW"
        )
        trainer_kwargs.setdefault("logger", None)
        # The loss can creep down by 1e-5 per epoch for hundreds of epochs; that is not progress.
        trainer_kwargs.setdefault("early_stopping_min_delta", EARLY_STOPPING_MIN_DELTA)
        logger.info(
            "training MapCell on %d cells (%d held out), up to %d epochs",
            data.n_train,
            data.n_val,
            max_epochs,
        )
        with quiet_lightning():
            runner = TrainRunner(
                self,
                training_plan=plan,
                data_splitter=data,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                early_stopping=early_stopping,
                early_stopping_monitor="validation_loss",
                early_stopping_patience=early_stopping_patience,
                check_val_every_n_epoch=1 if data.n_val else None,
                enable_progress_bar=progress_bar,
                log_every_n_steps=max(1, min(50, data.batches_per_epoch)),
                **trainer_kwargs,
            )
            runner()
        self.module.eval()

    def _build_reference(
        self, x, codes, labels, train_idx, calibration_idx, *, quantile, n_prototypes, seed
    ):
        embedding = self._embed_tensor(x)
        n_types = len(labels)
        train_codes = torch.as_tensor(codes[train_idx])
        prototypes, owners = compute_prototypes(
            embedding[train_idx], train_codes, n_types, per_type=n_prototypes, seed=seed
        )
        state = ReferenceState(
            labels=list(labels),
            prototypes=prototypes,
            prototype_types=owners,
            thresholds={},
            reference_embedding=embedding[train_idx],
            reference_types=train_codes,
            cell_counts={
                label: {
                    "train": int((codes[train_idx] == i).sum()),
                    "calibration": int((codes[calibration_idx] == i).sum()),
                }
                for i, label in enumerate(labels)
            },
        )
        self.reference = state
        state.thresholds, state.calibration = self._calibrate(
            embedding[calibration_idx], codes[calibration_idx], quantile
        )
        return state

    def _calibrate(
        self, embedding: torch.Tensor, codes: np.ndarray, quantile: float
    ) -> tuple[dict, dict]:
        """Thresholds for both modes from held-out cells of known type, and what was measured."""
        n_types = len(self.reference.labels)
        thresholds, report = {}, {"quantile": quantile}
        # With a few held-out cells per type, as in few-shot training, their quantile says
        # little about cells from another lab: such a type keeps its label up to halfway to
        # the nearest other type (benchmarks/NOTES.md, entry 13).
        halfway = halfway_to_nearest_type(
            self.reference.prototypes, self.reference.prototype_types, n_types
        )
        for mode in MODES:
            result = self._search(embedding, mode)
            if mode == "prototype":
                own = self._distance_to_own_type(embedding, codes)
                keep = np.ones(len(codes), dtype=bool)
            else:
                own, keep = (
                    result.distance,
                    result.nearest == codes,
                )  # only votes won by the own type
            calibration = calibrate_thresholds(
                own[keep], codes[keep], n_types, quantile=quantile, floor=halfway
            )
            thresholds[mode] = calibration.thresholds
            report[mode] = {
                "heldout_accuracy": float((result.nearest == codes).mean())
                if len(codes)
                else float("nan"),
                "types_with_pooled_threshold": calibration.types_pooled(self.reference.labels),
            }
        pooled = report["prototype"]["types_with_pooled_threshold"]
        if pooled:
            logger.info(
                "    %d cell types have fewer than %d held-out cells (%s): their thresholds are "
                "at least the pooled quantile of all types and half the way to the nearest "
                "other type",
                len(pooled),
                MIN_CALIBRATION_CELLS,
                ", ".join(pooled),
            )
        without = [
            label
            for label, n in zip(
                self.reference.labels, np.bincount(codes, minlength=n_types), strict=True
            )
            if n == 0
        ]
        if without:
            warn(
                f"{len(without)} cell types have no held-out cells ({', '.join(without)}), so "
                "their thresholds are the pooled quantile of the other types; give each type at "
                "least two cells (or lower n_shots) for a threshold of its own.",
                CalibrationWarning,
            )
        return thresholds, report

    def _distance_to_own_type(self, embedding: torch.Tensor, codes: np.ndarray) -> np.ndarray:
        distance = torch.cdist(embedding, self.reference.prototypes)
        foreign = self.reference.prototype_types[None, :] != torch.as_tensor(codes)[:, None]
        return distance.masked_fill(foreign, float("inf")).amin(dim=1).numpy()

    # ---------------------------------------------------------------- embedding and search

    @torch.no_grad()
    def _embed_tensor(self, x: torch.Tensor) -> torch.Tensor:
        device = settings.device
        self.module.eval()
        self.module.to(device)
        parts = [
            self.encoder(x[i : i + settings.batch_size].to(device)).cpu()
            for i in range(0, len(x), settings.batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0, self.encoder.config["n_latent"])

    def _match(self, source: ExpressionSource, gene_key: str | None = None) -> GeneMatch:
        where = "adata.raw" if source.where == "adata.raw.X" else "adata"
        return match_genes(source.var, self.gene_ids, gene_key=gene_key, where=where)

    @torch.no_grad()
    def embed_query(
        self,
        adata: ad.AnnData,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        gene_key: str | None = None,
    ) -> tuple[np.ndarray, GeneMatch, ValueReport]:
        """Embed any AnnData in chunks: (embedding, gene match, value report); write nothing.

        A query of more than one chunk (``mc.settings.batch_size`` cells) shows a progress bar
        over the chunks while ``mc.settings.progress_bar`` is on.
        """
        source = expression_source(adata, layer=layer, use_raw=use_raw)
        report = detect_values(source, adata)
        match = self._match(source, gene_key)
        device = settings.device
        self.module.eval()
        self.module.to(device)
        chunks = iter_model_input(source, report, match.index, settings.batch_size, adata)
        n_chunks = math.ceil(source.n_obs / settings.batch_size)
        bar = tqdm(
            chunks,
            total=n_chunks,
            desc="embedding",
            unit="chunk",
            disable=not settings.progress_bar or n_chunks < 2,
        )
        parts = [self.encoder(torch.from_numpy(x).to(device)).cpu().numpy() for _, x in bar]
        return np.concatenate(parts), match, report

    def query_neighbours(
        self,
        adata: ad.AnnData,
        n_neighbors: int = NOVELTY_NEIGHBORS,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        gene_key: str | None = None,
        match: GeneMatch | None = None,
        report: ValueReport | None = None,
    ) -> np.ndarray | None:
        """Each query cell's ``n_neighbors`` nearest query cells (itself first): cells x k.

        Found in the first principal components of the query's own z-scored values on the
        model's genes (genes it lacks are left out), exactly and in chunks. ``None`` when
        ``n_neighbors`` is 0 or 1 or the query has fewer than 3 cells: novelty is then judged
        cell by cell. ``match`` and ``report``, what :meth:`embed_query` returned for the same
        ``adata``, save matching genes (and its log lines) and reading the values twice.
        """
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
            msg = f"novelty_neighbors must be a whole number of cells, not {n_neighbors!r}"
            raise TypeError(msg)
        if n_neighbors < 0:
            msg = (
                "novelty_neighbors must be 0 (judge each cell alone) or a number of query "
                f"cells, not {n_neighbors}"
            )
            raise ValueError(msg)
        if n_neighbors <= 1 or adata.n_obs < 3:
            return None
        source = expression_source(adata, layer=layer, use_raw=use_raw)
        report = report or detect_values(source, adata)
        found = (match or self._match(source, gene_key)).index
        found = found[found >= 0]

        def chunks():
            for _, x in iter_model_input(source, report, found, settings.batch_size, adata):
                yield x

        with timed(f"finding {n_neighbors} neighbours of each of {adata.n_obs} query cells"):
            pcs = standardised_pcs(chunks, device=settings.device)
            return neighbour_indices(
                pcs, n_neighbors, device=settings.device, chunk_size=settings.batch_size
            )

    def get_latent_representation(
        self,
        adata: ad.AnnData | None = None,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        gene_key: str | None = None,
    ) -> np.ndarray:
        """The embedding (cells x ``n_latent``, float32) of ``adata`` (default: the reference)."""
        if adata is None:
            adata, layer = self.adata, self.setup["layer"]
        return self.embed_query(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)[0]

    def _search(self, embedding: torch.Tensor, mode: Mode, k: int = DEFAULT_K):
        state = self.reference
        common = {"device": settings.device, "chunk_size": settings.batch_size}
        if mode == "prototype":
            return nearest_prototype(
                embedding, state.prototypes, state.prototype_types, len(state.labels), **common
            )
        if mode == "knn":
            return knn_vote(
                embedding,
                state.reference_embedding,
                state.reference_types,
                len(state.labels),
                k=k,
                **common,
            )
        msg = f"mode must be one of {MODES}, not {mode!r}"
        raise ValueError(msg)

    def classify(
        self,
        embedding: np.ndarray,
        *,
        mode: Mode = "prototype",
        k: int = DEFAULT_K,
        novelty_cutoff: float = NOVELTY_CUTOFF,
        neighbours: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Label embedded cells: a frame of label, nearest type, distance, novelty, confidence.

        Columns: ``label``, ``nearest``, ``distance``, ``novelty``, ``cell_novelty``,
        ``confidence``. ``cell_novelty`` is each cell's distance over its nearest type's
        threshold. ``novelty`` is the median of ``cell_novelty`` over each row of
        ``neighbours`` (cells x k indices into ``embedding``, from :meth:`query_neighbours`),
        or ``cell_novelty`` itself without them. Cells whose ``novelty`` is above
        ``novelty_cutoff`` get the label "Unknown" while ``nearest`` keeps the nearest type.
        """
        self._check_trained()
        if neighbours is not None and (
            np.ndim(neighbours) != 2 or len(neighbours) != len(embedding)
        ):
            msg = (
                "neighbours must hold one row of cell indices per embedded cell "
                f"({len(embedding)}), not an array of shape {np.shape(neighbours)}; "
                "make it with MapCell.query_neighbours on the same cells"
            )
            raise ValueError(msg)
        if mode not in MODES:
            msg = f"mode must be one of {MODES}, not {mode!r}"
            raise ValueError(msg)
        if k < 1:
            msg = (
                "k must be a positive number of neighbours (the original MapCell used "
                f"21), not {k}"
            )
            raise ValueError(msg)
        if not novelty_cutoff > 0:
            msg = (
                "novelty_cutoff must be positive (1.0 is the calibrated threshold), not "
                f"{novelty_cutoff}"
            )
            raise ValueError(msg)
        result = self._search(torch.as_tensor(embedding, dtype=torch.float32), mode, k)
        cell_novelty = result.distance / self.reference.thresholds[mode][result.nearest]
        novelty = (
            cell_novelty if neighbours is None else neighbour_median(cell_novelty, neighbours)
        )
        labels = self.reference.labels
        nearest = pd.Categorical.from_codes(result.nearest, categories=labels)
        label = pd.Categorical(
            np.where(novelty > novelty_cutoff, UNKNOWN, np.asarray(nearest, dtype=object)),
            categories=[*labels, UNKNOWN],
        )
        return pd.DataFrame(
            {
                "label": label,
                "nearest": nearest,
                "distance": result.distance.astype(np.float32),
                "novelty": novelty.astype(np.float32),
                "cell_novelty": cell_novelty.astype(np.float32),
                "confidence": result.confidence.astype(np.float32),
            }
        )

    def predict(
        self,
        adata: ad.AnnData,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        gene_key: str | None = None,
        mode: Mode = "prototype",
        k: int = DEFAULT_K,
        novelty_cutoff: float = NOVELTY_CUTOFF,
        novelty_neighbors: int = NOVELTY_NEIGHBORS,
    ) -> pd.DataFrame:
        """Annotate ``adata`` without writing to it: the frame of :meth:`classify`, by cell.

        ``novelty_neighbors`` is as in :func:`mapcell.tl.annotate`.
        """
        frame = self._annotation(
            adata,
            layer=layer,
            use_raw=use_raw,
            gene_key=gene_key,
            mode=mode,
            k=k,
            novelty_cutoff=novelty_cutoff,
            novelty_neighbors=novelty_neighbors,
        )[0]
        frame.index = adata.obs_names
        return frame

    def _annotation(
        self, adata, *, layer, use_raw, gene_key, mode, k, novelty_cutoff, novelty_neighbors
    ) -> tuple[pd.DataFrame, np.ndarray, GeneMatch, ValueReport]:
        # Embed, find the query neighbourhoods, classify: (frame, embedding, match, report).
        self._check_trained()
        embedding, match, report = self.embed_query(
            adata, layer=layer, use_raw=use_raw, gene_key=gene_key
        )
        neighbours = self.query_neighbours(
            adata, novelty_neighbors, layer=layer, use_raw=use_raw, match=match, report=report
        )
        frame = self.classify(
            embedding, mode=mode, k=k, novelty_cutoff=novelty_cutoff, neighbours=neighbours
        )
        return frame, embedding, match, report

    # ---------------------------------------------------------------- new types

    def add_cell_types(
        self,
        adata: ad.AnnData,
        labels_key: str,
        *,
        layer: str | None = None,
        use_raw: bool = False,
        gene_key: str | None = None,
        calibration_fraction: float = 0.5,
        seed: int | None = None,
    ) -> list[str]:
        """Teach the model new types from a few labelled cells, without retraining.

        The cells go through the trained encoder; each new type gets a prototype (the mean of
        its prototype cells), kNN neighbours and, from its other cells, a threshold calibrated
        at the model's quantile. With fewer than two cells held out a type borrows the pooled
        threshold of the known types. The model changes only if every step succeeds.

        Parameters
        ----------
        adata
            Cells of the new types. Other cells may be there too: only labels the model lacks
            are added, and cells of known types or labelled "Unknown" are ignored.
        labels_key
            ``obs`` column with their labels.
        calibration_fraction
            Share of each new type's cells held out to calibrate its threshold.

        Returns
        -------
        The labels added.
        """
        self._check_trained()
        _check_labels(adata, labels_key, min_types=1, allow_unknown=True)
        labels = adata.obs[labels_key].astype(str)
        new = [
            label for label in pd.unique(labels) if label not in (*self.reference.labels, UNKNOWN)
        ]
        if not new:
            msg = (
                f"every label in adata.obs[{labels_key!r}] is already a type of the model (or "
                f"{UNKNOWN!r}): nothing to add"
            )
            raise ValueError(msg)

        embedding, _, _ = self.embed_query(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)
        keep = labels.isin(new).to_numpy()
        embedding, codes = torch.as_tensor(embedding[keep]), _type_codes(labels[keep], new)
        seed = settings.seed if seed is None else seed
        train_idx, calibration_idx = split_cells(
            codes, n_shots=None, calibration_fraction=calibration_fraction, seed=seed
        )

        old, n_old = self.reference, len(self.reference.labels)
        prototypes, owners = compute_prototypes(
            embedding[train_idx], torch.as_tensor(codes[train_idx]), len(new)
        )
        grown = ReferenceState(
            labels=[*old.labels, *new],
            prototypes=torch.cat([old.prototypes, prototypes]),
            prototype_types=torch.cat([old.prototype_types, owners + n_old]),
            thresholds={},
            reference_embedding=torch.cat([old.reference_embedding, embedding[train_idx]]),
            reference_types=torch.cat(
                [old.reference_types, torch.as_tensor(codes[train_idx]) + n_old]
            ),
            cell_counts={
                **old.cell_counts,
                **{
                    label: {
                        "train": int((codes[train_idx] == i).sum()),
                        "calibration": int((codes[calibration_idx] == i).sum()),
                        "added": True,
                    }
                    for i, label in enumerate(new)
                },
            },
            calibration=old.calibration,
        )
        try:
            self.reference = grown
            new_thresholds = self._calibrate_added(
                embedding[calibration_idx], codes[calibration_idx] + n_old, old, n_old, len(new)
            )
        except Exception:
            self.reference = old
            raise
        grown.thresholds = new_thresholds
        logger.info("added %d cell types to the model: %s", len(new), ", ".join(new))
        return new

    def _calibrate_added(
        self, embedding, codes, old: ReferenceState, n_old: int, n_new: int
    ) -> dict:
        quantile = old.calibration.get("quantile", CALIBRATION_QUANTILE)
        thresholds = {}
        for mode in MODES:
            pooled = float(np.median(old.thresholds[mode]))
            if mode == "prototype":
                own, keep = (
                    self._distance_to_own_type(embedding, codes),
                    np.ones(len(codes), dtype=bool),
                )
            else:
                result = self._search(embedding, mode)
                own, keep = result.distance, result.nearest == codes
            added = np.full(n_new, pooled, dtype=np.float32)
            for j in range(n_new):
                values = own[keep & (codes == n_old + j)]
                if len(values) >= 2:
                    added[j] = max(
                        float(np.quantile(values, quantile)),
                        pooled if len(values) < MIN_CALIBRATION_CELLS else 0,
                    )
            thresholds[mode] = np.concatenate([old.thresholds[mode], added])
        return thresholds

    # ---------------------------------------------------------------- sharing

    def save(self, dir_path: str, *, overwrite: bool = False, **kwargs) -> None:
        """Write the model as a bundle folder (safetensors + JSON + model card, no pickle).

        The folder is written under a temporary name and renamed into place. An existing
        ``dir_path`` is replaced only with ``overwrite=True``.
        """
        from mapcell.hub._bundle import save_bundle

        if kwargs:
            msg = f"MapCell.save takes dir_path and overwrite only, not {sorted(kwargs)}"
            raise TypeError(msg)
        save_bundle(self, dir_path, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: ad.AnnData | None = None, **kwargs) -> MapCell:
        """Read a bundle written by :meth:`save`. Nothing in it is executed.

        ``dir_path`` is the bundle's folder or ``.tar.gz`` archive, an ``http(s)://`` URL of an
        archive, a registry name (``"pbmc"`` or ``"pbmc@1.0"``, looked up at
        ``mc.settings.registry_url``) or ``"hf://owner/repo@revision"``; see
        :func:`mapcell.hub.resolve`. Downloads are verified and cached.
        """
        from mapcell.hub._resolve import load_model

        if adata is not None or kwargs:
            msg = "MapCell.load reads a bundle on its own; pass only its path or name"
            raise TypeError(msg)
        return load_model(dir_path)

    def __repr__(self) -> str:
        state = (
            "untrained" if self.reference is None else f"{len(self.reference.labels)} cell types"
        )
        n_genes = len(getattr(self, "genes", []))
        return f"MapCell({n_genes} genes, {self.loss_config['loss']} loss, {state})"


def _check_labels(
    adata: ad.AnnData, labels_key: str, *, min_types: int = 2, allow_unknown: bool = False
) -> None:
    if labels_key not in adata.obs:
        msg = (
            f"labels_key {labels_key!r} is not a column of adata.obs; the columns are "
            f"{list(adata.obs.columns)}"
        )
        raise KeyError(msg)
    labels = adata.obs[labels_key]
    n_missing = int(labels.isna().sum())
    if n_missing:
        msg = (
            f"adata.obs[{labels_key!r}] has {n_missing} cells without a label; drop them "
            f"(adata[adata.obs[{labels_key!r}].notna()]) or give them one"
        )
        raise ValueError(msg)
    if not allow_unknown and UNKNOWN in set(labels.astype(str)):
        msg = (
            f"adata.obs[{labels_key!r}] uses the label {UNKNOWN!r}, which mapcell keeps for novel "
            "cells; rename those cells' type or drop them from the reference"
        )
        raise ValueError(msg)
    n_types = labels.astype(str).nunique()
    if n_types < min_types:
        msg = (
            f"adata.obs[{labels_key!r}] has {n_types} cell type(s); a reference needs at "
            f"least {min_types}"
        )
        raise ValueError(msg)
