"""Pretrained EnCodec, DAC and Mimi through `transformers`, behind the Codec interface.

Spec: `KIND:SOURCE[?OPTION=VALUE[&OPTION=VALUE...]]`

    encodec:facebook/encodec_24khz                    all 32 levels (24 kbit/s)
    encodec:facebook/encodec_24khz?bandwidth=6.0      the most levels within 6 kbit/s: 8
    dac:/models/dac_16khz?num_quantizers=8&device=cuda
    mimi:kyutai/mimi?num_quantizers=8

KIND is encodec, dac or mimi. SOURCE is a folder written by `save_pretrained` or a Hugging Face
hub id, read from the local hub cache first, else downloaded (with HF_HUB_OFFLINE=1, a hub id
not in the cache fails at once; without it, huggingface_hub retries for ~25 s offline). Options:
`num_quantizers` (levels, 1..the model's maximum) or `bandwidth` (kbit/s; levels =
floor(bandwidth * 1000 / (frame_rate * log2(codebook_size)))), and `device` (default cpu).
Sample rate, frame rate, levels and codebook size come from the model's config.

Every backend's quantizer is residual, so the first Q levels of any encoding are the Q-level
encoding, and decode takes any prefix of levels. Each level adds an affine function of its code
to the decoder's latent (a codebook row, projected), so a distribution over a level's codes
decodes as the expected increment: `decode_expected` (soft decoding, Codec.decode_expected).

Notation: B batch, N samples, T frames, Q levels.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soundstorm.codecs.base import Codec, bitrate_kbps


@dataclass(frozen=True)
class SpecOptions:
    num_quantizers: int | None = None
    bandwidth: float | None = None  # kbit/s
    device: str = "cpu"


def parse_spec_argument(argument: str) -> tuple[str, SpecOptions]:
    """`SOURCE?num_quantizers=8&device=cpu` -> (SOURCE, options). The options follow the last '?'."""
    source, separator, query = argument.rpartition("?")
    if not separator:
        source, query = argument, ""
    if not source:
        raise ValueError(f"expected SOURCE[?OPTION=VALUE&...] with SOURCE a folder or hub id, got {argument!r}")
    values: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, equals, value = item.partition("=")
        try:
            if not equals:
                raise ValueError("missing '='")
            if key == "num_quantizers":
                values[key] = int(value)
            elif key == "bandwidth":
                values[key] = float(value)
            elif key == "device":
                values[key] = str(torch.device(value))
            else:
                raise ValueError(f"unknown option {key!r}")
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"bad option {item!r} in {argument!r} ({error}): expected num_quantizers=INT, "
                "bandwidth=KBPS or device=cpu|cuda[:N], joined by '&'"
            ) from error
    if "num_quantizers" in values and "bandwidth" in values:
        raise ValueError(f"give num_quantizers or bandwidth, not both, in {argument!r}")
    return source, SpecOptions(**values)


# --- the three backends: how to read the config, encode to [B, Q, T] and decode ---------------


@dataclass(frozen=True)
class Backend:
    model_type: str  # config.model_type of the checkpoints this backend loads
    model_class: str  # name of the transformers class
    check_config: Callable[[Any], None]  # refuses configs this wrapper cannot represent
    hop: Callable[[Any], int]  # samples per frame, from the config
    max_levels: Callable[[Any], int]
    encode: Callable[[nn.Module, Tensor, int], Tensor]  # (model, wav [B, 1, N], Q) -> codes [B, Q, T]
    decode: Callable[[nn.Module, Tensor], Tensor]  # (model, codes [B, Q, T]) -> wav [B, 1, N]
    dequantize: Callable[[nn.Module, Tensor], Tensor]  # (model, codes [B, Q, T]) -> latents [B, D, T]
    synthesize: Callable[[nn.Module, Tensor], Tensor]  # (model, latents [B, D, T]) -> wav [B, 1, N] or [B, N]


def _encodec_check(config: Any) -> None:
    if config.audio_channels != 1:
        raise ValueError(f"this EnCodec codes {config.audio_channels} channels; SoundStorm's codecs are mono")
    if config.normalize or config.chunk_length_s is not None:
        # encodec_48khz: 1 s chunks, each with its own loudness scale, which [B, T, Q] tokens cannot carry.
        raise ValueError(
            "this EnCodec normalizes or chunks its input (like encodec_48khz), giving a loudness scale "
            "per chunk beside the codes, which SoundStorm's tokens cannot carry: use a model with "
            "normalize=false and chunk_length_s=null (like encodec_24khz)"
        )


def _encodec_encode(model: nn.Module, wav: Tensor, levels: int) -> Tensor:
    # transformers accepts only the config's target bandwidths: take the lowest with enough levels.
    bandwidths = sorted(model.config.target_bandwidths)
    bandwidth = next(
        (b for b in bandwidths if model.quantizer.get_num_quantizers_for_bandwidth(b) >= levels), bandwidths[-1]
    )
    codes = model.encode(wav, bandwidth=bandwidth).audio_codes  # [chunks=1, B, Q', T]
    if codes.dim() == 4:
        codes = codes[0]
    return codes[:, :levels]  # [B, Q, T]


def _encodec_decode(model: nn.Module, codes: Tensor) -> Tensor:
    return model.decode(codes[None], [None]).audio_values  # [B, 1, N]


def _encodec_dequantize(model: nn.Module, codes: Tensor) -> Tensor:
    return model.quantizer.decode(codes.transpose(0, 1))  # it takes [Q, B, T]


def _encodec_synthesize(model: nn.Module, latents: Tensor) -> Tensor:
    return model.decoder(latents)  # EncodecModel._decode_frame without a scale (_encodec_check)


def _dac_encode(model: nn.Module, wav: Tensor, levels: int) -> Tensor:
    return model.encode(wav, n_quantizers=levels).audio_codes[:, :levels]  # [B, Q, T]


def _dac_decode(model: nn.Module, codes: Tensor) -> Tensor:
    return model.decode(audio_codes=codes).audio_values  # [B, N] or [B, 1, N]


def _dac_dequantize(model: nn.Module, codes: Tensor) -> Tensor:
    return model.quantizer.from_codes(codes)[0]


def _dac_synthesize(model: nn.Module, latents: Tensor) -> Tensor:
    return model.decode(quantized_representation=latents).audio_values


def _mimi_encode(model: nn.Module, wav: Tensor, levels: int) -> Tensor:
    return model.encode(wav, num_quantizers=levels).audio_codes[:, :levels]  # [B, Q, T]


def _mimi_decode(model: nn.Module, codes: Tensor) -> Tensor:
    return model.decode(codes).audio_values  # [B, 1, N]


def _mimi_dequantize(model: nn.Module, codes: Tensor) -> Tensor:
    return model.quantizer.decode(codes)


def _mimi_synthesize(model: nn.Module, latents: Tensor) -> Tensor:
    return model.decoder(latents).audio_values  # MimiModel.decode after the quantizer


def _mimi_hop(config: Any) -> int:
    hop = config.sampling_rate / config.frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"Mimi at {config.sampling_rate} Hz and {config.frame_rate} frames/s has no whole hop")
    return int(round(hop))


BACKENDS: dict[str, Backend] = {
    "encodec": Backend(
        "encodec", "EncodecModel", _encodec_check, lambda c: math.prod(c.upsampling_ratios),
        lambda c: c.num_quantizers, _encodec_encode, _encodec_decode, _encodec_dequantize, _encodec_synthesize,
    ),
    "dac": Backend(
        "dac", "DacModel", lambda c: None, lambda c: math.prod(c.downsampling_ratios),
        lambda c: c.n_codebooks, _dac_encode, _dac_decode, _dac_dequantize, _dac_synthesize,
    ),
    "mimi": Backend(
        "mimi", "MimiModel", lambda c: None, _mimi_hop, lambda c: c.num_quantizers, _mimi_encode, _mimi_decode,
        _mimi_dequantize, _mimi_synthesize,
    ),
}


class TransformersCodec(Codec):
    """A transformers EncodecModel, DacModel or MimiModel as a Codec (see the module docstring).

    Several codecs made by with_num_quantizers share one model.
    """

    def __init__(self, kind: str, model: nn.Module, source: str, num_quantizers: int | None = None, device: str = "cpu") -> None:
        if kind not in BACKENDS:
            raise ValueError(f"unknown transformers codec kind {kind!r}; kinds: {sorted(BACKENDS)}")
        self.kind, self.source, self.backend = kind, source, BACKENDS[kind]
        config = model.config
        self.backend.check_config(config)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.hop = self.backend.hop(config)
        self.sample_rate = int(config.sampling_rate)
        self.frame_rate = self.sample_rate / self.hop
        self.max_quantizers = int(self.backend.max_levels(config))
        self.codebook_size = int(config.codebook_size)
        self.num_quantizers = self.max_quantizers
        self._increments: dict[int, Tensor] = {}  # level -> [K, D], shared by with_num_quantizers' copies
        self._set_levels(self.max_quantizers if num_quantizers is None else num_quantizers)

    def _set_levels(self, num_quantizers: int) -> None:
        if not isinstance(num_quantizers, int) or not 1 <= num_quantizers <= self.max_quantizers:
            raise ValueError(
                f"{self.kind}:{self.source} has {self.max_quantizers} levels: num_quantizers must be in "
                f"[1, {self.max_quantizers}], got {num_quantizers!r}"
            )
        self.num_quantizers = num_quantizers
        suffix = "" if num_quantizers == self.max_quantizers else f"?num_quantizers={num_quantizers}"
        self.name = f"{self.kind}:{self.source}{suffix}"  # a spec that loads this codec again

    def with_num_quantizers(self, num_quantizers: int) -> Codec:
        if num_quantizers == self.num_quantizers:
            return self
        codec = copy.copy(self)  # shares the model
        codec._set_levels(num_quantizers)
        return codec

    def encode(self, wav: Tensor) -> Tensor:
        """float wav [B, 1, N] -> int64 codes [B, T, Q], T = ceil(N / hop), on wav's device."""
        self.check_wav(wav)
        N = wav.shape[-1]
        # Zero-pad to whole frames ourselves, so that T = num_frames(N) for every backend.
        padded = nn.functional.pad(wav, (0, -N % self.hop)).to(self.device, torch.float32)  # [B, 1, T * hop]
        with torch.no_grad():
            codes = self.backend.encode(self.model, padded, self.num_quantizers)  # [B, Q, T]
        return codes.transpose(1, 2).long().to(wav.device)  # [B, T, Q]

    def decode(self, codes: Tensor) -> Tensor:
        """int64 codes [B, T, Q'] (1 <= Q' <= Q) -> float32 wav [B, 1, T * hop], on codes' device."""
        self.check_codes(codes)
        with torch.no_grad():
            wav = self.backend.decode(self.model, codes.transpose(1, 2).to(self.device))
        return self._frames_of_audio(wav, codes)

    def _frames_of_audio(self, wav: Tensor, codes: Tensor) -> Tensor:
        """A backend's output as float32 [B, 1, T * hop] for codes [B, T, ...], on codes' device."""
        if wav.dim() == 2:  # DAC drops the channel axis
            wav = wav[:, None]
        # DAC's transposed convolutions lose a sample at each odd stride (dac_24khz's 5: 8 samples
        # at the end); pad them back so that every backend gives T * hop samples.
        N = codes.shape[1] * self.hop
        wav = nn.functional.pad(wav, (0, max(0, N - wav.shape[-1])))[..., :N]
        return wav.float().to(codes.device)  # [B, 1, N]

    decodes_expected = True

    def decode_expected(self, codes: Tensor, probs: Tensor) -> Tensor:
        """Soft decoding (Codec.decode_expected): int64 codes [B, T, c], float probs [B, T, L - c, K]
        -> float32 wav [B, 1, T * hop]: the latents of the c levels plus each next level's
        expected increment probs @ increments(level)."""
        self.check_expected(codes, probs)
        c = codes.shape[-1]
        with torch.no_grad():
            latents = self.backend.dequantize(self.model, codes.transpose(1, 2).to(self.device))  # [B, D, T]
            for i in range(probs.shape[2]):
                increments = self.increments(c + i)  # [K, D]
                latents = latents + (probs[:, :, i].to(self.device, increments.dtype) @ increments).transpose(1, 2)
            wav = self.backend.synthesize(self.model, latents)
        return self._frames_of_audio(wav, codes)

    def increments(self, level: int) -> Tensor:
        """float [K, D]: what code k of `level` (0-based, >= 1) adds to the decoder's latents after
        any codes of the levels before it: the latents of (0, ..., 0, k) less those of (0, ..., 0),
        which holds for any earlier codes because each level's contribution is added."""
        if level not in self._increments:
            K = self.codebook_size
            prefix = torch.zeros(K, level, 1, dtype=torch.long, device=self.device)  # [K, level, T=1]
            with torch.no_grad():
                after = self.backend.dequantize(self.model, torch.cat(
                    [prefix, torch.arange(K, device=self.device)[:, None, None]], dim=1))  # [K, D, 1]
                before = self.backend.dequantize(self.model, prefix[:1])  # [1, D, 1]
            self._increments[level] = (after - before)[..., 0].float()
        return self._increments[level]

    def __repr__(self) -> str:
        return (
            f"TransformersCodec({self.name!r}, {self.sample_rate} Hz, {self.frame_rate:g} frames/s, "
            f"{self.num_quantizers}/{self.max_quantizers} levels x {self.codebook_size}, "
            f"{bitrate_kbps(self.num_quantizers, self.codebook_size, self.frame_rate):g} kbit/s)"
        )


