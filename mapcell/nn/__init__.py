"""Learning: the Siamese encoder, the metric losses and the class-balanced sampler."""

from mapcell.nn._encoder import SiameseEncoder
from mapcell.nn._losses import LOSSES, contrastive_loss, metric_loss, supcon_loss, triplet_loss
from mapcell.nn._module import SiameseModule
from mapcell.nn._sampler import ClassBalancedSampler, TensorDictDataset

__all__ = [
    "LOSSES",
    "ClassBalancedSampler",
    "SiameseEncoder",
    "SiameseModule",
    "TensorDictDataset",
    "contrastive_loss",
    "metric_loss",
    "supcon_loss",
    "triplet_loss",
]
