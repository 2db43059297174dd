"""A codec decoder trained on the finer levels SoundStorm predicts (the soundstream task's
options.soundstorm_inputs).

SoundStorm decodes the codec's first level in several iterations and every finer level in one
greedy pass. Given a recording's own first level, its finer levels come out far from the
recording's: on the bundled models the semantic tokenizer hears 0.34 phone errors in audio
decoded from the true level 1 and SoundStorm's levels 2-4, 0.36 from level 1 alone and 0.20
from the true four levels (benchmarks/acoustic_probe.py, docs/intelligibility.md): the finer
levels carry the phones' detail, and SoundStorm's guesses at them carry almost none of it.
A vocoder trained on an acoustic model's predicted features rather than the true ones (the
usual fix in text to speech) learns to read those guesses: here the decoder learns to rebuild
the recording from its true first level and SoundStorm's finer ones, on a share of the crops,
and from the true codes on the rest (so that it stays the codec's decoder).

    [options.soundstorm_inputs]
    soundstorm = "models/demo/soundstorm"
    semantic = "models/demo/semantic"
    share = 0.5            # crops whose finer levels SoundStorm predicts
    levels = 4             # the levels SoundStorm decodes (models/demo/decoding.json)
    guidance_scale = 1.0   # the finer levels' guidance, as decoding.json decodes them
    soft_temperature = 0.0 # > 0: the finer levels as expected codebook vectors at this temperature,
                           # as the pipeline's soft decoding hands them to the decoder; 0: the tokens

The encoder, the codebooks and so every token stay as they are (decoder_only = true).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from soundstorm.codecs.soundstream.config import SoundStreamConfig
from soundstorm.codecs.soundstream.quantizer import ResidualVectorQuantizer
from soundstorm.decoding import decode_finer_levels


@dataclass(frozen=True)
class SoundStormInputs:
    """Where the decoder's SoundStorm-made inputs come from, and for how many crops."""

    soundstorm: str  # a SoundStorm folder trained on this codec's tokens
    semantic: str  # the semantic tokenizer folder it was trained with
    share: float = 0.5  # fraction of training crops whose finer levels SoundStorm predicts
    levels: int = 4  # levels SoundStorm decodes and the decoder then reads
    guidance_scale: float = 1.0  # classifier-free guidance of those finer levels
    soft_temperature: float = 0.0  # > 0: those levels as expected codebook vectors (Codec.decode_expected)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoundStormInputs:
        try:
            inputs = cls(**values)
        except TypeError as error:
            raise ValueError(f"options.soundstorm_inputs: {error}; fields: soundstorm, semantic, share, levels, "
                             "guidance_scale, soft_temperature") from error
        if not 0.0 <= inputs.share <= 1.0:
            raise ValueError(f"options.soundstorm_inputs.share must be in [0, 1], got {inputs.share!r}")
        if isinstance(inputs.levels, bool) or not isinstance(inputs.levels, int) or inputs.levels < 2:
            raise ValueError(f"options.soundstorm_inputs.levels must be an integer >= 2 (level 1 stays the "
                             f"recording's), got {inputs.levels!r}")
        if not isinstance(inputs.guidance_scale, (int, float)) or inputs.guidance_scale < 0:
            raise ValueError(f"options.soundstorm_inputs.guidance_scale must be a number >= 0, got {inputs.guidance_scale!r}")
        if isinstance(inputs.soft_temperature, bool) or not isinstance(inputs.soft_temperature, (int, float)) \
                or not inputs.soft_temperature >= 0:
            raise ValueError(f"options.soundstorm_inputs.soft_temperature must be a number >= 0 (0: the tokens), got "
                             f"{inputs.soft_temperature!r}")
        return inputs