def load_transformers_codec(kind: str, argument: str) -> TransformersCodec:
    """The codec `KIND:ARGUMENT` names (see the module docstring), e.g.
    load_transformers_codec("encodec", "facebook/encodec_24khz?bandwidth=6.0")."""
    import transformers

    if kind not in BACKENDS:
        raise ValueError(f"unknown transformers codec kind {kind!r}; kinds: {sorted(BACKENDS)}")
    backend = BACKENDS[kind]
    source, options = parse_spec_argument(argument)
    config = _from_pretrained(transformers.AutoConfig.from_pretrained, source, kind)
    if config.model_type != backend.model_type:
        hint = f": use the spec {config.model_type}:{source}" if config.model_type in BACKENDS else ""
        raise ValueError(f"{source} holds a {config.model_type!r} model, not {backend.model_type!r}{hint}")
    _check_feature_extractor(source, config, kind)
    model_class = getattr(transformers, backend.model_class)
    model = _from_pretrained(model_class.from_pretrained, source, kind)
    codec = TransformersCodec(kind, model, source, device=options.device)
    if options.bandwidth is not None:
        per_level = bitrate_kbps(1, codec.codebook_size, codec.frame_rate)
        levels = int(math.floor(options.bandwidth / per_level + 1e-9))
        if levels < 1:
            raise ValueError(
                f"{kind}:{source} needs at least {per_level:g} kbit/s for one level, got bandwidth={options.bandwidth:g}"
            )
        if levels > codec.max_quantizers:
            raise ValueError(
                f"{kind}:{source} reaches at most {codec.max_quantizers * per_level:g} kbit/s "
                f"({codec.max_quantizers} levels of {per_level:g}), got bandwidth={options.bandwidth:g}"
            )
        codec._set_levels(levels)
    elif options.num_quantizers is not None:
        codec._set_levels(options.num_quantizers)
    return codec


