"""Residual vector quantization with EMA codebooks (SoundStream section 3.3; EnCodec).

Level 1 quantizes the encoder output, level q the residual that levels 1..q-1 left. Codebooks
are not trained by gradients: each code moves to the exponential moving average of the
vectors assigned to it. They start from k-means on the first training batch, and a code that
no vector has chosen for `dead_code_steps` steps restarts at a random vector of the batch.
The encoder learns through a straight-through estimator (the decoder's gradient with respect
to the quantized latents is passed to the unquantized ones) and a commitment loss that pulls
its output towards the codes.

Quantizer dropout: in training each example keeps a random number of levels (`levels`), so
that the decoder learns to decode any prefix of levels: one model serves every bitrate.

Under DDP (torch.distributed initialised) every statistic that changes a codebook (k-means
sums and counts, EMA sums and counts, restart vectors) is all-reduced or broadcast from rank 0,
so the codebooks stay identical on every rank without DDP's buffer broadcast.

Notation: B batch, D latent width, T frames, M = B * T vectors, Q levels, K codes per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from soundstorm.codecs.soundstream.config import SoundStreamConfig
from soundstorm.kmeans import all_reduce_sum_, broadcast_, kmeans, nearest_code, sample_vectors


class EuclideanCodebook(nn.Module):
    """One VQ level: K codes of width D, learned by exponential moving averages.

    All state is in buffers so that a checkpoint resumes training exactly:
    embedding [K, D] the codes; embedding_sum [K, D] and cluster_size [K], the EMAs of the
    sum and the number of vectors assigned to each code per step; unused_steps [K], steps
    since each code was last chosen; initialized [], 1.0 once k-means has run.
    """

    def __init__(self, dim: int, size: int, config: SoundStreamConfig, eps: float = 1e-5) -> None:
        super().__init__()
        self.size = size
        self.decay = config.ema_decay
        self.kmeans_iters = config.kmeans_iters
        self.dead_code_steps = config.dead_code_steps
        self.eps = eps
        self.register_buffer("initialized", torch.zeros(()))
        self.register_buffer("embedding", torch.randn(size, dim))
        self.register_buffer("embedding_sum", self.embedding.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("unused_steps", torch.zeros(size, dtype=torch.int64))
        self.embedding: Tensor
        self.embedding_sum: Tensor
        self.cluster_size: Tensor
        self.unused_steps: Tensor
        self.initialized: Tensor

    def encode(self, x: Tensor) -> Tensor:
        """x float [M, D] -> nearest codes int64 [M]."""
        return nearest_code(x, self.embedding)

    def decode(self, codes: Tensor) -> Tensor:
        """int64 [...] -> float [..., D]."""
        return F.embedding(codes, self.embedding)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x float [M, D] -> (quantized [M, D], codes int64 [M]), no gradient.

        In training mode this also initialises the codebook on its first batch, then moves it
        towards this batch (EMA) and restarts dead codes: the returned codes are those of the
        codebook before the update.
        """
        with torch.no_grad():
            if self.training and not bool(self.initialized):
                self.initialize(x)
            codes = self.encode(x)
            quantized = self.decode(codes)
            if self.training:
                self.update(x, codes)
        return quantized, codes

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Codes from k-means on x [M, D] (random vectors of x when kmeans_iters is 0)."""
        if self.kmeans_iters > 0:
            centroids, counts = kmeans(x, self.size, self.kmeans_iters)
        else:
            centroids = broadcast_(sample_vectors(x, self.size).contiguous())
            counts = x.new_ones(self.size)
        self.embedding.copy_(centroids)
        # The EMAs hold per-step sums and counts: start them at this batch's, consistently.
        self.cluster_size.copy_(counts)
        self.embedding_sum.copy_(centroids * counts[:, None])
        if self.dead_code_steps > 0:
            # Empty clusters (duplicates when the batch has fewer vectors than codes) restart
            # at the next update rather than after dead_code_steps steps.
            self.unused_steps.copy_(torch.where(counts > 0, 0, self.dead_code_steps - 1))
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def update(self, x: Tensor, codes: Tensor) -> None:
        """One EMA step with this batch's vectors x [M, D] and their codes [M]; then restart
        codes unused for dead_code_steps steps at random vectors of x."""
        counts = all_reduce_sum_(torch.bincount(codes, minlength=self.size).to(x.dtype))  # [K]
        sums = all_reduce_sum_(torch.zeros_like(self.embedding).index_add_(0, codes, x))  # [K, D]
        self.cluster_size.lerp_(counts, 1.0 - self.decay)
        self.embedding_sum.lerp_(sums, 1.0 - self.decay)
        # Laplace smoothing: a code whose count has decayed to ~0 is not divided by ~0.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total  # [K]
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        self.unused_steps.copy_(torch.where(counts > 0, 0, self.unused_steps + 1))
        if self.dead_code_steps > 0:
            dead = self.unused_steps >= self.dead_code_steps  # the same on every rank: counts are all-reduced
            num_dead = int(dead.sum())
            if num_dead:
                self.restart(dead, x)

    @torch.no_grad()
    def restart(self, dead: Tensor, x: Tensor) -> None:
        """Move the codes where dead [K] is True to random vectors of x [M, D] (rank 0's)."""
        replacements = broadcast_(sample_vectors(x, int(dead.sum())).contiguous())  # [n, D]
        self.embedding[dead] = replacements
        # As if each had been chosen by exactly its new vector: the EMA continues from there.
        self.embedding_sum[dead] = replacements
        self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [B, D, T] float, each example's kept levels summed; straight-through to the input
    codes: Tensor  # [B, T, Q] int64, every level's codes (also the levels an example dropped)
    commitment_loss: Tensor  # [] mean squared distance of every level's input to its code
    perplexity: Tensor  # [Q] exp(entropy) of each level's code usage in this batch (K at best)


class ResidualVectorQuantizer(nn.Module):
    """Q EuclideanCodebooks in series, each quantizing what the previous ones left."""

    def __init__(self, config: SoundStreamConfig) -> None:
        super().__init__()
        self.num_quantizers = config.num_quantizers
        self.codebook_size = config.codebook_size
        self.levels = nn.ModuleList(
            EuclideanCodebook(config.latent_dim, config.codebook_size, config) for _ in range(config.num_quantizers)
        )

    @property
    def dtype(self) -> torch.dtype:
        """The codebooks' dtype (float32 unless the model was cast): latents are cast to it."""
        return self.levels[0].embedding.dtype

    def forward(self, latents: Tensor, levels: Tensor | None = None) -> QuantizerOutput:
        """Quantize latents [B, D, T] with all Q levels.

        Args:
            levels: int64 [B], how many levels each example keeps in `quantized` (quantizer
                dropout), each in [1, Q]; None keeps all. Every level is still computed and
                trained on every example: dropping only hides levels from the decoder.
        """
        B, D, T = latents.shape
        if levels is not None:
            if levels.shape != (B,) or bool((levels < 1).any()) or bool((levels > self.num_quantizers).any()):
                raise ValueError(
                    f"levels must be int64 [B]=[{B}] with values in [1, {self.num_quantizers}], "
                    f"got shape {tuple(levels.shape)} values {levels.tolist()}"
                )
        # The codebooks' distances and EMAs need full precision, even under bf16 autocast.
        with torch.autocast(device_type=latents.device.type, enabled=False):
            x = rearrange(latents.to(self.dtype), "b d t -> (b t) d")  # [M, D]
            keep = None if levels is None else levels.repeat_interleave(T)  # [M] levels kept per vector
            residual = x
            kept_sum = torch.zeros_like(x)  # [M, D]
            all_codes, commitment, perplexity = [], x.new_zeros(()), []
            for q, codebook in enumerate(self.levels):
                quantized, codes = codebook(residual.detach())  # [M, D], [M]
                # Gradient reaches the encoder through `residual`; the code is a fixed target.
                commitment = commitment + F.mse_loss(residual, quantized)
                kept_sum = kept_sum + (quantized if keep is None else quantized * (keep > q)[:, None])
                residual = residual - quantized
                all_codes.append(codes)
                perplexity.append(_perplexity(codes, self.codebook_size))
            # Straight-through: the forward value is the quantized sum, the gradient that of x.
            out = x + (kept_sum - x).detach()
        return QuantizerOutput(
            quantized=rearrange(out, "(b t) d -> b d t", b=B),
            codes=rearrange(torch.stack(all_codes, dim=-1), "(b t) q -> b t q", b=B),
            commitment_loss=commitment / self.num_quantizers,
            perplexity=torch.stack(perplexity),
        )

    def encode(self, latents: Tensor, num_levels: int | None = None) -> Tensor:
        """latents [B, D, T] -> codes int64 [B, T, q] of the first q = num_levels levels (all
        by default). Never updates the codebooks."""
        B, D, T = latents.shape
        num_levels = self.num_quantizers if num_levels is None else num_levels
        with torch.autocast(device_type=latents.device.type, enabled=False):
            residual = rearrange(latents.to(self.dtype), "b d t -> (b t) d")  # [M, D]
            all_codes = []
            for codebook in self.levels[:num_levels]:
                codes = codebook.encode(residual)  # [M]
                residual = residual - codebook.decode(codes)
                all_codes.append(codes)
        return rearrange(torch.stack(all_codes, dim=-1), "(b t) q -> b t q", b=B)

    def decode(self, codes: Tensor, levels: Tensor | None = None) -> Tensor:
        """codes int64 [B, T, q], q <= Q (a prefix of the levels) -> latents [B, D, T].

        levels: int64 [B], how many of the first levels each example keeps (as forward's
        quantizer dropout); None keeps all q."""
        q = codes.shape[-1]
        parts = [self.levels[level].decode(codes[..., level]) for level in range(q)]  # q x [B, T, D]
        if levels is not None:
            parts = [part * (levels > level)[:, None, None].to(part.dtype) for level, part in enumerate(parts)]
        return rearrange(sum(parts), "b t d -> b d t")

    def decode_expected(self, codes: Tensor, probs: Tensor) -> Tensor:
        """codes int64 [B, T, c] and probs float [B, T, l, K], c + l <= Q -> latents [B, D, T]:
        the first c levels' vectors (decode) plus, for each of the next l, the expected vector
        sum_k probs[..., k] * embedding[k] (soft decoding; Codec.decode_expected)."""
        c = codes.shape[-1]
        expected = sum(probs[:, :, i].to(self.levels[c + i].embedding.dtype) @ self.levels[c + i].embedding
                       for i in range(probs.shape[2]))  # [B, T, D]
        return self.decode(codes) + rearrange(expected, "b t d -> b d t")


def _perplexity(codes: Tensor, size: int) -> Tensor:
    """exp(entropy) of the code histogram: codes int64 [M] -> float []."""
    probs = torch.bincount(codes, minlength=size).float() / codes.numel()
    return torch.exp(-(probs * torch.log(probs.clamp(min=1e-10))).sum())
