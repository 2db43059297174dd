"""Adapt a SoundStream's decoder to one voice from a few seconds of it.

    adapted = adapt_decoder(codec, prompt_wav, DecoderAdaptation(steps=100))
    audio = adapted.decode(codes)            # the same tokens, decoded in the prompt's voice

Where the bundled codec loses a voice it never heard, the loss is its decoder's: on the held-out
flite-rms the decoder fed the encoder's unquantized latents is as far from the original (log-mel
distance 0.29) as the decoded 8-level tokens are, against 0.14 on training voices, while a
decoder fine-tuned on that voice alone, behind the same frozen encoder and codebooks, decodes
the same tokens at 0.13 (docs/codec.md). So the tokens carry the voice, and a few seconds of
it, the voice prompt that text to speech is given anyway, are enough to teach a copy of the
decoder its spectral envelope: test-time speaker adaptation, like a vocoder's. More of the voice
teaches it more and overfits less: on flite-rms 3 / 10 / 30 / 60 s (20 / 50 / 100 / 200 steps)
take PESQ from 1.47 to 1.79 / 1.93 / 2.30 / 2.52 (Opus at 6 kbit/s: 2.18), and on a training
voice, which 3 s cost 0.15 PESQ, 60 s gain 0.07 (docs/codec.md): enrolment, `soundstorm enroll`.

The copy's encoder and codebooks are never touched, so the tokens it makes are those of the
original (and of any SoundStorm trained on them). Training crops are windows of the clips'
quantized latents (each clip encoded once, as a whole) and the matching audio, under the codec's
own reconstruction losses (multi-scale log-mel and multi-resolution STFT). A decoder that reads
semantic tokens (SoundStreamConfig.semantic_vocab_size, a models folder's decoder/) learns from the
clips' own tokens when they are given, as it decodes SoundStorm's output beside them, on all but
`semantic_dropout` of the crops (the null token there, as it was trained); without them it learns on
its null token alone.

Notation: N samples, T frames, D latent channels, F frames per crop, S semantic tokens, r frames
per semantic token.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from soundstorm.codecs.soundstream.model import SoundStream, check_wav
from soundstorm.codecs.soundstream.training import SoundStreamLossConfig, SoundStreamObjective
from soundstorm.model.blend import blend_weights


@dataclass(frozen=True)
class DecoderAdaptation:
    steps: int = 100  # optimizer steps; 0 leaves the decoder as it is
    lr: float = 3e-4  # AdamW, constant (the codec's own fine-tunes peak at 2e-4 to 3e-4)
    crop_seconds: float = 1.0  # the codec's training crop
    batch_size: int = 8
    levels: int | None = None  # residual levels of the latents it learns from (None: all); decode with as many
    seed: int = 0
    blend: float = 1.0  # the share of the fine-tune's change kept (soundstorm/model/blend.py)
    semantic_dropout: float = 0.2  # crops decoded from the null token when the clips' semantic tokens are given

    def __post_init__(self) -> None:
        if not 0.0 <= self.semantic_dropout <= 1.0:
            raise ValueError(f"DecoderAdaptation.semantic_dropout must be in [0, 1], got {self.semantic_dropout}")
        if self.steps < 0:
            raise ValueError(f"DecoderAdaptation.steps must be >= 0, got {self.steps}")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"DecoderAdaptation.blend must be in [0, 1], got {self.blend}")
        if not self.lr > 0 or not self.crop_seconds > 0 or self.batch_size < 1:
            raise ValueError(f"DecoderAdaptation needs lr > 0, crop_seconds > 0 and batch_size >= 1, got {self}")


def adapt_decoder(model: SoundStream, audio: Tensor | Sequence[Tensor],
                  options: DecoderAdaptation = DecoderAdaptation(),
                  semantic: Sequence[Tensor] | None = None, reference: Tensor | None = None) -> SoundStream:
    """A copy of `model` (float32, eval mode) whose decoder is fine-tuned on one voice's audio:
    a clip float [1, 1, N] at the codec's rate, or several (each [1, 1, N_i]); `model` itself is
    not changed. Each clip is encoded on its own and no crop spans two of them. `semantic`: for a
    decoder that reads semantic tokens, each clip's tokens int64 [S_i] (one per
    model.semantic_rate_ratio frames, as the semantic tokenizer hears the clip; crops start on a
    token and stay within them). `reference`: for a decoder that reads a voice reference, the
    spectrum float [1, M] (SoundStream.reference_spectrum) it is given beside every crop, as it
    will be when it decodes the voice."""
    clips = [audio] if isinstance(audio, Tensor) else list(audio)
    if not clips:
        raise ValueError("adapt_decoder needs at least one clip of the voice")
    for clip in clips:
        check_wav(clip, model.sample_rate)
        if clip.shape[0] != 1:
            raise ValueError(f"adapt_decoder takes one voice's audio, clips of [1, 1, N]; got a batch of {clip.shape[0]}")
    if semantic is not None:
        semantic = _check_clip_semantic(model, semantic, len(clips))
    adapted = copy.deepcopy(model).float().eval()
    if options.steps == 0:
        return adapted
    hop = adapted.hop_length
    crop_frames = max(1, round(options.crop_seconds * adapted.frame_rate))
    latents, wavs = [], []
    for clip in clips:
        clip = clip.float()
        with torch.no_grad():
            codes = adapted.encode(clip, options.levels)  # [1, T, q]
            latents.append(adapted.quantizer.decode(codes))  # [1, D, T]
        # The audio of the last frame is zero-padded as the codec pads it.
        frames = latents[-1].shape[-1]
        wavs.append(torch.nn.functional.pad(clip, (0, max(0, frames * hop - clip.shape[-1]))))
    # Frames a crop may take: all of a clip's, or those its semantic tokens cover; crops then start
    # on a token (every r-th frame), so that frame t of a crop reads token t // r of the crop's own.
    ratio = model.config.semantic_rate_ratio if semantic is not None else 1
    usable = ([x.shape[-1] for x in latents] if semantic is None
              else [min(x.shape[-1], len(tokens) * ratio) for x, tokens in zip(latents, semantic)])
    # Audio shorter than a crop is one crop (its longest clip); clips shorter than a crop are skipped.
    crop_frames = min(crop_frames, max(usable))
    # Every crop start of every clip equally likely: a clip is drawn by its number of starts.
    starts_per_clip = np.array([max(0, (frames - crop_frames) // ratio + 1) for frames in usable])
    tokens_per_crop = -(-crop_frames // ratio)

    objective = SoundStreamObjective(SoundStreamLossConfig(), adapted.sample_rate)
    weights = objective.config
    parameters = list(adapted.decoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, betas=(0.8, 0.99), weight_decay=0.0)
    generator = np.random.default_rng(options.seed)
    adapted.decoder.train()
    given = None if reference is None else reference.float().expand(options.batch_size, -1)  # [B, M]
    for _ in range(options.steps):
        picks = generator.integers(0, starts_per_clip.sum(), options.batch_size)
        crops = [(c, s * ratio) for c, s in (_locate(int(p), starts_per_clip) for p in picks)]  # (clip, start frame)
        inputs = torch.cat([latents[c][..., s : s + crop_frames] for c, s in crops])  # [B, D, F]
        real = torch.cat([wavs[c][..., s * hop : (s + crop_frames) * hop] for c, s in crops])  # [B, 1, F * hop]
        if semantic is None:
            fake = adapted._decode(inputs, None, given)[..., : crop_frames * hop]  # a decoder that reads tokens: its null token
        else:
            tokens = torch.stack([semantic[c][s // ratio : s // ratio + tokens_per_crop] for c, s in crops])  # [B, S]
            dropped = torch.from_numpy(generator.random(len(crops)) < options.semantic_dropout)
            tokens[dropped] = model.config.semantic_vocab_size  # the null token, as in training
            fake = adapted._decode(inputs, tokens, given)[..., : crop_frames * hop]
        terms = objective.reconstruction_losses(fake, real)
        loss = (weights.mel_weight * terms["mel"]
                + weights.stft_weight * (terms["stft_convergence"] + terms["stft_log_magnitude"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimizer.step()
    adapted.decoder.eval()
    return blend_weights(adapted, model, options.blend)


def _check_clip_semantic(model: SoundStream, semantic: Sequence[Tensor], clips: int) -> list[Tensor]:
    """Each clip's semantic tokens, int64 [S_i] in [0, V), for a decoder that reads them."""
    V = model.config.semantic_vocab_size
    if not V:
        raise ValueError("this codec's decoder reads no semantic tokens (semantic_vocab_size = 0): adapt it without them")
    semantic = list(semantic)
    if len(semantic) != clips:
        raise ValueError(f"adapt_decoder needs one semantic token sequence per clip: {clips} clips, {len(semantic)} sequences")
    for tokens in semantic:
        if not isinstance(tokens, Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 1 or len(tokens) == 0:
            shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"a clip's semantic tokens must be int64 [S] with S > 0, got {shape}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= V:
            raise ValueError(f"semantic tokens must be in [0, {V}), got values from {int(tokens.min())} to {int(tokens.max())}")
    return [tokens.cpu() for tokens in semantic]


def _locate(index: int, counts: np.ndarray) -> tuple[int, int]:
    """The clip and offset of the `index`-th item of clips holding `counts` items each."""
    clip = int(np.searchsorted(np.cumsum(counts), index, side="right"))
    return clip, index - int(counts[:clip].sum())
