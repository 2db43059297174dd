"""The frame-feature extractors that k-means tokenizers cluster (soundstorm.semantic.kmeans_tokenizer).

    content   our phone-supervised content encoder's bottleneck (soundstorm.semantic.content)
    mfcc      13 MFCCs with deltas and CMVN: HuBERT's first-iteration targets, the baseline
    hubert    a hidden layer of a transformers HubertModel / Wav2Vec2Model / WavLMModel (hubert.py)

Notation: B batch, N samples, S frames, F feature width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from soundstorm.checkpoint import write_model_files
from soundstorm.semantic.content import ContentEncoder
from soundstorm.semantic.features import MFCC, frame_mask, normalize_frames, zero_padding
from soundstorm.semantic.kmeans_tokenizer import EXTRACTOR_LOADERS


CONTENT_OUTPUTS = ("bottleneck", "posteriors")


class ContentFeatures:
    """The content encoder's bottleneck [.., F], or its phone posteriors [.., P]: the posteriors
    are what the classifier keeps of the bottleneck, so they carry less of the speaker."""

    kind = "content"

    def __init__(self, encoder: ContentEncoder, output: str = "bottleneck") -> None:
        if output not in CONTENT_OUTPUTS:
            raise ValueError(f"content features are one of {CONTENT_OUTPUTS}, got {output!r}")
        self.encoder = encoder.eval()
        self.output = output
        self.sample_rate = encoder.config.sample_rate
        self.rate = encoder.config.rate
        self.feature_dim = encoder.config.feature_dim if output == "bottleneck" else len(encoder.config.phones)

    def features(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        output = self.encoder(wav, lengths)
        if self.output == "posteriors":
            return output.logits.float().softmax(dim=-1), output.valid
        return output.features, output.valid

    def save(self, folder: Path) -> dict[str, Any]:
        # fp16 halves the bundled size; the k-means CLI fits on features of fp16-rounded weights.
        write_model_files(self.encoder, self.encoder.config, folder, dtype=torch.float16)
        return {"content": {"output": self.output}}


class MfccFeatures:
    kind = "mfcc"

    def __init__(self, sample_rate: int = 16000, hop_length: int = 640, n_mfcc: int = 13) -> None:
        if sample_rate < 1 or hop_length < 1 or n_mfcc < 1:
            raise ValueError("MFCC features need a positive sample rate, hop length and coefficient count")
        self.sample_rate, self.hop_length, self.n_mfcc = sample_rate, hop_length, n_mfcc
        self.rate = sample_rate / hop_length
        self.feature_dim = 3 * n_mfcc
        self.mfcc = MFCC(sample_rate, hop_length, n_mfcc)

    def features(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        mfcc = self.mfcc.to(wav.device)(zero_padding(wav, lengths))  # [B, S, 3C]
        valid = frame_mask(lengths, self.hop_length, mfcc.shape[1])
        return normalize_frames(mfcc, valid), valid

    def save(self, folder: Path) -> dict[str, Any]:
        return {"mfcc": {"sample_rate": self.sample_rate, "hop_length": self.hop_length, "n_mfcc": self.n_mfcc}}


def _load_content(folder: Path, document: dict[str, Any]) -> ContentFeatures:
    return ContentFeatures(ContentEncoder.from_pretrained(folder), document.get("content", {}).get("output", "bottleneck"))


def _load_mfcc(folder: Path, document: dict[str, Any]) -> MfccFeatures:
    return MfccFeatures(**document["mfcc"])


def _load_hubert(folder: Path, document: dict[str, Any]) -> Any:
    from soundstorm.semantic.hubert import HubertFeatures  # transformers is slow to import

    return HubertFeatures.from_tokenizer_folder(folder, document)


EXTRACTOR_LOADERS.update(content=_load_content, mfcc=_load_mfcc, hubert=_load_hubert)