class FinerLevelPredictor:
    """SoundStorm's finer levels for a batch of crops, given their own first level."""

    def __init__(self, inputs: SoundStormInputs, codec: SoundStreamConfig, device: torch.device) -> None:
        from soundstorm.model.soundstorm import SoundStorm
        from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer
        from soundstorm.semantic.rate import check_semantic_matches

        for name in ("soundstorm", "semantic"):
            if not Path(getattr(inputs, name)).is_dir():
                raise FileNotFoundError(f"options.soundstorm_inputs.{name}: no folder {getattr(inputs, name)}")
        self.inputs = inputs
        self.model = SoundStorm.from_pretrained(inputs.soundstorm).to(device).eval()
        self.model.requires_grad_(False)
        self.semantic = load_kmeans_tokenizer(inputs.semantic)
        config = self.model.config
        if (config.codebook_size, config.num_quantizers) != (codec.codebook_size, codec.num_quantizers):
            raise ValueError(f"options.soundstorm_inputs.soundstorm {inputs.soundstorm} makes {config.num_quantizers} "
                             f"levels of {config.codebook_size} codes; this codec has {codec.num_quantizers} of "
                             f"{codec.codebook_size}")
        if inputs.levels > config.num_quantizers:
            raise ValueError(f"options.soundstorm_inputs.levels is {inputs.levels}; the codec has {config.num_quantizers}")
        if self.semantic.sample_rate != codec.sample_rate:
            raise ValueError(f"options.soundstorm_inputs.semantic {inputs.semantic} reads {self.semantic.sample_rate} Hz "
                             f"audio; this codec {codec.sample_rate} Hz")
        check_semantic_matches(self.semantic.vocab_size, self.semantic.rate, codec.frame_rate, config,
                               what=f"options.soundstorm_inputs.semantic {inputs.semantic}")

    @torch.no_grad()
    def __call__(self, wav: Tensor, codes: Tensor) -> Tensor:
        """wav float [B, 1, N] and its codes int64 [B, T, Q] -> the codes with levels 2..levels
        replaced by SoundStorm's prediction from level 1 and wav's semantic tokens."""
        finer, _ = self._predict(self.semantic_tokens(wav, codes.shape[1]), codes, soft=False)
        return torch.cat([finer, codes[..., self.inputs.levels:]], dim=-1)

    @torch.no_grad()
    def semantic_tokens(self, wav: Tensor, num_frames: int) -> Tensor:
        """The semantic tokens int64 [B, S] of wav [B, 1, N], S = ceil(T / ratio) (SoundStorm's
        conditioning, and what a decoder that reads semantic tokens is given)."""
        B, S = wav.shape[0], -(-num_frames // self.model.config.semantic_rate_ratio)
        with torch.autocast(device_type=wav.device.type, enabled=False):  # the token cache's float32 tokens
            tokens, _ = self.semantic.tokenize(wav.float().cpu())  # [B, S'] (the tokenizer runs on the CPU)
        tokens = tokens[:, :S].to(wav.device)
        if tokens.shape[1] < S:  # the crop's last frames: repeat its last token
            tokens = torch.cat([tokens, tokens[:, -1:].expand(B, S - tokens.shape[1])], dim=1)
        return tokens

    @torch.no_grad()
    def decoder_inputs(self, semantic: Tensor, codes: Tensor, quantizer: ResidualVectorQuantizer) -> Tensor:
        """What the decoder reads of SoundStorm's levels 1..levels, latents [B, D, T], given the
        crops' semantic tokens [B, S] and codes [B, T, Q]: their codes' vectors, or with
        soft_temperature the expected vectors of levels 2..levels, as the pipeline hands them
        to the codec."""
        finer, logits = self._predict(semantic, codes, soft=self.inputs.soft_temperature > 0)
        if logits is None:
            return quantizer.decode(finer)
        return quantizer.decode_expected(finer[..., :1], (logits / self.inputs.soft_temperature).softmax(dim=-1))

    def _predict(self, semantic: Tensor, codes: Tensor, soft: bool) -> tuple[Tensor, Tensor | None]:
        """(codes [B, T, levels]: level 1 and SoundStorm's levels 2..levels, their logits
        [B, T, levels - 1, K] where soft, else None)."""
        out = decode_finer_levels(self.model, semantic, codes[..., :1], self.inputs.levels,
                                  guidance_scale=float(self.inputs.guidance_scale), return_logits=soft)
        return out if soft else (out, None)  # [B, T, levels], [B, T, levels - 1, K]
