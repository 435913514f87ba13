"""The Siamese encoder: one network maps every cell, reference or query, into the metric space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Standardised inputs are clipped to this many standard deviations, as scanpy's scale does.
INPUT_CLIP = 10.0


class SiameseEncoder(nn.Module):
    """A multilayer perceptron from model input (log1p CP10k per gene) to the unit sphere.

    Each gene is first standardised with the reference's mean and standard deviation (kept as
    buffers, so they travel with the weights); embeddings are L2-normalised, so distances lie in
    [0, 2] and margins and thresholds mean the same for every model.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Size of the embedding (16 to 64 is typical).
    n_hidden
        Width of each hidden layer.
    n_layers
        Number of hidden layers.
    dropout
        Dropout after each hidden layer.
    input_dropout
        Share of genes zeroed at random during training, which teaches the encoder not to rely
        on any single gene (a query may lack some).
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 32,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout: float = 0.1,
        input_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.config = {
            "n_input": n_input,
            "n_latent": n_latent,
            "n_hidden": n_hidden,
            "n_layers": n_layers,
            "dropout": dropout,
            "input_dropout": input_dropout,
        }
        self.register_buffer("gene_mean", torch.zeros(n_input))
        self.register_buffer("gene_std", torch.ones(n_input))

        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        width = n_input
        for _ in range(n_layers):
            layers += [
                nn.Linear(width, n_hidden),
                nn.LayerNorm(n_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            width = n_hidden
        layers.append(nn.Linear(width, n_latent))
        self.network = nn.Sequential(*layers)

    @torch.no_grad()
    def set_input_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the reference's per-gene mean and standard deviation (zeros become ones)."""
        self.gene_mean.copy_(mean)
        self.gene_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of cells (cells x genes) into unit vectors (cells x n_latent)."""
        scaled = ((x - self.gene_mean) / self.gene_std).clamp(-INPUT_CLIP, INPUT_CLIP)
        return F.normalize(self.network(scaled), dim=1)
