"""Adapt a SoundStream's decoder to one voice from a few seconds of it.

    adapted = adapt_decoder(codec, prompt_wav, DecoderAdaptation(steps=100))
    audio = adapted.decode(codes)            # the same tokens, decoded in the prompt's voice

Where the bundled codec loses a voice it never heard, the loss is its decoder's: on the held-out
flite-rms the decoder fed the encoder's unquantized latents is as far from the original (log-mel
distance 0.29) as the decoded 8-level tokens are, against 0.14 on training voices, while a
decoder fine-tuned on that voice alone, behind the same frozen encoder and codebooks, decodes
the same tokens at 0.13 (docs/codec.md). So the tokens carry the voice, and a few seconds of
it, the voice prompt that text to speech is given anyway, are enough to teach a copy of the
decoder its spectral envelope: test-time speaker adaptation, like a vocoder's.

The copy's encoder and codebooks are never touched, so the tokens it makes are those of the
original (and of any SoundStorm trained on them). Training crops are windows of the prompt's
quantized latents (encoded once, as a whole) and the matching audio, under the codec's own
reconstruction losses (multi-scale log-mel and multi-resolution STFT).

Notation: N samples, T frames, D latent channels, F frames per crop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from soundstorm.codecs.soundstream.model import SoundStream, check_wav
from soundstorm.codecs.soundstream.training import SoundStreamLossConfig, SoundStreamObjective
from soundstorm.codecs.soundstream.vocos import VocosDecoder


# What adaptation may change. "all": every decoder weight. The rest need the Vocos-style decoder
# and leave its ConvNeXt trunk as it is, so the trunk's features are computed once per prompt:
# "head": its output LayerNorm and the linear head (log magnitude and phase of every bin);
# "magnitude": the head's log-magnitude rows only, the phase it predicts untouched;
# "gain": the log-magnitude rows' biases only, one gain per STFT bin: an equalizer.
SCOPES = ("all", "head", "magnitude", "gain")


@dataclass(frozen=True)
class DecoderAdaptation:
    steps: int = 100  # optimizer steps; 0 leaves the decoder as it is
    lr: float = 3e-4  # AdamW, constant (the codec's own fine-tunes peak at 2e-4 to 3e-4)
    scope: str = "all"  # one of SCOPES
    crop_seconds: float = 1.0  # the codec's training crop
    batch_size: int = 8
    levels: int | None = None  # residual levels of the latents it learns from (None: all); decode with as many
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"DecoderAdaptation.steps must be >= 0, got {self.steps}")
        if not self.lr > 0 or not self.crop_seconds > 0 or self.batch_size < 1:
            raise ValueError(f"DecoderAdaptation needs lr > 0, crop_seconds > 0 and batch_size >= 1, got {self}")
        if self.scope not in SCOPES:
            raise ValueError(f"DecoderAdaptation.scope must be one of {SCOPES}, got {self.scope!r}")


def adapt_decoder(model: SoundStream, wav: Tensor, options: DecoderAdaptation = DecoderAdaptation()) -> SoundStream:
    """A copy of `model` (float32, eval mode) whose decoder is fine-tuned on `wav`, float
    [1, 1, N] at the codec's rate; `model` itself is not changed."""
    check_wav(wav, model.sample_rate)
    if wav.shape[0] != 1:
        raise ValueError(f"adapt_decoder takes one voice's audio, [1, 1, N]; got a batch of {wav.shape[0]}")
    adapted = copy.deepcopy(model).float().eval()
    if options.steps == 0:
        return adapted
    if options.scope != "all" and not isinstance(adapted.decoder, VocosDecoder):
        raise ValueError(f"decoder adaptation scope {options.scope!r} needs the Vocos-style decoder "
                         f"(SoundStreamConfig.decoder = 'vocos'); this codec's is {adapted.config.decoder!r}: use 'all'")
    hop = adapted.hop_length
    crop_frames = max(1, round(options.crop_seconds * adapted.frame_rate))
    wav = wav.float()
    with torch.no_grad():
        codes = adapted.encode(wav, options.levels)  # [1, T, q]
        latents = adapted.quantizer.decode(codes)  # [1, D, T]
    frames = latents.shape[-1]
    # A prompt shorter than a crop is one crop, zero-padded as the codec pads its last frame.
    wav = torch.nn.functional.pad(wav, (0, max(0, frames * hop - wav.shape[-1])))
    crop_frames = min(crop_frames, frames)

    objective = SoundStreamObjective(SoundStreamLossConfig(), adapted.sample_rate)
    weights = objective.config
    decoder = adapted.decoder
    if options.scope == "all":
        inputs_of, decode = latents, decoder
    else:
        # The trunk is frozen: its features over the whole prompt once, then only the head runs.
        with torch.no_grad():
            inputs_of = decoder.features(latents)  # [1, C, T]
        decode = decoder.synthesize
    parameters, row_mask = _trainable(decoder, options.scope)
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, betas=(0.8, 0.99), weight_decay=0.0)
    generator = np.random.default_rng(options.seed)
    decoder.train()
    for _ in range(options.steps):
        starts = generator.integers(0, frames - crop_frames + 1, options.batch_size)
        inputs = torch.cat([inputs_of[..., s : s + crop_frames] for s in starts])  # [B, D or C, F]
        real = torch.cat([wav[..., s * hop : (s + crop_frames) * hop] for s in starts])  # [B, 1, F * hop]
        fake = decode(inputs)[..., : crop_frames * hop]
        terms = objective.reconstruction_losses(fake, real)
        loss = (weights.mel_weight * terms["mel"]
                + weights.stft_weight * (terms["stft_convergence"] + terms["stft_log_magnitude"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if row_mask is not None:
            # Only the log-magnitude rows learn: with a zero gradient from the first step, Adam
            # never moves the phase rows (no weight decay).
            for parameter in parameters:
                parameter.grad.mul_(row_mask.view(-1, *([1] * (parameter.dim() - 1))))
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimizer.step()
    decoder.eval()
    return adapted


def _trainable(decoder: torch.nn.Module, scope: str) -> tuple[list[torch.nn.Parameter], Tensor | None]:
    """The parameters a scope adapts, and for the head's rows a 0/1 mask [2F] of those that learn
    (None: all of them)."""
    for parameter in decoder.parameters():
        parameter.requires_grad_(scope == "all")
    if scope == "all":
        return list(decoder.parameters()), None
    head = decoder.head
    if scope == "head":
        parameters = [*decoder.norm_out.parameters(), *head.parameters()]
        mask = None
    else:
        parameters = [head.weight, head.bias] if scope == "magnitude" else [head.bias]
        mask = torch.zeros(head.out_features)
        mask[: decoder.bins] = 1.0  # the first F rows are the log magnitudes (VocosDecoder.synthesize)
    for parameter in parameters:
        parameter.requires_grad_(True)
    return parameters, mask
