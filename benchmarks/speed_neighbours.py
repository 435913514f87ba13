"""Time and memory of judging novelty over query neighbourhoods, by query size.

Run: ``python benchmarks/speed_neighbours.py [n_cells ...]`` (default 10000 30000 100000).
For each size, a synthetic query of that many cells on 2000 genes (log1p values, about 10% of
them non-zero) is projected on its 30 principal components and every cell's 30 nearest cells
are found, on the CPU with the threads torch has. Prints seconds for each step and the peak
resident memory of the process; nothing is asserted.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch

from mapcell.search._neighbours import neighbour_indices, standardised_pcs

N_GENES, CHUNK = 2000, 4096


def synthetic_chunks(n_cells: int, seed: int = 0):
    def chunks():
        rng = np.random.default_rng(seed)
        for start in range(0, n_cells, CHUNK):
            rows = min(CHUNK, n_cells - start)
            values = rng.gamma(1.0, 1.0, (rows, N_GENES)).astype(np.float32)
            values[rng.random((rows, N_GENES)) > 0.1] = 0
            yield np.log1p(values)

    return chunks


def main(sizes: list[int]) -> None:
    device = torch.device("cpu")
    print(f"torch threads: {torch.get_num_threads()}")
    for n_cells in sizes:
        start = time.perf_counter()
        pcs = standardised_pcs(synthetic_chunks(n_cells), device=device)
        middle = time.perf_counter()
        neighbour_indices(pcs, 30, device=device, chunk_size=CHUNK)
        end = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n_cells:>8d} cells: PCA {middle - start:6.1f} s, 30 neighbours "
            f"{end - middle:6.1f} s, peak memory so far {peak:,.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main([int(n) for n in sys.argv[1:]] or [10_000, 30_000, 100_000])
