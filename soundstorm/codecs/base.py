"""The codec interface: what SoundStorm needs from a neural audio codec with residual VQ.

A codec turns audio into Q levels of K-code tokens at `frame_rate` frames per second and back.
Implementations wrap a model (our SoundStream, EnCodec, DAC, Mimi, or a user's own) in a few
lines; everything downstream (token caches, training, TTS) sees only this interface.

    codes = codec.encode(wav)                  # [B, 1, N] float -> [B, T, Q] int64
    wav = codec.decode(codes)                  # [B, T, Q] int64 -> [B, 1, T * hop] float
    wav = codec.decode_expected(codes, probs)  # soft finer levels: [B, T, c] + [B, T, L - c, K]
    codes = codec.encode_long(wav)             # the same for hours of audio, in chunks
    wav = codec.decode_long(codes)             # chunks overlap-added with a crossfade
    low = codec.with_num_quantizers(4)         # the first 4 levels only: a lower bitrate

Implementations call `check_wav` / `check_codes` at the top of encode / decode, so that bad input
fails with a message that says what was expected, whatever the backend.

Notation: B batch, N samples, T frames, Q levels, K codes per level, hop = samples per frame.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

# Peak amplitude above which a waveform is taken for unscaled integer PCM rather than float
# audio in [-1, 1]. Loose on purpose: resampling a clipped file overshoots 1.0 by a few percent
# and must pass; int16 samples read without scaling (peaks in the thousands) must not.
MAX_PEAK = 4.0


def bitrate_kbps(num_quantizers: int, codebook_size: int, frame_rate: float) -> float:
    """Bitrate of Q levels of K codes at `frame_rate` frames/s: Q * log2(K) * frame_rate / 1000."""
    return num_quantizers * math.log2(codebook_size) * frame_rate / 1000.0


class Codec(ABC):
    name: str  # identifies the codec and its weights in cache metadata, e.g. "soundstream:models/codec"
    sample_rate: int  # Hz of the audio it encodes and decodes
    frame_rate: float  # frames per second of its tokens
    num_quantizers: int  # Q, the RVQ levels it emits
    codebook_size: int  # K, codes per level

    @abstractmethod
    def encode(self, wav: Tensor) -> Tensor:
        """float wav [B, 1, N] at sample_rate -> int64 codes [B, T, Q] in [0, K),
        T = num_frames(N)."""

    @abstractmethod
    def decode(self, codes: Tensor) -> Tensor:
        """int64 codes [B, T, Q'] -> float wav [B, 1, N] at sample_rate, N = T * hop.

        Q' may be any 1 <= Q' <= Q: residual VQ decodes any prefix of its levels (a lower
        bitrate); the evaluation decodes each prefix of one encoding."""

    # Whether decode_expected works: the codec's codebook vectors are reachable.
    decodes_expected: bool = False

    def decode_expected(self, codes: Tensor, probs: Tensor) -> Tensor:
        """Soft decoding. int64 codes [B, T, c] of the first c levels and float probs
        [B, T, L - c, K], a distribution over the codes of each of the next levels -> float wav
        [B, 1, T * hop]: those levels enter the decoder as their expected codebook vector,
        sum_k p(k) e_k, where `decode` would take one code's e_k.

        Why: where a generator is unsure of a fine level (SoundStorm's one-pass guesses at levels
        2-4 are right 8-15% of the time), its argmax adds a confidently wrong residual; the mean
        adds what the likely codes agree on and shrinks the rest towards zero, the least-squares
        estimate of the residual (docs/intelligibility.md measures what it does to the words).
        A one-hot row decodes exactly as `decode` does. Codecs whose codebooks this interface
        cannot reach (decodes_expected False) raise NotImplementedError."""
        raise NotImplementedError(f"{self.name} cannot decode distributions over its codes (soft decoding): "
                                  "only codecs with decodes_expected (SoundStream, EnCodec, DAC, Mimi) can; "
                                  "decode hard codes")

    # > 0: the decoder can also read semantic tokens of this vocabulary, one per
    # semantic_rate_ratio frames (decode_with_semantic): a text-to-speech decoder leaning on the
    # tokens SoundStorm was conditioned on (SoundStream's semantic_vocab_size). 0: codes alone.
    semantic_vocab_size: int = 0
    semantic_rate_ratio: int = 1

    def decode_with_semantic(self, codes: Tensor, semantic: Tensor, probs: Tensor | None = None) -> Tensor:
        """`decode(codes)`, or `decode_expected(codes, probs)` where probs are given, with the
        decoder also reading semantic tokens int64 [B, S] in [0, semantic_vocab_size),
        S >= ceil(T / semantic_rate_ratio) (the tokens SoundStorm generated the codes from)."""
        raise NotImplementedError(f"{self.name}'s decoder reads no semantic tokens (semantic_vocab_size = 0): "
                                  "use decode or decode_expected")

    # True: the decoder can also read a voice reference, a recording of the voice it decodes
    # (`with_reference`): the envelope of a voice its tokens carry poorly (SoundStream's reference_mels).
    reads_reference: bool = False

    def with_reference(self, wav: Tensor) -> Codec:
        """This codec decoding in the voice of wav float [1, 1, N] at sample_rate (a text-to-speech
        prompt): a view sharing the weights, for a codec that reads_reference."""
        raise ValueError(f"{self.name}'s decoder reads no voice reference")

    def semantic_features(self) -> Tensor | None:
        """What a decoder that reads semantic tokens describes each of them by, float [V, E] (its
        tokenizer's k-means centroids, as vocos.standardized_features made them for its training),
        or None: tokens as bare symbols, or no tokens read."""
        return None

    def decode_generated(self, codes: Tensor, probs: Tensor | None = None, semantic: Tensor | None = None) -> Tensor:
        """A generator's output -> float wav [B, 1, T * hop]: codes int64 [B, T, L] as `decode`
        reads them or, with probs float [B, T, l, K], the last l levels as those distributions
        (`decode_expected` on the first L - l levels' codes); the semantic tokens int64 [B, S] they
        were generated from go to a decoder that reads them (semantic_vocab_size > 0, through
        `decode_with_semantic`) and are left out for one that does not."""
        if probs is not None:
            codes = codes[..., : codes.shape[-1] - probs.shape[2]]
        if semantic is not None and self.semantic_vocab_size:
            return self.decode_with_semantic(codes, semantic, probs)
        return self.decode(codes) if probs is None else self.decode_expected(codes, probs)

    def check_expected(self, codes: object, probs: object) -> tuple[Tensor, Tensor]:
        """decode_expected's input checks: codes as check_codes, probs float [B, T, L - c, K] of
        the same B and T, c + (L - c) <= num_quantizers, K = codebook_size, rows finite, >= 0 and
        summing to 1. Returns both unchanged."""
        codes = self.check_codes(codes)
        if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.dim() != 4:
            raise ValueError(f"probs must be a float tensor [B, T, L - c, K], got "
                             f"{tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__}")
        B, T, c = codes.shape
        if probs.shape[:2] != (B, T) or probs.shape[3] != self.codebook_size or c + probs.shape[2] > self.num_quantizers:
            raise ValueError(f"probs must be [B, T, L - c, K] = [{B}, {T}, at most {self.num_quantizers - c}, "
                             f"{self.codebook_size}] beside codes {tuple(codes.shape)}, got {tuple(probs.shape)}")
        if probs.numel() and (not bool(torch.isfinite(probs).all()) or float(probs.min()) < 0
                              or float((probs.sum(-1) - 1).abs().max()) > 1e-3):
            raise ValueError("probs must hold distributions: finite, >= 0, each row summing to 1 (softmax the logits)")
        return codes, probs

    def num_frames(self, num_samples: int) -> int:
        """T for an input of N samples (codecs pad the last frame)."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def describe(self) -> dict[str, Any]:
        """What a token cache records, and checks, about the codec that made it."""
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "num_quantizers": self.num_quantizers,
            "codebook_size": self.codebook_size,
        }

    # --- derived quantities -------------------------------------------------------------------

    @property
    def bitrate_kbps(self) -> float:
        """kbit/s of the tokens: num_quantizers * log2(codebook_size) * frame_rate / 1000."""
        return bitrate_kbps(self.num_quantizers, self.codebook_size, self.frame_rate)

    @property
    def samples_per_frame(self) -> int:
        """hop: samples per token frame. Chunked encoding cuts audio at frame boundaries, which
        needs a whole number (true of SoundStream, EnCodec, DAC and Mimi)."""
        hop = self.sample_rate / self.frame_rate
        if abs(hop - round(hop)) > 1e-6:
            raise ValueError(
                f"{self.name}: {self.sample_rate} Hz / {self.frame_rate} frames/s = {hop:.4f} samples "
                "per frame; chunked coding needs a whole number"
            )
        return int(round(hop))

    # --- input checks -------------------------------------------------------------------------

    def check_wav(self, wav: object, name: str = "wav") -> Tensor:
        """Refuse, saying what was expected, anything but float audio [B, 1, N] at sample_rate
        with N >= 1 and finite samples in about [-1, 1]. Returns wav unchanged."""
        if not isinstance(wav, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor [B, 1, N], got {type(wav).__name__}")
        if not wav.is_floating_point():
            raise ValueError(
                f"{name} must be float audio in [-1, 1], got {wav.dtype}: for 16-bit PCM "
                "use wav.float() / 32768"
            )
        if wav.dim() != 3 or wav.shape[1] != 1:
            hint = " (add the channel axis: wav[:, None])" if wav.dim() == 2 else ""
            hint = " (stereo: downmix with wav.mean(1, keepdim=True))" if wav.dim() == 3 and wav.shape[1] > 1 else hint
            raise ValueError(f"{name} must be mono audio of shape [B, 1, N], got {tuple(wav.shape)}{hint}")
        if wav.shape[0] < 1 or wav.shape[2] < 1:
            raise ValueError(f"{name} is empty: shape {tuple(wav.shape)}, expected at least one sample of one example")
        if not bool(torch.isfinite(wav).all()):
            raise ValueError(f"{name} holds NaN or infinite samples: expected finite audio in [-1, 1]")
        peak = float(wav.abs().max())
        if peak > MAX_PEAK:
            raise ValueError(
                f"{name} peaks at {peak:.4g}, expected audio in [-1, 1]: integer PCM must be scaled "
                "(divide 16-bit samples by 32768)"
            )
        return wav

    def check_codes(self, codes: object, name: str = "codes") -> Tensor:
        """Refuse anything but int64 codes [B, T, Q'] with 1 <= Q' <= num_quantizers, T >= 1 and
        every value in [0, codebook_size). Returns codes unchanged."""
        if not isinstance(codes, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor [B, T, Q], got {type(codes).__name__}")
        if codes.dtype != torch.int64:
            raise ValueError(f"{name} must be int64 [B, T, Q], got {codes.dtype}: convert with .long()")
        if codes.dim() != 3:
            raise ValueError(f"{name} must have shape [B, T, Q], got {tuple(codes.shape)}")
        B, T, Q = codes.shape
        if B < 1 or T < 1:
            raise ValueError(f"{name} is empty: shape {tuple(codes.shape)}, expected at least one frame of one example")
        if not 1 <= Q <= self.num_quantizers:
            raise ValueError(
                f"{name} has {Q} levels but {self.name} has num_quantizers={self.num_quantizers}: "
                f"expected [B, T, Q] with 1 <= Q <= {self.num_quantizers} (codes of another codec?)"
            )
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(
                f"{name} must hold codes in [0, {self.codebook_size}) for {self.name}, got values in "
                f"[{low}, {high}] (codes of another codec, or padding left in?)"
            )
        return codes

    # --- bitrate choice -----------------------------------------------------------------------

    def with_num_quantizers(self, num_quantizers: int) -> Codec:
        """This codec emitting only its first `num_quantizers` levels (a lower bitrate).

        Residual VQ quantizes level by level, so the first Q' levels of a full encoding are the
        Q'-level encoding. Backends that can skip the unused levels override this."""
        if num_quantizers == self.num_quantizers:
            return self
        _check_level_choice(self, num_quantizers)
        return LevelPrefix(self, num_quantizers)

    # --- long audio ---------------------------------------------------------------------------

    def encode_long(self, wav: Tensor, chunk_seconds: float = 30.0, overlap_seconds: float = 2.0) -> Tensor:
        """`encode` for audio of any length, `chunk_seconds` at a time.

        Each chunk is a whole number of frames, encoded with `overlap_seconds` of audio on both
        sides as context; only its centre frames are kept, so every kept frame saw the audio
        around it as in a one-shot encoding (up to the context width).

        wav [B, 1, N] -> codes [B, T, Q], T as for encode (num_frames(N) for a padding codec).
        """
        self.check_wav(wav)
        hop = self.samples_per_frame
        total = self.num_frames(wav.shape[-1])
        chunk, context = _chunk_frames(self, chunk_seconds, overlap_seconds)
        if total <= chunk:
            return self.encode(wav)
        pieces = []
        starts = _chunk_starts(total, chunk, context)
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else total
            first, last = max(0, start - context), min(total, end + context)
            codes = self.encode(wav[..., first * hop : last * hop])  # [B, T', Q]
            if i + 1 < len(starts):
                if codes.shape[1] < end - first:
                    raise RuntimeError(
                        f"{self.name} encoded {(last - first) * hop} samples into {codes.shape[1]} frames, "
                        f"expected {last - first} (num_frames): cannot cut it into chunks"
                    )
                pieces.append(codes[:, start - first : end - first])
            else:  # the tail: whatever frames the codec makes of the final samples
                pieces.append(codes[:, start - first :])
        return torch.cat(pieces, dim=1)  # [B, T, Q]

    def decode_long(self, codes: Tensor, chunk_seconds: float = 30.0, overlap_seconds: float = 2.0) -> Tensor:
        """`decode` for codes of any length, `chunk_seconds` at a time.

        Each chunk is decoded with `overlap_seconds` of frames on both sides as context, and
        neighbouring chunks are crossfaded (raised cosine, gains summing to one) over
        `overlap_seconds` centred on their boundary. Each chunk has thus warmed up for half the
        overlap where its fade begins, and no seam is a hard cut.

        codes [B, T, Q'] -> wav [B, 1, N], N as for decode (T * hop).
        """
        self.check_codes(codes)
        hop = self.samples_per_frame
        total = codes.shape[1]
        chunk, context = _chunk_frames(self, chunk_seconds, overlap_seconds, crossfade=True)
        if total <= chunk:
            return self.decode(codes)
        fade = context * hop  # samples of crossfade, centred on each boundary
        ramp = _raised_cosine(fade, device=codes.device)  # [fade], 0 -> 1
        starts = _chunk_starts(total, chunk, context)
        out: Tensor | None = None
        for i, start in enumerate(starts):
            is_last = i + 1 == len(starts)
            end = total if is_last else starts[i + 1]
            first, last = max(0, start - context), min(total, end + context)
            wav = self.decode(codes[:, first:last])  # [B, 1, >= (last - first) * hop]
            if not is_last:
                if wav.shape[-1] < (last - first) * hop:
                    raise RuntimeError(
                        f"{self.name} decoded {last - first} frames into {wav.shape[-1]} samples, "
                        f"expected {(last - first) * hop}: cannot overlap-add chunks"
                    )
                wav = wav[..., : (last - first) * hop]
            else:
                out_length = first * hop + wav.shape[-1]
            gain = torch.ones(wav.shape[-1], dtype=wav.dtype, device=wav.device)  # [n] over this chunk
            offset = first * hop  # this chunk's first sample on the output timeline
            if i > 0:  # fade in across the boundary at `start`
                begin = start * hop - fade // 2 - offset
                gain[:begin] = 0
                gain[begin : begin + fade] = ramp.to(wav.dtype)
            if not is_last:  # fade out across the boundary at `end`
                begin = end * hop - fade // 2 - offset
                gain[begin : begin + fade] = 1 - ramp.to(wav.dtype)
                gain[begin + fade :] = 0
            if out is None:
                out = wav.new_zeros(wav.shape[0], 1, total * hop)  # [B, 1, N]
            if offset + wav.shape[-1] > out.shape[-1]:
                out = torch.nn.functional.pad(out, (0, offset + wav.shape[-1] - out.shape[-1]))
            out[..., offset : offset + wav.shape[-1]] += wav * gain
        assert out is not None
        return out[..., :out_length]


class LevelPrefix(Codec):
    """A codec restricted to the first `num_quantizers` levels of another (see
    Codec.with_num_quantizers); it shares the other's weights."""

    def __init__(self, inner: Codec, num_quantizers: int) -> None:
        _check_level_choice(inner, num_quantizers)
        self.inner = inner
        self.name = f"{inner.name}[:{num_quantizers}]"
        self.sample_rate, self.frame_rate = inner.sample_rate, inner.frame_rate
        self.num_quantizers, self.codebook_size = num_quantizers, inner.codebook_size

    def encode(self, wav: Tensor) -> Tensor:
        return self.inner.encode(wav)[..., : self.num_quantizers]  # [B, T, Q']

    def decode(self, codes: Tensor) -> Tensor:
        self.check_codes(codes)
        return self.inner.decode(codes)

    @property
    def decodes_expected(self) -> bool:  # type: ignore[override]
        return self.inner.decodes_expected

    def decode_expected(self, codes: Tensor, probs: Tensor) -> Tensor:
        self.check_expected(codes, probs)
        return self.inner.decode_expected(codes, probs)

    @property
    def semantic_vocab_size(self) -> int:  # type: ignore[override]
        return self.inner.semantic_vocab_size

    @property
    def semantic_rate_ratio(self) -> int:  # type: ignore[override]
        return self.inner.semantic_rate_ratio

    def decode_with_semantic(self, codes: Tensor, semantic: Tensor, probs: Tensor | None = None) -> Tensor:
        self.check_codes(codes) if probs is None else self.check_expected(codes, probs)
        return self.inner.decode_with_semantic(codes, semantic, probs)

    def semantic_features(self) -> Tensor | None:
        return self.inner.semantic_features()

    @property
    def reads_reference(self) -> bool:  # type: ignore[override]
        return self.inner.reads_reference

    def with_reference(self, wav: Tensor) -> Codec:
        return LevelPrefix(self.inner.with_reference(wav), self.num_quantizers)

    def num_frames(self, num_samples: int) -> int:
        return self.inner.num_frames(num_samples)

    def with_num_quantizers(self, num_quantizers: int) -> Codec:
        return self.inner.with_num_quantizers(num_quantizers)


def _check_level_choice(codec: Codec, num_quantizers: int) -> None:
    if not isinstance(num_quantizers, int) or isinstance(num_quantizers, bool) or not 1 <= num_quantizers <= codec.num_quantizers:
        raise ValueError(
            f"{codec.name} has {codec.num_quantizers} levels: num_quantizers must be an integer in "
            f"[1, {codec.num_quantizers}], got {num_quantizers!r}"
        )


def _chunk_frames(codec: Codec, chunk_seconds: float, overlap_seconds: float, crossfade: bool = False) -> tuple[int, int]:
    """(frames per chunk, frames of context on each side) for chunked coding."""
    if not chunk_seconds > 0 or not overlap_seconds >= 0:
        raise ValueError(
            f"chunk_seconds must be > 0 and overlap_seconds >= 0, got {chunk_seconds} and {overlap_seconds}"
        )
    chunk = max(1, round(chunk_seconds * codec.frame_rate))
    context = round(overlap_seconds * codec.frame_rate)
    if crossfade and context > chunk:
        # A crossfade wider than a chunk would overlap the next boundary's.
        raise ValueError(
            f"overlap_seconds ({overlap_seconds}) must be at most chunk_seconds ({chunk_seconds})"
        )
    return chunk, context


def _chunk_starts(total: int, chunk: int, context: int) -> list[int]:
    """First frame of each chunk's centre. A tail shorter than the context joins the chunk
    before it, so that every crossfade lies inside the frames both sides decoded."""
    starts = list(range(0, total, chunk))
    if len(starts) > 1 and total - starts[-1] < context:
        starts.pop()
    return starts


def _raised_cosine(length: int, device: torch.device) -> Tensor:
    """[length] rising from ~0 to ~1; ramp + reversed ramp = 1 at every sample."""
    t = (torch.arange(length, dtype=torch.float64, device=device) + 0.5) / max(length, 1)
    return 0.5 - 0.5 * torch.cos(math.pi * t)
