"""SoundStream: a SEANet encoder, a residual vector quantizer and a SEANet (or Vocos-style) decoder.

    model = SoundStream(SoundStreamConfig.preset("small"))
    out = model(wav)                         # training: reconstruction, codes, commitment loss
    codes = model.encode(wav)                # [B, T, Q] int64, T = ceil(N / hop)
    audio = model.decode(codes[..., :4])     # any prefix of the levels decodes

Notation: B batch, N samples, T frames, D latent width, Q levels, K codes per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from soundstorm.codecs.soundstream.config import SoundStreamConfig
from soundstorm.codecs.soundstream.quantizer import ResidualVectorQuantizer
from soundstorm.codecs.soundstream.seanet import SEANetDecoder, SEANetEncoder
from soundstorm.codecs.soundstream.vocos import VocosDecoder


@dataclass
class SoundStreamOutput:
    """What one forward pass returns."""

    reconstruction: Tensor  # [B, 1, N] float, the decoded audio trimmed to the input's length
    codes: Tensor  # [B, T, Q] int64, every level's codes
    commitment_loss: Tensor  # [] mean squared distance of each level's input to its code
    perplexity: Tensor  # [Q] code usage of each level in this batch (K = all codes used evenly)


def check_wav(wav: object, sample_rate: int, name: str = "wav") -> Tensor:
    """Audio for the codec: a finite float tensor [B, 1, N] with B, N >= 1."""
    if not isinstance(wav, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, 1, N] at {sample_rate} Hz, got {type(wav).__name__}")
    if not wav.is_floating_point():
        raise ValueError(f"{name} must be float audio [B, 1, N] in [-1, 1], got {wav.dtype}: convert with .float()")
    if wav.dim() != 3 or wav.shape[1] != 1:
        hint = " (add the channel axis with wav[:, None])" if wav.dim() == 2 else ""
        hint = " (downmix multi-channel audio to mono first)" if wav.dim() == 3 and wav.shape[1] > 1 else hint
        raise ValueError(f"{name} must have shape [B, 1, N] (mono), got {tuple(wav.shape)}{hint}")
    if wav.shape[0] < 1 or wav.shape[2] < 1:
        raise ValueError(f"{name} must hold at least one example of one sample, got {tuple(wav.shape)}")
    if not bool(torch.isfinite(wav).all()):
        raise ValueError(f"{name} holds NaN or infinite samples")
    return wav


def check_codes(codes: object, num_quantizers: int, codebook_size: int, name: str = "codes") -> Tensor:
    """Codes for the decoder: int64 [B, T, q] with 1 <= q <= Q and every value in [0, K)."""
    if not isinstance(codes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, T, Q], got {type(codes).__name__}")
    if codes.dtype != torch.int64:
        raise ValueError(f"{name} must be int64 [B, T, Q], got {codes.dtype}: convert with .long()")
    if codes.dim() != 3 or codes.shape[0] < 1 or codes.shape[1] < 1:
        raise ValueError(f"{name} must have shape [B, T, Q] with B, T >= 1, got {tuple(codes.shape)}")
    if not 1 <= codes.shape[2] <= num_quantizers:
        raise ValueError(
            f"{name} has {codes.shape[2]} levels; this codec decodes 1 to {num_quantizers} levels "
            "(a prefix of its residual quantizers)"
        )
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= codebook_size:
        raise ValueError(f"{name} must be in [0, {codebook_size}), got values from {low} to {high}")
    return codes


def check_semantic(semantic: object, config: SoundStreamConfig, batch_size: int, num_frames: int) -> Tensor | None:
    """Semantic tokens for a decoder that reads them: None, or int64 [B, S] in [0, V] with
    S = ceil(T / semantic_rate_ratio) (more are cut); V is the null token, "none given"."""
    if semantic is None:
        return None
    if not config.semantic_vocab_size:
        raise ValueError("this codec's decoder reads no semantic tokens (semantic_vocab_size = 0): give none")
    ratio, V = config.semantic_rate_ratio, config.semantic_vocab_size
    S = -(-num_frames // ratio)
    if not isinstance(semantic, Tensor) or semantic.dtype != torch.int64 or semantic.dim() != 2 \
            or semantic.shape[0] != batch_size or semantic.shape[1] < S:
        shape = tuple(semantic.shape) if isinstance(semantic, Tensor) else type(semantic).__name__
        raise ValueError(f"semantic must be int64 [B, S] = [{batch_size}, >= {S}] for {num_frames} frames "
                         f"(one token per {ratio} frames), got {shape}")
    semantic = semantic[:, :S]
    if int(semantic.min()) < 0 or int(semantic.max()) > V:
        raise ValueError(f"semantic tokens must be in [0, {V}) ({V}: none given), got values from "
                         f"{int(semantic.min())} to {int(semantic.max())}")
    return semantic


class SoundStream(nn.Module):
    def __init__(self, config: SoundStreamConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self.decoder = VocosDecoder(config) if config.decoder == "vocos" else SEANetDecoder(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    def num_frames(self, num_samples: int) -> int:
        """T for N samples: the encoder pads the last frame."""
        return math.ceil(num_samples / self.hop_length)

    def num_parameters(self) -> int:
        """Trainable parameters (the codebooks are buffers, learned by EMA, and not counted)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, wav: Tensor, levels: Tensor | None = None, codes: Tensor | None = None,
                latents: Tensor | None = None, semantic: Tensor | None = None,
                reference: Tensor | None = None) -> SoundStreamOutput:
        """Encode, quantize (updating the codebooks in training mode) and decode.

        Args:
            wav: float [B, 1, N] at config.sample_rate.
            levels: int64 [B], the levels each example's decoder input keeps (quantizer
                dropout), each in [1, Q]; None keeps all.
            codes: int64 [B, T, Q] to decode instead of wav's own (the encoder does not run;
                no commitment loss): a decoder trained on another model's codes, e.g. the
                finer levels SoundStorm predicts (soundstorm_inputs.py), to reconstruct wav.
            latents: float [B, D, T], the decoder's input itself (the encoder and the quantizer do
                not run): e.g. SoundStorm's finer levels as expected codebook vectors
                (ResidualVectorQuantizer.decode_expected). Its output's codes are empty.
            semantic: int64 [B, S], semantic tokens of wav for a decoder that reads them
                (config.semantic_vocab_size > 0); None: the null token.
            reference: float [B, M], a voice reference's spectrum (reference_spectrum) for a
                decoder that reads one (config.reference_mels > 0); None: none given.
        """
        check_wav(wav, self.sample_rate)
        N = wav.shape[-1]
        semantic = check_semantic(semantic, self.config, wav.shape[0], self.num_frames(N))
        if latents is not None:
            expected = (wav.shape[0], self.config.latent_dim, self.num_frames(N))
            if codes is not None or levels is not None or tuple(latents.shape) != expected:
                raise ValueError(f"latents must be float [B, D, T] = {list(expected)} for this wav, without codes or "
                                 f"levels; got {tuple(latents.shape)}")
            reconstruction = self._decode(latents, semantic, reference)[..., :N]  # [B, 1, N]
            return SoundStreamOutput(reconstruction=reconstruction, codes=latents.new_zeros(0, dtype=torch.long),
                                     commitment_loss=wav.new_zeros(()),
                                     perplexity=wav.new_zeros(self.config.num_quantizers))
        if codes is not None:
            check_codes(codes, self.config.num_quantizers, self.config.codebook_size)
            B, T, Q = codes.shape
            if Q != self.config.num_quantizers or T != self.num_frames(N) or B != wav.shape[0]:
                raise ValueError(f"codes must be [B, T, Q] = [{wav.shape[0]}, {self.num_frames(N)}, "
                                 f"{self.config.num_quantizers}] for this wav, got {tuple(codes.shape)}")
            reconstruction = self._decode(self.quantizer.decode(codes, levels), semantic, reference)[..., :N]  # [B, 1, N]
            return SoundStreamOutput(reconstruction=reconstruction, codes=codes,
                                     commitment_loss=wav.new_zeros(()), perplexity=wav.new_zeros(Q))
        latents = self.encoder(wav)  # [B, D, T]
        quantized = self.quantizer(latents, levels)
        reconstruction = self._decode(quantized.quantized, semantic, reference)[..., :N]  # [B, 1, N]
        return SoundStreamOutput(
            reconstruction=reconstruction,
            codes=quantized.codes,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
        )

    def encode(self, wav: Tensor, num_quantizers: int | None = None) -> Tensor:
        """float wav [B, 1, N] -> codes int64 [B, T, q], T = ceil(N / hop), q = num_quantizers
        (default all Q). Never updates the codebooks, in any mode."""
        check_wav(wav, self.sample_rate)
        num_quantizers = self.config.num_quantizers if num_quantizers is None else num_quantizers
        if not 1 <= num_quantizers <= self.config.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.config.num_quantizers}], got {num_quantizers}")
        return self.quantizer.encode(self.encoder(wav), num_quantizers)

    def decode(self, codes: Tensor, semantic: Tensor | None = None, reference: Tensor | None = None) -> Tensor:
        """codes int64 [B, T, q] (any q <= Q: a prefix of the levels) -> float wav [B, 1, T * hop];
        semantic int64 [B, S] for a decoder that reads them (check_semantic), reference float
        [B, M] for one that reads a voice reference (reference_spectrum)."""
        check_codes(codes, self.config.num_quantizers, self.config.codebook_size)
        semantic = check_semantic(semantic, self.config, codes.shape[0], codes.shape[1])
        return self._decode(self.quantizer.decode(codes), semantic, reference)

    def decode_expected(self, codes: Tensor, probs: Tensor, semantic: Tensor | None = None,
                        reference: Tensor | None = None) -> Tensor:
        """Soft decoding: codes int64 [B, T, c] and probs float [B, T, l, K] (c + l <= Q) -> float
        wav [B, 1, T * hop], the l levels after c as their expected codebook vectors
        (ResidualVectorQuantizer.decode_expected); semantic and reference as decode's."""
        check_codes(codes, self.config.num_quantizers, self.config.codebook_size)
        semantic = check_semantic(semantic, self.config, codes.shape[0], codes.shape[1])
        return self._decode(self.quantizer.decode_expected(codes, probs), semantic, reference)

    def reference_spectrum(self, wav: Tensor) -> Tensor:
        """A recording of the voice, float wav [B, 1, N] at sample_rate -> float32 [B, M], the
        voice reference a decoder with config.reference_mels reads (vocos.reference_spectrum)."""
        if not self.config.reference_mels:
            raise ValueError("this codec's decoder reads no voice reference (reference_mels = 0)")
        check_wav(wav, self.sample_rate, "the voice reference")
        return self.decoder.reference_spectrum(wav)

    def _decode(self, latents: Tensor, semantic: Tensor | None, reference: Tensor | None = None) -> Tensor:
        """latents [B, D, T] -> [B, 1, T * hop]; only a decoder that reads semantic tokens gets
        them, only one that reads a voice reference gets it."""
        if reference is not None and not self.config.reference_mels:
            raise ValueError("this codec's decoder reads no voice reference (reference_mels = 0): give none")
        if self.config.reference_mels:
            return self.decoder(latents, semantic, reference)
        if self.config.semantic_vocab_size:
            return self.decoder(latents, semantic)
        return self.decoder(latents)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write `path/config.json` and `path/model.safetensors` atomically (codebooks and their
        EMA state included, so training can resume from it)."""
        from soundstorm.checkpoint import save_model

        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SoundStream:
        """Load a folder written by save_pretrained; fails loudly on any mismatch."""
        from soundstorm.checkpoint import load_model

        return load_model(cls, SoundStreamConfig, path, map_location=map_location)