def _from_pretrained(loader: Callable[..., Any], source: str, kind: str) -> Any:
    """loader(source) from a local folder, else from the hub cache, else from the hub."""
    path = Path(source).expanduser()
    if path.is_dir():
        return loader(str(path))
    if path.exists() or source.startswith((".", "/", "~")):
        raise ValueError(f"{kind}: no model folder at {source} (expected a folder written by save_pretrained)")
    try:
        return loader(source, local_files_only=True)  # already in the hub cache: no network
    except (OSError, ValueError):
        pass
    try:
        return loader(source)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{kind}: cannot load {source!r}: not a local folder, not in the Hugging Face cache, and not "
            f"downloadable here ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "give the folder of a saved model instead"
        ) from error


def _check_feature_extractor(source: str, config: Any, kind: str) -> None:
    """A checkpoint's preprocessor_config.json states the rate its feature extractor feeds the
    model; refuse one that disagrees with the model config, since we feed audio at the latter."""
    from transformers import AutoFeatureExtractor

    try:
        extractor = _from_pretrained(AutoFeatureExtractor.from_pretrained, source, kind)
    except (OSError, ValueError):
        return  # no preprocessor_config.json: the model config's rate stands alone
    rate = getattr(extractor, "sampling_rate", None)
    if rate is not None and rate != config.sampling_rate:
        raise ValueError(
            f"{source}: the feature extractor's sampling_rate ({rate} Hz) differs from the model "
            f"config's ({config.sampling_rate} Hz): the checkpoint is inconsistent"
        )
