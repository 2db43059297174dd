"""Semantic tokens as k-means clusters of frame features: one tokenizer for every feature kind.

A tokenizer is a feature extractor (our content encoder, MFCCs, or a HuBERT layer) plus
k-means centroids over its features. Its folder describes itself:

    tokenizer.json       kind, rate, sample rate, vocabulary size, format version
    kmeans.safetensors   centroids float32 [V, F]
    ...                  the extractor's own files (content: config.json + model.safetensors;
                         hubert: encoder/ with the transformers model)

and loads with `load_kmeans_tokenizer(path)` (or the specs `content:PATH`, `mfcc:PATH`,
`hubert:PATH`). Its `name` carries a digest of the centroids, so a token cache made by one
tokenizer refuses another with the same vocabulary size.

Notation: B batch, N samples, S frames (tokens), F feature width, V clusters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from soundstorm.atomic import atomic_folder
from soundstorm.kmeans import kmeans, nearest_code
from soundstorm.semantic.base import SemanticTokenizer

TOKENIZER_NAME = "tokenizer.json"
CENTROIDS_NAME = "kmeans.safetensors"
FORMAT_VERSION = 1


class FrameFeatures(Protocol):
    """What k-means clusters: frame features of audio at a fixed rate."""

    kind: str  # "content", "mfcc", "hubert"
    sample_rate: int
    rate: float  # frames per second
    feature_dim: int  # F

    def features(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """float wav [B, 1, N], lengths [B] in samples -> features [B, S, F], valid [B, S] bool,
        S = ceil(N * rate / sample_rate)."""

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the extractor's files into folder; returns what tokenizer.json records of it."""


def check_wav(wav: object, lengths: object, sample_rate: int) -> tuple[Tensor, Tensor]:
    """The tokenizer's input checks: float [B, 1, N] with N > 0, finite; lengths [B] in [1, N]."""
    if not isinstance(wav, Tensor) or wav.dim() != 3 or not wav.is_floating_point():
        shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
        raise ValueError(f"expected float audio [B, 1, N] at {sample_rate} Hz, got {shape}")
    B, C, N = wav.shape
    if C != 1:
        raise ValueError(f"expected mono audio [B, 1, N], got {C} channels: downmix first (load_audio(..., downmix=True))")
    if N == 0 or B == 0:
        raise ValueError(f"expected at least one sample of audio, got shape {tuple(wav.shape)}")
    if not bool(torch.isfinite(wav).all()):
        raise ValueError("the audio holds NaN or infinite samples")
    if lengths is None:
        return wav, torch.full((B,), N, dtype=torch.long, device=wav.device)
    if not isinstance(lengths, Tensor) or lengths.shape != (B,):
        raise ValueError(f"lengths must be a tensor [B] = [{B}] of samples, got {lengths!r}")
    if bool((lengths < 1).any()) or bool((lengths > N).any()):
        raise ValueError(f"lengths must be in [1, N = {N}] samples, got {lengths.tolist()}")
    return wav, lengths.long()


