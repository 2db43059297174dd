"""Lloyd's k-means and nearest-centroid search, shared by the codec's vector quantizer and the
semantic tokenizers' k-means; DDP-aware, so that every rank computes the same centroids.

Notation: M vectors of width D, K centroids.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    if distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor: Tensor) -> Tensor:
    """Rank 0's value on every rank (a random choice must be the same everywhere)."""
    if distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def sample_vectors(x: Tensor, count: int) -> Tensor:
    """`count` random rows of x [M, D] -> [count, D]; without replacement when M >= count."""
    M = x.shape[0]
    if M >= count:
        index = torch.randperm(M, device=x.device)[:count]
    else:
        index = torch.randint(0, M, (count,), device=x.device)
    return x[index]


def nearest_code(x: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (Euclidean) for each row: x [M, D], codebook [K, D] -> int64 [M]."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every code of a row.
    distances = codebook.pow(2).sum(dim=1)[None, :] - 2.0 * x @ codebook.t()  # [M, K]
    return distances.argmin(dim=1)


def kmeans(x: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means over the vectors of every rank.

    Args:
        x: float [M, D], this rank's vectors.
    Returns:
        centroids float [K, D] (identical on every rank) and counts float [K], the vectors of
        all ranks assigned to each centroid in the last iteration. A centroid that no vector
        chose keeps its previous position.
    """
    centroids = broadcast_(sample_vectors(x, num_clusters).contiguous())
    counts = x.new_zeros(num_clusters)
    for _ in range(iters):
        assignment = nearest_code(x, centroids)  # [M]
        counts = all_reduce_sum_(torch.bincount(assignment, minlength=num_clusters).to(x.dtype))
        sums = all_reduce_sum_(torch.zeros_like(centroids).index_add_(0, assignment, x))  # [K, D]
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1.0)[:, None], centroids)
    return centroids, counts
