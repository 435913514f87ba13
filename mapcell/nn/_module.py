"""The scvi-tools module: the encoder plus the metric loss, as scvi-tools' trainer expects."""

from __future__ import annotations

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from mapcell.nn._encoder import SiameseEncoder
from mapcell.nn._losses import LossName, metric_loss, pair_masks

X_KEY, LABELS_KEY, BATCH_KEY = "X", "labels", "batch"


class SiameseModule(BaseModuleClass):
    """Wrap :class:`SiameseEncoder` with a metric loss for :class:`scvi.train.TrainRunner`.

    There is no generative part and no reconstruction loss; ``loss`` reports the metric loss
    and, as extra metrics, the mean distance of positive and of negative pairs in the batch.
    """

    def __init__(self, encoder: SiameseEncoder, loss: LossName, loss_params: dict) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss_name = loss
        self.loss_params = loss_params

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors[X_KEY]}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embed ``x``."""
        return {"z": self.encoder(x)}

    def generative(self) -> dict:
        """A Siamese model generates nothing."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """The metric loss of the batch, with mean positive and negative pair distances."""
        z, labels = inference_outputs["z"], tensors[LABELS_KEY]
        batches = tensors.get(BATCH_KEY)
        value = metric_loss(self.loss_name, z, labels, batches, **self.loss_params)
        with torch.no_grad():
            positive, negative = pair_masks(labels, batches)
            distance = torch.cdist(z, z)
            metrics = {
                "positive_distance": distance[positive].mean()
                if positive.any()
                else distance.new_tensor(0.0),
                "negative_distance": distance[negative].mean()
                if negative.any()
                else distance.new_tensor(0.0),
            }
        return LossOutput(loss=value, n_obs_minibatch=len(z), extra_metrics=metrics)