class KMeansTokenizer(SemanticTokenizer):
    def __init__(self, extractor: FrameFeatures, centroids: Tensor) -> None:
        if centroids.dim() != 2 or centroids.shape[1] != extractor.feature_dim:
            raise ValueError(
                f"centroids must be [V, {extractor.feature_dim}] for {extractor.kind} features, "
                f"got {tuple(centroids.shape)}"
            )
        self.extractor = extractor
        self.centroids = centroids.float().contiguous()  # [V, F]
        self.kind = extractor.kind
        self.sample_rate = extractor.sample_rate
        self.rate = extractor.rate
        self.vocab_size = centroids.shape[0]
        digest = hashlib.sha1(self.centroids.numpy().tobytes()).hexdigest()[:10]
        self.name = f"{self.kind}-kmeans{self.vocab_size}-{digest}"

    @torch.inference_mode()
    def tokenize(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        wav, lengths = check_wav(wav, lengths, self.sample_rate)
        features, valid = self.extractor.features(wav, lengths)  # [B, S, F], [B, S]
        B, S, _ = features.shape
        tokens = nearest_code(features.reshape(B * S, -1).float(), self.centroids.to(features.device))
        tokens = tokens.view(B, S).masked_fill(~valid, 0)  # [B, S]
        return tokens, valid.sum(dim=1)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer folder, atomically as a whole."""
        with atomic_folder(path) as staging:
            extra = self.extractor.save(staging)
            save_file({"centroids": self.centroids}, staging / CENTROIDS_NAME)
            document = {"format_version": FORMAT_VERSION, "kind": self.kind, "sample_rate": self.sample_rate,
                        "rate": self.rate, "vocab_size": self.vocab_size, "name": self.name, **extra}
            (staging / TOKENIZER_NAME).write_text(json.dumps(document, indent=2) + "\n")


def collect_features(extractor: FrameFeatures, batches: Iterable[tuple[Tensor, Tensor]], max_vectors: int,
                     seed: int = 0) -> Tensor:
    """Valid frame features [M, F] of (wav [B, 1, N], lengths [B]) batches; a uniform random
    subset of at most max_vectors of them (reservoir sampling by random keys)."""
    generator = torch.Generator().manual_seed(seed)
    kept = torch.empty(0, extractor.feature_dim)
    keys = torch.empty(0)
    with torch.inference_mode():
        for wav, lengths in batches:
            features, valid = extractor.features(wav, lengths)
            vectors = features[valid].float().cpu()  # [m, F]
            kept = torch.cat([kept, vectors])
            keys = torch.cat([keys, torch.rand(len(vectors), generator=generator)])
            if len(kept) > max_vectors:
                order = keys.argsort()[:max_vectors]
                kept, keys = kept[order], keys[order]
    if len(kept) == 0:
        raise ValueError("no audio frames to fit k-means on")
    return kept


def fit_kmeans(vectors: Tensor, num_clusters: int, iters: int = 30, seed: int = 0) -> Tensor:
    """Centroids [V, F] of vectors [M, F] (Lloyd's k-means from random data points)."""
    if len(vectors) < num_clusters:
        raise ValueError(f"k-means with {num_clusters} clusters needs at least as many frames, got {len(vectors)}")
    torch.manual_seed(seed)
    centroids, _ = kmeans(vectors, num_clusters, iters)
    return centroids


# kind -> loader of an extractor from a tokenizer folder and its tokenizer.json document.
EXTRACTOR_LOADERS: dict[str, Callable[[Path, dict[str, Any]], FrameFeatures]] = {}


def load_kmeans_tokenizer(path: str | Path, kind: str | None = None) -> KMeansTokenizer:
    """The tokenizer saved at path; with `kind`, refuse one of another kind."""
    import soundstorm.semantic.extractors  # noqa: F401  (registers the built-in kinds)

    path = Path(path)
    document_file = path / TOKENIZER_NAME
    if not document_file.is_file():
        raise FileNotFoundError(
            f"no semantic tokenizer at {path}: expected a folder with {TOKENIZER_NAME} and {CENTROIDS_NAME} "
            "(soundstorm semantic kmeans writes one)"
        )
    try:
        document = json.loads(document_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{document_file} is not valid JSON ({error}): the tokenizer is corrupt") from error
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{document_file} has format_version {document.get('format_version')!r}; "
                         f"this version of soundstorm reads {FORMAT_VERSION}")
    found = document.get("kind")
    if kind is not None and found != kind:
        raise ValueError(f"{path} holds a {found!r} tokenizer, expected {kind!r}")
    if found not in EXTRACTOR_LOADERS:
        raise ValueError(f"{path}: unknown tokenizer kind {found!r}; known: {sorted(EXTRACTOR_LOADERS)}")
    try:
        centroids = load_file(path / CENTROIDS_NAME)["centroids"]
    except (SafetensorError, OSError, KeyError) as error:
        raise ValueError(f"{path / CENTROIDS_NAME} cannot be read ({error}): the tokenizer is incomplete or corrupt") from error
    tokenizer = KMeansTokenizer(EXTRACTOR_LOADERS[found](path, document), centroids)
    if tokenizer.vocab_size != document.get("vocab_size") or tokenizer.rate != document.get("rate"):
        raise ValueError(f"{path}: {CENTROIDS_NAME} and {TOKENIZER_NAME} disagree on the vocabulary or the rate")
    return tokenizer
