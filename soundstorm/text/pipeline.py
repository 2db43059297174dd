"""Text (or semantic tokens, or speech) in, speech out, in the voice of a short prompt.

    pipeline = SpeechPipeline.from_folder("models/demo")            # codec, semantic, soundstorm, t2s
    voice = pipeline.voice("prompt.wav")                            # the first 3 s, as tokens
    wav = pipeline.tts("Some text.", voice)                         # float32 [N] at pipeline.sample_rate
    wav = pipeline.dialogue([("A", "Hello."), ("B", "Hi there.")], {"A": voice_a, "B": voice_b})
    wav = pipeline.resynth(source_wav, voice)                        # voice conversion
    wav = pipeline.speak(semantic_tokens, voice)                     # your own text-to-semantic model

The stages (shared/DESIGN.md): text -> semantic tokens by the text-to-semantic model; semantic
tokens -> codec tokens by SoundStorm, with the voice prompt's codec tokens as the leading,
never-changed frames and its semantic tokens before the new ones; codec tokens -> audio by the
codec, and a filter towards the prompt's spectral envelope. A long text is split into sentences
(a sentence of more than 20 words, the corpus's longest, into clauses: SpeechPipeline.pieces),
each generated with the same voice prompt. A dialogue is generated turn by turn: each turn's
text follows the previous turn's text and a <turn> marker, and its semantic tokens continue the
previous turn's (the turn-marked pairs the text-to-semantic model is trained on), while
SoundStorm gives it its own speaker's prompt. A segment longer than SoundStorm's window (6 s of
new audio unless decoding.json or the request says otherwise) is decoded window by window, each
after the voice prompt and the last second of the window before: a model trained on crops of
some seconds keeps the voice and the words of a minute that way, and loses both in one pass over
it (docs/long_form.md).

A models folder holds `codec/` (a SoundStream folder), `semantic/` (a k-means tokenizer
folder), `soundstorm/`, `t2s/` and `voices/*.wav`; every pair that meets is checked once, here.
An optional `decoding.json` ({"steps": [4, 1, ...], "guidance_scale": [2, 1, ...],
"soft_temperature": 0.5, "window_seconds": 6}) holds the SoundStorm schedule, classifier-free
guidance, soft decoding and long-form window measured best for those models, used when a request
names none (else the paper's 16, 1, ..., no guidance, hard codes, 6 s windows). Steps for fewer
levels than the model has decode only those first levels, and the codec decodes that prefix.
Soft decoding (soft_temperature > 0) hands the codec, for levels 2..L, the distribution
SoundStorm chose each token from (sharpened by that temperature) instead of the token: the codec
decodes their expected codebook vectors (Codec.decode_expected; docs/intelligibility.md).
decoding.json's "spectrum_match" (else 0, off) filters each voice's speech, after the codec,
towards its prompt's long-term spectrum by that share of their difference (spectrum_match.py;
docs/spectrum_match.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from soundstorm import masking
from soundstorm.checkpoint import weights_digest
from soundstorm.codecs import Codec, check_codec_matches, load_codec
from soundstorm.codecs.soundstream.vocos import standardized_features
from soundstorm.data.audio import load_audio, rms_db
from soundstorm.data.sentences import MAX_WORDS, split_long, split_sentences
from soundstorm.decoding import DecodeStep, check_prompt_guidance, check_prompt_refresh
from soundstorm.model.lora import LoRAAdapter
from soundstorm.model.soundstorm import SoundStorm
from soundstorm.model.step_linear import use_step_weights
from soundstorm.precision import autocast, resolve_precision, resolve_step_precision, step_weights_dtype
from soundstorm.semantic import SemanticTokenizer
from soundstorm.semantic.rate import check_semantic_matches
from soundstorm.text.model import TextToSemantic
from soundstorm.text.phone_score import PhoneScorer
from soundstorm.text.spectrum_match import match_spectrum
from soundstorm.text.symbols import TextSymbols
from soundstorm.text.voice_folder import PROMPT_FILE, VoiceFolder, read_voice_folder

DECODING_FILE = "decoding.json"  # a models folder's measured decoding defaults
PROMPT_SECONDS = 3.0  # the paper's voice prompt
MIN_PROMPT_SECONDS = 0.5
SILENT_DB = -50.0
TURN_PAUSE_SECONDS = 0.25
# What a dialogue turn's text-to-semantic model reads first (DecodingOptions.turn_context).
TURN_CONTEXTS = ("none", "previous")
# The most sentences the text-to-semantic model reads as one batch (SpeechPipeline._read): its int8
# step weights serve up to 8 rows (soundstorm/model/step_linear.py). With N candidates a batch has
# N rows a sentence, past what the int8 copy serves; float32's products are then as fast per row,
# and one batch beats several (a dialogue's 6 turns x 3 candidates: 1.05 s as one batch of 18
# rows, 1.29 s as three of 6, on the AVX2 CPU with 2 threads).
T2S_BATCH = 8
# Candidate k of a text-to-semantic choice draws on the stream of its salt's seed + k x this. A
# CPU generator keeps only a seed's low 32 bits (a stride of 2^40 gave every candidate one stream):
# an odd stride of 2^32 / golden ratio puts each candidate's low bits far from every salt's.
CANDIDATE_STRIDE = 0x9E3779B9
# On a CPU a SoundStorm batch pays up to about this many padded frames (batch x longest): past
# it, activations fall out of the caches and padding grows, and one batch of a dialogue's six
# turns (2328 frames) costs 1.2x two batches of three (benchmarks/batch_frames.py). None on a GPU.
CPU_BATCH_FRAMES = 1200
# Long-form decoding (SpeechPipeline.acoustic_batch): a segment is decoded in windows of at most
# this many seconds of new audio, each after the voice prompt and the last WINDOW_CONTEXT_SECONDS
# of the window before. Where a models folder's decoding.json says nothing: SoundStorm models are
# trained on crops of some seconds, and one pass over a minute lost the bundled model the voice
# (similarity 0.865 -> 0.569) and the words (CER 0.278 -> 0.418; docs/long_form.md).
WINDOW_SECONDS = 6.0
WINDOW_CONTEXT_SECONDS = 1.0


@dataclass
class Voice:
    """A voice prompt as tokens: the first frames of every level, and their semantic tokens."""

    name: str
    codes: Tensor  # int64 [P, Q], P a multiple of the model's semantic_rate_ratio
    semantic: Tensor  # int64 [P / r]
    text: str | None = None  # its transcript, if known: then the text-to-semantic model continues it
    # The codec with its decoder adapted to this voice's prompt (SpeechPipeline.voice's
    # adapt_steps; soundstorm/codecs/soundstream/adapt.py), or None: the pipeline's codec decodes.
    codec: Codec | None = None
    # A SoundStorm fine-tuned on this voice (an enrolled voice folder: soundstorm/model/adapt.py),
    # or None: the pipeline's SoundStorm generates its tokens.
    soundstorm: SoundStorm | None = None
    # The prompt's audio float [1, 1, N] at the codec's rate: a decoder that reads a voice reference
    # (Codec.reads_reference) decodes this voice with it beside the tokens. None: none given.
    recording: Tensor | None = None


@dataclass
class DecodingOptions:
    steps: list[int] | None = None  # SoundStorm iterations per level (default: SpeechPipeline.default_steps)
    temperature: float = 1.0  # SoundStorm sampling
    # Text-to-semantic sampling. 0.5 rather than 0.8: the bundled model's tokens spell their text
    # better (phone error rate 0.074 -> 0.058) and eval-tts CER fell by 0.038 +- 0.019; greedy
    # decoding falls into loops (0.171). docs/intelligibility.md.
    t2s_temperature: float = 0.5
    t2s_top_k: int | None = 50
    # Stop the text-to-semantic model once p(EOS) reaches this (None: only when EOS is drawn);
    # TextToSemantic.generate, docs/t2s_stopping.md.
    t2s_eos_threshold: float | None = None
    # Draw this many text-to-semantic samples (one batch) and keep the one whose tokens spell the
    # text's phones best (soundstorm/text/phone_score.py): the sampler's garbled draws are thrown
    # away before SoundStorm speaks them. Needs semantic tokens with phone classes. 1 by default:
    # on the bundled models 2 took the tokens' phone error rate from 0.058 to 0.042 but moved
    # eval-tts CER no further than the temperature had, for 1.3x the text-to-semantic time on a
    # CPU (docs/intelligibility.md).
    t2s_candidates: int = 1
    # One scale, or one per level (1 = off); None: SpeechPipeline.default_guidance_scale.
    guidance_scale: float | list[float] | None = None
    # Voice guidance (soundstorm.decoding.generate's prompt_guidance; 0 = off): what the voice
    # prompt changes in SoundStorm's logits, pushed further. None: SpeechPipeline.default_prompt_guidance.
    prompt_guidance: float | None = None
    # Levels 2..L decoded as the expected codebook vector of softmax(logits / this), where 0
    # takes the tokens themselves (hard codes); None: SpeechPipeline.default_soft_temperature.
    soft_temperature: float | None = None
    # Long-form decoding: a segment of more new audio than this is decoded window by window, each
    # continuing the one before (SpeechPipeline.acoustic_batch); 0 = one pass, however long.
    # None: SpeechPipeline.default_window_seconds.
    window_seconds: float | None = None
    # What each window after the first sees of the one before, after the voice prompt. None:
    # SpeechPipeline.default_window_context_seconds.
    window_context_seconds: float | None = None
    # A decoder that reads a voice reference (Codec.reads_reference) decodes each voice beside its
    # prompt's long-term spectrum; False decodes as with none given. From text: similarity +0.02 in
    # both voice groups (docs/intelligibility.md); spoken from an unseen voice's own semantic tokens
    # (resynth of a voice the tokenizer hears poorly) it cost that voice similarity instead.
    voice_reference: bool = True
    # The generated speech filtered towards its voice prompt's long-term spectrum by this share of
    # their difference (soundstorm/text/spectrum_match.py; 0 = off, 1 = all of it). None:
    # SpeechPipeline.default_spectrum_match.
    spectrum_match: float | None = None
    # How often SoundStorm runs the voice prompt's frames: every "pass", each "level"'s first, or
    # "once" (soundstorm.decoding.generate's prompt_refresh; between refreshes a pass runs over the
    # new frames alone). None: SpeechPipeline.default_prompt_refresh.
    prompt_refresh: str | None = None
    # What a dialogue turn's text-to-semantic model reads before the turn's text: "none", the
    # turn alone (after its voice's transcript where the voice has one, as text to speech reads a
    # sentence), or "previous", the turn before it and a <turn> marker (SPEAR-TTS's dialogue, and
    # this pipeline's before 2026-12-07). "none" because the turn before derails the bundled
    # model: over 132 turns of 22 held-out scripts, the phone error rate of the turns' tokens was
    # 0.058 alone against 0.239 after the turn before, where 12 turns ended early (their words
    # lost) and 6 ran long; spoken, pocketsphinx's CER 0.224 against 0.382
    # (benchmarks/dialogue_context.py, docs/dialogue_context.md).
    turn_context: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        # Refused before any model runs, not after.
        if self.spectrum_match is not None:
            check_spectrum_match(self.spectrum_match, "spectrum_match")
        if self.prompt_refresh is not None:
            check_prompt_refresh(self.prompt_refresh, "prompt_refresh")
        if self.turn_context not in TURN_CONTEXTS:
            raise ValueError(f"turn_context must be one of {', '.join(TURN_CONTEXTS)}, got {self.turn_context!r}")

    def acoustic_key(self) -> tuple:
        """What SoundStorm's decoding depends on besides the tokens: segments that agree on it
        can share a batch (each keeps its own random stream: Segment.seed)."""
        guidance = tuple(self.guidance_scale) if isinstance(self.guidance_scale, list) else self.guidance_scale
        return (tuple(self.steps) if self.steps is not None else None, self.temperature, guidance,
                self.soft_temperature, self.prompt_guidance, self.window_seconds, self.window_context_seconds,
                self.prompt_refresh)


@dataclass
class AcousticTokens:
    """SoundStorm's output for one segment: its codes, and for soft decoding the distributions
    levels 2..L were chosen from."""

    codes: Tensor  # int64 [T, L]
    probs: Tensor | None = None  # float32 [T, L - 1, K] (soft decoding), else None: decode the codes


@dataclass
class Segment:
    """One SoundStorm input: new semantic tokens [S] in a voice, and the seed of its random stream
    (from the request's seed and the segment's place in it)."""

    semantic: Tensor
    voice: Voice
    seed: int


@dataclass
class _Window:
    """One segment's input to one decoding run of SpeechPipeline.acoustic_batch."""

    semantic: Tensor  # int64 [S_w] the new semantic tokens
    prompt_semantic: Tensor  # int64 [P_s] the voice prompt's, then the context's
    prompt_codes: Tensor  # int64 [P_s * r, Q] their codes (the context's: MASK past the levels decoded)
    generator: torch.Generator  # the segment's random stream, carried from window to window


@dataclass
class Plan:
    """A request after its text-to-semantic stage: segments decoded independently, then joined
    with pauses[i] seconds of silence after segment i."""

    segments: list[Segment]
    pauses: list[float]
    options: DecodingOptions


@dataclass
class Timing:
    seconds: float = 0.0  # wall time of the generation
    audio_seconds: float = 0.0  # generated audio
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else math.inf


class SpeechPipeline:
    def __init__(self, codec: Codec, semantic: SemanticTokenizer, soundstorm: SoundStorm,
                 t2s: TextToSemantic | None = None, voices_dir: Path | None = None,
                 device: str | torch.device = "cpu", precision: str = "auto",
                 default_steps: Sequence[int] | None = None,
                 default_guidance_scale: float | Sequence[float] | None = None,
                 default_soft_temperature: float | None = None, default_prompt_guidance: float | None = None,
                 decoder: Codec | None = None, default_window_seconds: float | None = None,
                 default_window_context_seconds: float | None = None,
                 default_spectrum_match: float | None = None, default_prompt_refresh: str | None = None) -> None:
        """decoder: the codec that decodes SoundStorm's tokens into the audio returned, where it
        is not the codec itself: a models folder's decoder/, a SoundStream with the codec's encoder
        and codebooks whose decoder was trained for generated tokens (e.g. reading the semantic
        tokens too: recipes/demo/codec-semantic.toml). The codec still encodes prompts and audio,
        so the codec's own quality (resynthesis, `soundstorm codec eval`) is untouched."""
        self.device = torch.device(device)
        # SoundStorm's passes are matrix products: bf16 autocast where the hardware has it
        # (soundstorm/precision.py; benchmarks/dialogue_speed.py measures the gain).
        self.precision = resolve_precision(precision, self.device)
        # The text-to-semantic model's one-token steps: float32 unless bf16 is asked for, on a CPU
        # reading float16 copies of its weights under "auto" (soundstorm/model/step_linear.py).
        self.t2s_precision = resolve_step_precision(precision, self.device)
        self.t2s_step_dtype = step_weights_dtype(precision, self.device) if t2s is not None else None
        self.codec, self.semantic, self.t2s = codec, semantic, t2s
        self.decoder = codec if decoder is None else check_decoder_matches(codec, decoder)
        self.soundstorm = soundstorm.to(self.device).eval()
        if t2s is not None:
            t2s.to(self.device).eval()
            if self.t2s_step_dtype is not None:
                use_step_weights(t2s, self.t2s_step_dtype)
        self.voices_dir = voices_dir
        # The most words the text-to-semantic model reads at a time (self.pieces): the corpus's longest
        # sentence, the longest text it was trained on.
        self.max_words = MAX_WORDS
        # render()'s frame budget per SoundStorm batch (None: max_batch segments, whatever their length).
        self.batch_frames: int | None = CPU_BATCH_FRAMES if self.device.type == "cpu" else None
        config = soundstorm.config
        Q = config.num_quantizers
        if default_steps is not None and (not 1 <= len(default_steps) <= Q or any(
                not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in default_steps)):
            raise ValueError(f"default steps must list 1 to {Q} positive iteration counts, one per level decoded "
                             f"(fewer than {Q}: only the first levels), e.g. {masking.default_steps(Q)}; "
                             f"got {list(default_steps)}")
        # What a request that names no schedule gets: the models folder's measured choice, else the paper's.
        self.default_steps = list(default_steps) if default_steps is not None else masking.default_steps(Q)
        guidance = 1.0 if default_guidance_scale is None else default_guidance_scale
        scales = [guidance] if isinstance(guidance, (int, float)) else list(guidance)
        if len(scales) not in (1, len(self.default_steps)) or any(isinstance(g, bool) or not isinstance(g, (int, float)) or g < 0
                                            for g in scales):
            raise ValueError(f"the default guidance scale must be one number >= 0 or one per level decoded "
                             f"({len(self.default_steps)}); "
                             f"got {default_guidance_scale!r}")
        self.default_guidance_scale: float | list[float] = (
            float(scales[0]) if isinstance(guidance, (int, float)) else [float(g) for g in scales])
        self.default_soft_temperature = check_soft_temperature(default_soft_temperature or 0.0, self.decoder,
                                                               "the default soft temperature")
        self.default_prompt_guidance = check_prompt_guidance(default_prompt_guidance or 0.0, "the default prompt guidance")
        self.default_window_seconds, self.default_window_context_seconds = check_window(
            WINDOW_SECONDS if default_window_seconds is None else default_window_seconds,
            WINDOW_CONTEXT_SECONDS if default_window_context_seconds is None else default_window_context_seconds,
            "the default window")
        self.default_spectrum_match = check_spectrum_match(default_spectrum_match or 0.0, "the default spectrum match")
        self.default_prompt_refresh = check_prompt_refresh(default_prompt_refresh or "pass", "the default prompt refresh")
        check_codec_matches(codec, config)
        reader = self.decoder
        if reader.semantic_vocab_size and (reader.semantic_vocab_size, reader.semantic_rate_ratio) != (
                semantic.vocab_size, config.semantic_rate_ratio):
            raise ValueError(f"the decoder {reader.name} reads {reader.semantic_vocab_size} semantic tokens, one per "
                             f"{reader.semantic_rate_ratio} frames; the semantic tokenizer {semantic.name} makes "
                             f"{semantic.vocab_size} and SoundStorm reads one per {config.semantic_rate_ratio}")
        features = reader.semantic_features()
        if features is not None:
            # The decoder learned what each token means from this description: another tokenizer's
            # tokens of the same vocabulary size would be read as the wrong phones.
            centroids = getattr(semantic, "centroids", None)
            if centroids is None or centroids.shape != features.shape or not torch.allclose(
                    standardized_features(centroids), features, atol=2e-2):  # the decoder's copy may be fp16
                raise ValueError(f"the decoder {reader.name} describes each semantic token by the k-means centroids of "
                                 f"the tokenizer it was trained with, and {semantic.name}'s are not those: decode "
                                 "with a decoder trained on this tokenizer's tokens")
        check_semantic_matches(semantic.vocab_size, semantic.rate, codec.frame_rate, config,
                               what=f"the semantic tokenizer {semantic.name}")
        if t2s is not None:
            if t2s.config.semantic_vocab_size != semantic.vocab_size:
                raise ValueError(f"the text-to-semantic model makes {t2s.config.semantic_vocab_size} tokens, the "
                                 f"semantic tokenizer {semantic.name} {semantic.vocab_size}")
            if abs(t2s.config.semantic_rate - codec.frame_rate / config.semantic_rate_ratio) > 1e-6:
                raise ValueError(f"the text-to-semantic model makes {t2s.config.semantic_rate:g} tokens/s, SoundStorm "
                                 f"reads {codec.frame_rate / config.semantic_rate_ratio:g}")
            self.symbols = TextSymbols(t2s.config.text_units)
        # Scores text-to-semantic candidates against the text (None: tokens without phone classes).
        self.phone_scorer = PhoneScorer.from_tokenizer(semantic, self.symbols) if t2s is not None else None
        self.timing = Timing()

    @classmethod
    def from_folder(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "auto") -> SpeechPipeline:
        path = Path(path)
        missing = [name for name in ("codec", "semantic", "soundstorm") if not (path / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} lacks {', '.join(missing)}: a models folder holds codec/, semantic/, "
                                    "soundstorm/ (and t2s/, voices/); recipes/demo builds one")
        t2s = TextToSemantic.from_pretrained(path / "t2s") if (path / "t2s").is_dir() else None
        from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer  # any kind: content, mfcc, hubert

        return cls(load_codec(f"soundstream:{path / 'codec'}"), load_kmeans_tokenizer(path / "semantic"),
                   SoundStorm.from_pretrained(path / "soundstorm"), t2s,
                   path / "voices" if (path / "voices").is_dir() else None, device, precision,
                   decoder=load_codec(f"soundstream:{path / 'decoder'}") if (path / "decoder").is_dir() else None,
                   **read_decoding_defaults(path))

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def ratio(self) -> int:
        return self.soundstorm.config.semantic_rate_ratio

    @property
    def t2s_description(self) -> str:
        """The text-to-semantic model's precision as reports print it: "fp32", "bf16", or
        "fp32, float16 step weights"."""
        if self.t2s_step_dtype is None:
            return self.t2s_precision
        return f"{self.t2s_precision}, {str(self.t2s_step_dtype).removeprefix('torch.')} step weights"

    # ------------------------------------------------------------------ inputs

    def voice(self, source: str | Path | np.ndarray, name: str | None = None, text: str | None = None,
              max_seconds: float = PROMPT_SECONDS, sample_rate: int | None = None, adapt_steps: int = 0) -> Voice:
        """A voice prompt from an audio file (or float32 [N] at sample_rate): its first max_seconds.
        A voice folder (`soundstorm enroll`, voice_folder.py) gives its prompt, its adapted codec and
        its adapted SoundStorm.

        adapt_steps > 0 also fine-tunes a copy of the codec's decoder on the prompt for that many
        steps (our SoundStream only), which this voice's audio is then decoded with: the same
        tokens, nearer a voice the codec never heard (adapt.py; about 0.4 s a step on one CPU
        thread, spent once per voice)."""
        if not isinstance(source, np.ndarray) and Path(source).is_dir():
            if adapt_steps:
                raise ValueError(f"{source} is an enrolled voice: its decoder is already adapted (on all its "
                                 "enrolment audio); leave out --adapt-decoder")
            folder = read_voice_folder(source)
            codec = self._enrolled_codec(folder)
            voice = self.voice(folder.prompt, name=name or Path(source).name, text=text, max_seconds=max_seconds)
            voice.codec = codec
            voice.soundstorm = self._enrolled_soundstorm(folder)
            return voice
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ValueError("a voice prompt given as samples needs its sample_rate")
            from soundstorm.data.audio import resample_audio

            wav, label = resample_audio(source.astype(np.float32), sample_rate, self.sample_rate), name or "samples"
        else:
            wav, _ = load_audio(source, sample_rate=self.sample_rate, resample=True, downmix=True)
            label = name or Path(source).stem
        seconds = len(wav) / self.sample_rate
        if seconds < MIN_PROMPT_SECONDS:
            raise ValueError(f"the voice prompt {label} lasts {seconds:.2f} s; at least {MIN_PROMPT_SECONDS} s "
                             f"is needed ({PROMPT_SECONDS:g} s is best)")
        if not np.isfinite(wav).all():
            raise ValueError(f"the voice prompt {label} holds NaN or infinite samples")
        level = rms_db(wav)
        if level < SILENT_DB:
            raise ValueError(f"the voice prompt {label} is silent ({level:.0f} dBFS): give a recording of speech")
        wav = wav[: round(max_seconds * self.sample_rate)]
        tensor = torch.from_numpy(np.ascontiguousarray(wav))[None, None]  # [1, 1, N]
        codes, tokens = self.tokens(tensor)
        codec = self._adapted_codec(tensor, tokens, adapt_steps) if adapt_steps else None
        return Voice(label, codes, tokens, text, codec, recording=tensor)

    def tokens(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        """Codec tokens int64 [T, Q] and semantic tokens int64 [T / r] of one clip wav [1, 1, N] at
        the codec's rate, cut to whole semantic tokens: SoundStorm's input and training example."""
        with torch.inference_mode():
            codes = self.codec.encode(wav)[0]  # [T, Q]
            semantic, lengths = self.semantic.tokenize(wav)
        frames = (codes.shape[0] // self.ratio) * self.ratio  # whole semantic tokens only
        tokens = semantic[0, : int(lengths[0])]
        frames = min(frames, len(tokens) * self.ratio)
        return codes[:frames].long(), tokens[: frames // self.ratio].long()

    def _adapted_codec(self, wav: Tensor, semantic: Tensor, steps: int) -> Codec:
        """The pipeline's decoder with a copy that learned the prompt wav [1, 1, N] in `steps`
        steps, on the latents of the levels SoundStorm decodes by default (and beside the prompt's
        semantic tokens int64 [S], for a decoder that reads them)."""
        from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
        from soundstorm.codecs.soundstream.codec import SoundStreamCodec

        if not isinstance(self.decoder, SoundStreamCodec):
            raise ValueError(f"decoder adaptation needs our SoundStream codec; this pipeline's is {self.decoder.name}")
        # A decoder that reads a voice reference learns the voice with the prompt beside it, as it decodes it.
        decoder = self.decoder.with_reference(wav) if self.decoder.reads_reference else self.decoder
        return decoder.adapted_to(wav, DecoderAdaptation(steps=steps, levels=len(self.default_steps)),
                                  [semantic] if self.decoder.semantic_vocab_size else None)

    def _enrolled_codec(self, folder: VoiceFolder) -> Codec:
        """A voice folder's codec, checked to make this pipeline's tokens."""
        from soundstorm.codecs.soundstream.codec import SoundStreamCodec

        mine = getattr(self.codec, "encoder_digest", None)
        if mine is None or folder.encoder_weights != mine:
            raise ValueError(
                f"the voice folder {folder.path} was enrolled with a codec whose encoder and codebooks "
                f"(digest {folder.encoder_weights}) are not this pipeline's ({self.codec.name}, digest {mine}): "
                "its decoder would read other tokens; enroll the voice again with these models (--models)")
        codec = SoundStreamCodec.from_pretrained(folder.codec, num_quantizers=self.codec.num_quantizers,
                                                 device=self.device)
        if codec.encoder_digest != mine:
            raise ValueError(f"{folder.codec} does not hold the codec voice.json names (encoder digest "
                             f"{codec.encoder_digest}, not {folder.encoder_weights}): enroll the voice again")
        return codec

    def _enrolled_soundstorm(self, folder: VoiceFolder) -> SoundStorm | None:
        """A voice folder's SoundStorm, if it has one, checked to be this pipeline's with other
        weights; adapters are merged into this pipeline's SoundStorm, which they must belong to."""
        if not folder.soundstorm.is_dir():
            return None
        if folder.soundstorm_is_adapter:
            adapter = LoRAAdapter.load(folder.soundstorm)
            mine = weights_digest(self.soundstorm)
            if adapter.base_weights != mine:
                raise ValueError(
                    f"the voice folder {folder.path} holds adapters for a SoundStorm with weights {adapter.base_weights}, "
                    f"not this pipeline's ({mine}): enroll the voice again with these models (--models)")
            merged = adapter.merged_into(self.soundstorm, digest=mine)
            assert isinstance(merged, SoundStorm)
            return merged.eval()
        model = SoundStorm.from_pretrained(folder.soundstorm).float().eval().to(self.device)
        if model.config != self.soundstorm.config:
            raise ValueError(f"the voice folder {folder.path} holds a SoundStorm of another configuration than this "
                             "pipeline's (soundstorm/config.json differ): enroll the voice again with these models")
        return model

    def default_voice(self, adapt_steps: int = 0) -> Voice:
        if self.voices_dir is None or not (self.voices_dir / "default.wav").is_file():
            raise FileNotFoundError("no bundled default voice: give a voice prompt (--voice prompt.wav)")
        return self.voice(self.voices_dir / "default.wav", name="default", adapt_steps=adapt_steps)

    # ------------------------------------------------------------------ stages

    def _generator(self, options: DecodingOptions, salt: int, candidate: int = 0) -> torch.Generator:
        """The random stream of salt's draw; candidate k > 0 of a text-to-semantic choice gets a
        stream of its own, far from every salt's, and candidate 0 is the single draw's."""
        return torch.Generator(device=self.device).manual_seed(self._seed(options, salt) + candidate * CANDIDATE_STRIDE)

    @staticmethod
    def _seed(options: DecodingOptions, salt: int) -> int:
        return options.seed * 1_000_003 + salt

    def text_to_semantic(self, text: str, voice: Voice | None = None, context: tuple[str, Tensor] | None = None,
                         options: DecodingOptions | None = None, salt: int = 0) -> Tensor:
        """Semantic tokens [S] of text. A `context` (previous turn's text and tokens) is continued
        after a <turn> marker; else a voice with a transcript is continued after a word break.

        After a context the length bounds are the text's own (the training data's fewest and most
        tokens per symbol of it alone), not those of both texts less the context's tokens: a
        previous turn that ran long would otherwise let this one stop after a token
        (docs/dialogue_context.md)."""
        options = options or DecodingOptions()
        bounds = None
        if context is not None and self.t2s is not None:
            bounds = self.t2s.config.length_bounds(len(self.symbols.encode(text)))
        return self._read([self._t2s_input(text, voice, context)], [text], options, [salt], [bounds])[0]

    def texts_to_semantic(self, texts: Sequence[str], voices: Sequence[Voice | None],
                          options: DecodingOptions | None = None, salts: Sequence[int] | None = None) -> list[Tensor]:
        """text_to_semantic of each text (without context) in its voice, salt salts[i] (default
        i), read together: each text with its own random stream, so it draws what it draws alone
        up to float rounding."""
        options = options or DecodingOptions()
        salts = list(range(len(texts))) if salts is None else list(salts)
        inputs = [self._t2s_input(text, voice, None) for text, voice in zip(texts, voices)]
        return self._read(inputs, texts, options, salts, [None] * len(texts))

    def _read(self, inputs: Sequence[tuple[list[int], Tensor | None]], texts: Sequence[str], options: DecodingOptions,
              salts: Sequence[int], bounds: Sequence[tuple[int, int] | None]) -> list[Tensor]:
        """The text-to-semantic model's tokens for each input (symbol ids, prompt tokens), salt
        and length bounds (None: the model's own). With options.t2s_candidates N > 1 each text is
        drawn N times, candidate k on stream _generator(salt, k), and the draw whose tokens align
        best with its text's phones is kept (PhoneScorer.best), so N candidates always include the
        one draw of N = 1. The texts step on in batches of up to T2S_BATCH, each with its N rows
        (TextToSemantic.generate_batch)."""
        N = options.t2s_candidates
        if N < 1:
            raise ValueError(f"t2s_candidates must be at least 1, got {N}")
        if N > 1 and self.phone_scorer is None:
            raise ValueError("choosing among text-to-semantic candidates scores them against the text's phones: it "
                             f"needs semantic tokens of the content encoder's phone classes, not {self.semantic.name}")
        if self.t2s is None:
            raise ValueError("this models folder has no text-to-semantic model (t2s/): give semantic tokens instead")
        out: list[Tensor] = []
        for first in range(0, len(inputs), T2S_BATCH):
            rows = [(i, k) for i in range(first, min(first + T2S_BATCH, len(inputs))) for k in range(N)]
            start = time.perf_counter()
            with autocast(self.t2s_precision, self.device):
                drawn = self.t2s.generate_batch(
                    [torch.tensor(inputs[i][0], device=self.device) for i, _ in rows], [inputs[i][1] for i, _ in rows],
                    temperature=options.t2s_temperature, top_k=options.t2s_top_k,
                    eos_threshold=options.t2s_eos_threshold,
                    generators=[self._generator(options, salts[i], k) for i, k in rows], bounds=[bounds[i] for i, _ in rows])
            for j in range(0, len(rows), N):
                i, candidates = rows[j][0], drawn[j : j + N]
                tokens = candidates[self.phone_scorer.best(candidates, texts[i])] if N > 1 else candidates[0]  # type: ignore[union-attr]
                if len(tokens) == 0:
                    raise ValueError(f"the text-to-semantic model produced no tokens for {texts[i]!r}")
                out.append(tokens)
            self.timing.stages["text_to_semantic"] = (self.timing.stages.get("text_to_semantic", 0.0)
                                                      + time.perf_counter() - start)
        return out

    def _t2s_input(self, text: str, voice: Voice | None, context: tuple[str, Tensor] | None) -> tuple[list[int], Tensor | None]:
        """The text-to-semantic model's input for text: its symbol ids and prompt tokens, after
        the context (the previous turn) and a <turn> marker, else after the voice's transcript."""
        if self.t2s is None:
            raise ValueError("this models folder has no text-to-semantic model (t2s/): give semantic tokens instead")
        ids = self.symbols.encode(text)
        if context is not None:
            return self.symbols.join(self.symbols.encode(context[0]), ids, turn=True), context[1]
        if voice is not None and voice.text:
            return self.symbols.join(self.symbols.encode(voice.text), ids, turn=False), voice.semantic
        return ids, None

    def _segment(self, semantic: Tensor, voice: Voice, options: DecodingOptions, salt: int) -> Segment:
        V = self.soundstorm.config.semantic_vocab_size
        semantic = semantic.long()
        if semantic.dim() != 1 or len(semantic) == 0 or int(semantic.min()) < 0 or int(semantic.max()) >= V:
            raise ValueError(f"semantic tokens must be a non-empty int64 [S] in [0, {V})")
        return Segment(semantic, voice, self._seed(options, salt))

    def window_plan(self, segment: Segment, options: DecodingOptions) -> list[tuple[int, int, int]]:
        """(start, end, context) of each window the segment is decoded in (long-form decoding):
        its new semantic tokens [start, end), after the voice prompt and the `context` tokens
        before start with the codes made for them. One window (0, S, 0) unless the segment is
        longer than options.window_seconds."""
        seconds, context_seconds = check_window(
            self.default_window_seconds if options.window_seconds is None else options.window_seconds,
            self.default_window_context_seconds if options.window_context_seconds is None
            else options.window_context_seconds, "the window")
        rate = self.codec.frame_rate / self.ratio  # semantic tokens per second
        window = max(1, round(seconds * rate)) if seconds else 0
        context = min(round(context_seconds * rate), max(window - 1, 0))
        return [(start, end, min(context, start)) for start, end in window_spans(len(segment.semantic), window)]

    def acoustic_batch(self, segments: Sequence[Segment], options: DecodingOptions | None = None,
                       callback: Callable[[DecodeStep], None] | None = None) -> list[AcousticTokens]:
        """Codec tokens [T_i, L] of each segment's new semantic tokens (T_i = S_i * r), in its
        voice, in batched decoding runs (with soft decoding, the distributions of levels 2..L
        too). Each segment samples from its own generator, so its
        result is the one it would get alone (soundstorm/decoding.py, draw_uniform) up to float
        rounding: padding changes the shapes of the matrix products, which can flip a near-tie
        between codes and the samples after it (a few percent of a real model's tokens under
        bf16: benchmarks/batch_frames.py). `options` gives the rest (steps, temperature,
        guidance), the same for all; L = len(steps) levels are decoded (Q by default).

        Long-form decoding: a segment longer than the window (window_plan) is decoded window
        after window, a run per round over the segments that still have one. A window's prompt
        is the voice prompt followed by the end of the window before (its semantic tokens and
        the L levels decoded for it, MASK above), so that each window continues the audio
        before it in the voice of the prompt. SoundStorm is trained on crops of some seconds:
        one pass over a minute lost the voice and the words (docs/long_form.md)."""
        options = options or DecodingOptions()
        if not segments:
            return []
        models = {id(segment.voice.soundstorm) for segment in segments}
        if len(models) > 1:
            raise ValueError("one batch of segments must share a SoundStorm: enrolled voices go in their own batches")
        model = segments[0].voice.soundstorm or self.soundstorm
        r, Q, mask_id = self.ratio, self.soundstorm.config.num_quantizers, self.soundstorm.config.mask_id
        steps = options.steps if options.steps is not None else self.default_steps
        guidance = options.guidance_scale if options.guidance_scale is not None else self.default_guidance_scale
        if options.guidance_scale is None and isinstance(guidance, list):
            # The folder's per-level guidance, for a request that decodes another number of
            # levels: levels it does not list run unguided.
            guidance = (guidance + [1.0] * len(steps))[: len(steps)]
        soft = self.default_soft_temperature if options.soft_temperature is None else options.soft_temperature
        for codec in {id(c): c for c in (segment.voice.codec or self.decoder for segment in segments)}.values():
            soft = check_soft_temperature(soft, codec, "soft_temperature")
        soft = soft if len(steps) > 1 else 0.0  # one level: nothing finer to decode softly
        # generate() checks a request's own value; the folder's default was checked on loading.
        prompt_guidance = self.default_prompt_guidance if options.prompt_guidance is None else options.prompt_guidance
        refresh = self.default_prompt_refresh if options.prompt_refresh is None else options.prompt_refresh
        plans = [self.window_plan(segment, options) for segment in segments]
        generators = [torch.Generator(device=self.device).manual_seed(segment.seed) for segment in segments]
        pieces: list[list[AcousticTokens]] = [[] for _ in segments]
        for round_ in range(max(len(plan) for plan in plans)):
            active = [b for b, plan in enumerate(plans) if round_ < len(plan)]
            windows = []
            for b in active:
                start, end, context = plans[b][round_]
                segment = segments[b]
                prompt_semantic = torch.cat([segment.voice.semantic.cpu(), segment.semantic[start - context: start].cpu()])
                prompt_codes = segment.voice.codes.cpu()  # [P, Q]
                if context:
                    before = torch.cat([piece.codes for piece in pieces[b]])[-context * r:].cpu()  # [context r, L]
                    tail = torch.full((context * r, Q), mask_id, dtype=torch.long)
                    tail[:, : before.shape[1]] = before
                    prompt_codes = torch.cat([prompt_codes, tail])
                windows.append(_Window(segment.semantic[start:end].cpu(), prompt_semantic, prompt_codes, generators[b]))
            decoded = self._decode_windows(model, windows, steps, guidance, soft, prompt_guidance, refresh,
                                           options.temperature, callback)
            for b, tokens in zip(active, decoded):
                pieces[b].append(tokens)
        return [AcousticTokens(torch.cat([piece.codes for piece in parts]),
                               None if parts[0].probs is None else torch.cat([piece.probs for piece in parts]))  # type: ignore[misc]
                for parts in pieces]

    def _decode_windows(self, model: SoundStorm, windows: Sequence[_Window], steps: Sequence[int],
                        guidance: float | Sequence[float], soft: float, prompt_guidance: float, refresh: str,
                        temperature: float,
                        callback: Callable[[DecodeStep], None] | None) -> list[AcousticTokens]:
        """One batched decoding run: the tokens of each window's new frames."""
        r, Q = self.ratio, self.soundstorm.config.num_quantizers
        prompts = [len(window.prompt_semantic) for window in windows]  # prompt semantic tokens
        totals = [p + len(window.semantic) for p, window in zip(prompts, windows)]  # [B]
        B, S, P = len(windows), max(totals), max(prompts) * r
        semantic = torch.zeros(B, S, dtype=torch.long)
        prompt = torch.zeros(B, max(P, 1), Q, dtype=torch.long)
        for b, window in enumerate(windows):
            semantic[b, : totals[b]] = torch.cat([window.prompt_semantic, window.semantic])
            prompt[b, : prompts[b] * r] = window.prompt_codes
        lengths = torch.tensor(totals) * r
        prompt_lengths = torch.tensor(prompts) * r
        start = time.perf_counter()
        with autocast(self.precision, self.device):
            out = model.generate(
                semantic_tokens=semantic.to(self.device), lengths=lengths.to(self.device),
                prompt_codes=prompt.to(self.device) if P else None,
                prompt_lengths=prompt_lengths.to(self.device) if P else None,
                steps=steps, temperature=temperature, guidance_scale=guidance,
                prompt_guidance=prompt_guidance, prompt_refresh=refresh, generator=[window.generator for window in windows], callback=callback,
                return_logits_from=1 if soft else None,
            )
        codes, logits = out if soft else (out, None)  # [B, max T, L], [B, max T, L - 1, K]
        probs = None if logits is None else (logits / soft).softmax(dim=-1).cpu()
        self.timing.stages["soundstorm"] = self.timing.stages.get("soundstorm", 0.0) + time.perf_counter() - start
        spans = [(int(prompt_lengths[b]), int(lengths[b])) for b in range(B)]
        return [AcousticTokens(codes[b, first:end], None if probs is None else probs[b, first:end])
                for b, (first, end) in enumerate(spans)]

    def acoustic(self, semantic: Tensor, voice: Voice, options: DecodingOptions | None = None, salt: int = 0,
                 callback: Callable[[DecodeStep], None] | None = None) -> AcousticTokens:
        """Codec tokens [T, L] of the new semantic tokens [S] (T = S * r), in voice's voice."""
        options = options or DecodingOptions()
        return self.acoustic_batch([self._segment(semantic, voice, options, salt)], options, callback)[0]

    def decode(self, tokens: AcousticTokens | Tensor, voice: Voice | None = None,
               semantic: Tensor | None = None, voice_reference: bool = True) -> np.ndarray:
        """Audio float32 [N] of SoundStorm's tokens (or codes [T, L]), by the voice's adapted codec
        where it has one; soft where the tokens carry distributions. With the semantic tokens
        [S] they were generated from (S = T / r), a codec whose decoder reads them gets them
        (Codec.decode_with_semantic); other codecs decode the codes alone. A decoder that reads a
        voice reference decodes beside the voice's recording unless voice_reference is False."""
        # Always float32: the codec is a few percent of the time, and its waveform is what
        # listeners hear (bf16's 8-bit mantissa would add noise at about -48 dB).
        start = time.perf_counter()
        codec = voice.codec if voice is not None and voice.codec is not None else self.decoder
        if voice_reference and codec.reads_reference and voice is not None and voice.recording is not None:
            codec = codec.with_reference(voice.recording)  # the voice's envelope, from its prompt
        tokens = tokens if isinstance(tokens, AcousticTokens) else AcousticTokens(tokens)
        with torch.inference_mode():
            wav = codec.decode_generated(tokens.codes[None].cpu(), None if tokens.probs is None else tokens.probs[None],
                                         None if semantic is None else semantic[None].long().cpu())[0, 0].float().numpy()
        self.timing.stages["codec"] = self.timing.stages.get("codec", 0.0) + time.perf_counter() - start
        return wav

    # ------------------------------------------------------------------ plans: requests as segments

    def plan_speak(self, semantic: Tensor, voice: Voice, options: DecodingOptions | None = None) -> Plan:
        options = options or DecodingOptions()
        return Plan([self._segment(semantic, voice, options, 0)], [0.0], options)

    def pieces(self, text: str) -> list[str]:
        """What the text-to-semantic model reads of a text at a time: its sentences, and a sentence
        of more than self.max_words words cut at clauses (soundstorm.data.sentences.split_long)."""
        return [piece for sentence in split_sentences(text) for piece in split_long(sentence, self.max_words)]

    def plan_tts(self, text: str, voice: Voice, options: DecodingOptions | None = None) -> Plan:
        """Semantic tokens of text, piece by piece (self.pieces: an over-long text is split, never refused)."""
        options = options or DecodingOptions()
        sentences = self.pieces(text)
        if not sentences:
            raise ValueError("the text is empty: nothing to say")
        semantic = self.texts_to_semantic(sentences, [voice] * len(sentences), options,
                                          salts=[2 * i for i in range(len(sentences))])
        segments = [self._segment(tokens, voice, options, 2 * i + 1) for i, tokens in enumerate(semantic)]
        return Plan(segments, [0.0] * len(segments), options)

    def plan_dialogue(self, turns: Sequence[tuple[str, str]], voices: dict[str, Voice],
                      options: DecodingOptions | None = None) -> Plan:
        """Semantic tokens of every turn, each read alone in its speaker's voice, or with
        options.turn_context "previous" continuing the turn before it after a <turn> marker. A
        turn of more than self.max_words words is read in pieces (self.pieces), no pause between
        them: the first continues the previous turn ("previous"), the rest are read in the turn's
        voice."""
        options = options or DecodingOptions()
        if not turns:
            raise ValueError("the dialogue has no turns")
        unknown = sorted({speaker for speaker, _ in turns} - set(voices))
        if unknown:
            raise ValueError(f"no voice for speaker(s) {', '.join(unknown)}: give --voice NAME=prompt.wav for each")
        pieces: list[tuple[str, str, bool]] = []  # (speaker, text, the turn's first piece)
        pauses: list[float] = []
        for speaker, text in turns:
            parts = [text] if len(text.split()) <= self.max_words else self.pieces(text)
            pieces += [(speaker, part, k == 0) for k, part in enumerate(parts)]
            pauses += [0.0] * (len(parts) - 1) + [TURN_PAUSE_SECONDS]
        pauses[-1] = 0.0
        # Piece i (a dialogue of short turns: turn i) draws with salt 2 i, SoundStorm with 2 i + 1.
        if options.turn_context == "previous":  # each turn after the one before it: one by one
            semantic, context, previous = [], None, None
            for i, (speaker, text, first) in enumerate(pieces):
                follows = first and previous is not None and previous != speaker
                semantic.append(self.text_to_semantic(text, voices[speaker], context=context if follows else None,
                                                      options=options, salt=2 * i))
                context, previous = (text, semantic[-1]), speaker
        else:  # every piece alone: all at once
            semantic = self.texts_to_semantic([text for _, text, _ in pieces], [voices[s] for s, _, _ in pieces],
                                              options, salts=[2 * i for i in range(len(pieces))])
        segments = [self._segment(tokens, voices[speaker], options, 2 * i + 1)
                    for i, (tokens, (speaker, _, _)) in enumerate(zip(semantic, pieces))]
        return Plan(segments, pauses, options)

    def plan_resynth(self, source: str | Path | np.ndarray, voice: Voice, options: DecodingOptions | None = None,
                     sample_rate: int | None = None) -> Plan:
        """The semantic tokens of `source` (a file, or float32 [N] at sample_rate), for voice conversion."""
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ValueError("a recording given as samples needs its sample_rate")
            from soundstorm.data.audio import resample_audio

            wav, label = resample_audio(source.astype(np.float32), sample_rate, self.semantic.sample_rate), "the recording"
        else:
            wav, _ = load_audio(source, sample_rate=self.semantic.sample_rate, resample=True, downmix=True)
            label = str(source)
        if len(wav) / self.semantic.sample_rate < MIN_PROMPT_SECONDS / 5:
            raise ValueError(f"{label} is too short to resynthesize")
        if not np.isfinite(wav).all():
            raise ValueError(f"{label} holds NaN or infinite samples")
        with torch.inference_mode():
            tokens, lengths = self.semantic.tokenize(torch.from_numpy(np.ascontiguousarray(wav))[None, None])
        return self.plan_speak(tokens[0, : int(lengths[0])], voice, options)

    def render(self, plans: Sequence[Plan], max_batch: int = 8, traces: Sequence[Trace] | None = None) -> list[np.ndarray]:
        """Audio float32 [N] of each plan. The segments of all plans that share decoding options
        go through SoundStorm together, longest first, a batch holding up to max_batch segments
        and (where self.batch_frames is set) up to batch_frames padded frames, its first segment
        always; a trace per plan records how its tokens were revealed. A segment samples the
        same in any batch, up to float rounding (acoustic_batch)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        codes: dict[tuple[int, int], Tensor] = {}
        audio: dict[tuple[int, int], np.ndarray] = {}
        groups: dict[tuple, list[tuple[int, int]]] = {}
        for p, plan in enumerate(plans):
            for i, segment in enumerate(plan.segments):
                # A voice with its own SoundStorm (enrolled) shares batches only with its own kind.
                model = id(segment.voice.soundstorm) if segment.voice.soundstorm is not None else None
                groups.setdefault((plan.options.acoustic_key(), model), []).append((p, i))

        def frames(member: tuple[int, int]) -> int:  # prompt and new frames of its longest window
            segment = plans[member[0]].segments[member[1]]
            windows = self.window_plan(segment, plans[member[0]].options)
            return max(len(segment.voice.semantic) + context + end - start for start, end, context in windows) * self.ratio

        for members in groups.values():
            members.sort(key=lambda member: -frames(member))
            for batch in self._batches(members, max_batch, frames):
                recorder = _Recorder(self.soundstorm.config.mask_id) if traces is not None else None
                out = self.acoustic_batch([plans[p].segments[i] for p, i in batch], plans[batch[0][0]].options,
                                          recorder.step if recorder else None)
                for (p, i), tokens in zip(batch, out):
                    # Decoded now: a batch's distributions (soft decoding) are 12 KB a frame.
                    codes[(p, i)] = tokens.codes
                    segment = plans[p].segments[i]
                    audio[(p, i)] = self.decode(tokens, segment.voice, segment.semantic, plans[p].options.voice_reference)
                if recorder is not None:
                    segments = [plans[p].segments[i] for p, i in batch]
                    recorder.add_to(traces, batch, segments,
                                    [self.window_plan(segment, plans[p].options) for (p, _), segment in zip(batch, segments)],
                                    self.ratio, levels=out[0].codes.shape[-1])
        results = []
        for p, plan in enumerate(plans):
            self._match_spectra(plan, p, audio)
            pieces = []
            for i, pause in enumerate(plan.pauses):
                pieces.append(audio[(p, i)])
                if pause > 0:
                    pieces.append(np.zeros(round(pause * self.sample_rate), dtype=np.float32))
            results.append(np.concatenate(pieces))
        if traces is not None:
            for p, plan in enumerate(plans):
                traces[p].codes = torch.cat([codes[(p, i)].cpu() for i in range(len(plan.segments))])
        return results

    def spectrum_strength(self, options: DecodingOptions) -> float:
        """The spectrum match a request gets: its own (checked when the options were made), else the default."""
        return self.default_spectrum_match if options.spectrum_match is None else options.spectrum_match

    def _match_spectra(self, plan: Plan, p: int, audio: dict[tuple[int, int], np.ndarray]) -> None:
        """Filter each voice's speech in plan p (audio[(p, i)], in place) towards the long-term
        spectrum of that voice's prompt, one filter per voice (spectrum_match.py)."""
        strength = self.spectrum_strength(plan.options)
        if strength == 0.0:
            return
        start = time.perf_counter()
        by_voice: dict[int, list[int]] = {}
        for i, segment in enumerate(plan.segments):
            if segment.voice.recording is not None:
                by_voice.setdefault(id(segment.voice), []).append(i)
        for members in by_voice.values():
            prompt = plan.segments[members[0]].voice.recording[0, 0].float().numpy()  # type: ignore[index]
            matched = match_spectrum([audio[(p, i)] for i in members], prompt, self.sample_rate, strength)
            audio.update({(p, i): wav for i, wav in zip(members, matched)})
        # Counted with the codec: both turn tokens into the waveform that is heard.
        self.timing.stages["codec"] = self.timing.stages.get("codec", 0.0) + time.perf_counter() - start

    def _batches(self, members: list[tuple[int, int]], max_batch: int,
                 frames: Callable[[tuple[int, int]], int]) -> list[list[tuple[int, int]]]:
        """Split members (longest first) into batches of at most max_batch, and of at most
        self.batch_frames padded frames (the batch's size times its first, longest member)."""
        batches: list[list[tuple[int, int]]] = []
        for member in members:
            if batches and len(batches[-1]) < max_batch and (
                    self.batch_frames is None or (len(batches[-1]) + 1) * frames(batches[-1][0]) <= self.batch_frames):
                batches[-1].append(member)
            else:
                batches.append([member])
        return batches

    # ------------------------------------------------------------------ tasks

    def timed(self, run: Callable[[], np.ndarray]) -> np.ndarray:
        """run()'s audio, with self.timing its wall time and stages (what the speech commands report)."""
        self.timing = Timing()
        start = time.perf_counter()
        wav = run()
        self.timing.seconds = time.perf_counter() - start
        self.timing.audio_seconds = len(wav) / self.sample_rate
        return wav

    def speak(self, semantic: Tensor, voice: Voice, options: DecodingOptions | None = None) -> np.ndarray:
        """Audio float32 [N] of semantic tokens [S] in voice's voice."""
        return self.timed(lambda: self.render([self.plan_speak(semantic, voice, options)])[0])

    def tts(self, text: str, voice: Voice, options: DecodingOptions | None = None) -> np.ndarray:
        """Audio of text, sentence by sentence; the sentences are decoded as one batch."""
        return self.timed(lambda: self.render([self.plan_tts(text, voice, options)])[0])

    def dialogue(self, turns: Sequence[tuple[str, str]], voices: dict[str, Voice],
                 options: DecodingOptions | None = None) -> np.ndarray:
        """Audio of a dialogue: turns (speaker, text), each in its speaker's voice."""
        return self.timed(lambda: self.render([self.plan_dialogue(turns, voices, options)])[0])

    def resynth(self, source: str | Path | np.ndarray, voice: Voice, options: DecodingOptions | None = None,
                sample_rate: int | None = None) -> np.ndarray:
        """The words of `source` (its semantic tokens; a file, or float32 [N] at sample_rate) in
        voice's voice: voice conversion."""
        return self.timed(lambda: self.render([self.plan_resynth(source, voice, options, sample_rate)])[0])


class _Recorder:
    """Turns decoding callbacks into traces: at which forward pass each token was revealed."""

    def __init__(self, mask_id: int) -> None:
        self.mask_id = mask_id
        self.start = time.perf_counter()
        self.passes: list[tuple[int, int, float]] = []  # (level, iteration, seconds since start)
        # One grid per decoding run (a long-form round): [B_k, T_k, Q] int64, the index (1-based,
        # over all the runs' passes) of the pass that revealed each token, 0 = not yet.
        self.rounds: list[Tensor] = []

    def step(self, step: DecodeStep) -> None:
        self.passes.append((step.level, step.iteration, time.perf_counter() - self.start))
        if step.forward_pass == 1:  # a new run; on the codes' device: no copy to the host in its loop
            self.rounds.append(torch.zeros_like(step.codes))
        revealed = self.rounds[-1]
        revealed.masked_fill_((step.codes != self.mask_id) & (revealed == 0), len(self.passes))

    def add_to(self, traces: Sequence[Trace], batch: list[tuple[int, int]], segments: list[Segment],
               windows: list[list[tuple[int, int, int]]], ratio: int, levels: int) -> None:
        """Record the batch's reveal grids in its plans' traces: `levels` levels were decoded, each
        segment in its windows (SpeechPipeline.window_plan), round k by the segments with a k-th."""
        offsets: dict[int, int] = {}  # plan -> its passes before this batch's
        for b, ((p, i), segment) in enumerate(zip(batch, segments)):
            offset = offsets.setdefault(p, len(traces[p].passes))
            parts = []
            for k, (start, end, context) in enumerate(windows[b]):
                row = sum(1 for other in windows[:b] if len(other) > k)  # its row in round k's batch
                P = (len(segment.voice.semantic) + context) * ratio
                parts.append(self.rounds[k][row, P: P + (end - start) * ratio, :levels].cpu())
            traces[p].reveal[i] = torch.cat(parts) + offset
        for p in offsets:
            traces[p].passes += [Pass(level, iteration, seconds) for level, iteration, seconds in self.passes]


@dataclass
class Pass:
    level: int
    iteration: int
    seconds: float  # since its batch's decoding began


@dataclass
class Trace:
    """How one request was decoded, for the web page's token grid: reveal[i] [T_i, L] is the
    1-based index into passes of the forward pass that fixed each token of segment i."""

    passes: list[Pass] = field(default_factory=list)
    reveal: dict[int, Tensor] = field(default_factory=dict)
    codes: Tensor | None = None  # [T, L] all segments' codes, in order (L levels decoded)

    def reveal_grid(self) -> Tensor:
        """[T, L] over all segments, in order."""
        return torch.cat([self.reveal[i] for i in sorted(self.reveal)])


def check_decoder_matches(codec: Codec, decoder: Codec) -> Codec:
    """A decoder for the codec's tokens: the same rates, levels and codebook size, and where both
    say, the same encoder and codebooks (a decoder behind other codebooks reads other tokens)."""
    fields = ("sample_rate", "frame_rate", "num_quantizers", "codebook_size")
    differing = [f"{name} {getattr(decoder, name)} (codec: {getattr(codec, name)})" for name in fields
                 if getattr(decoder, name) != getattr(codec, name)]
    mine, theirs = getattr(codec, "encoder_digest", None), getattr(decoder, "encoder_digest", None)
    if mine is not None and theirs is not None and mine != theirs:
        differing.append(f"encoder and codebooks {theirs} (codec: {mine})")
    if differing:
        raise ValueError(f"the decoder {decoder.name} does not decode the codec {codec.name}'s tokens: "
                         + "; ".join(differing))
    return decoder


def check_soft_temperature(value: object, codec: Codec, what: str) -> float:
    """A soft temperature: a number >= 0 (0 = hard codes), and > 0 only for a codec that decodes
    distributions (Codec.decodes_expected). Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{what} must be a number >= 0 (0: decode the tokens themselves), got {value!r}")
    if value > 0 and not codec.decodes_expected:
        raise ValueError(f"{what} {value:g} asks for soft decoding, which {codec.name} cannot do (it decodes "
                         "tokens only): use 0, or a SoundStream codec")
    return float(value)


DECODING_KEYS = ("steps", "guidance_scale", "soft_temperature", "prompt_guidance", "window_seconds",
                 "window_context_seconds", "spectrum_match", "prompt_refresh")


def read_decoding_defaults(folder: Path) -> dict[str, object]:
    """SpeechPipeline's default_* keyword arguments from folder/decoding.json (DECODING_KEYS;
    those it does not say are left out: the pipeline's own defaults apply)."""
    path = folder / DECODING_FILE
    if not path.is_file():
        return {}
    example = '{"steps": [4, 1, 1, 1], "guidance_scale": [1.5, 2, 2, 2], "soft_temperature": 0.5}'
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} must be JSON like {example}: {error}") from None
    if not isinstance(settings, dict) or not set(DECODING_KEYS) & set(settings):
        raise ValueError(f"{path} must be JSON like {example}, with any of {', '.join(DECODING_KEYS)}")
    steps = settings.get("steps")
    if steps is not None and not isinstance(steps, list):
        raise ValueError(f"{path}: steps must be a list of iteration counts, got {steps!r}")
    return {f"default_{key}": settings[key] for key in DECODING_KEYS if settings.get(key) is not None}


def check_spectrum_match(value: object, what: str) -> float:
    """A spectrum match strength as a float in [0, 1], or a clear error naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1] (0 = off, 1 = the whole difference), got {value!r}")
    return float(value)


def check_window(seconds: object, context: object, what: str) -> tuple[float, float]:
    """(window, context) seconds of long-form decoding as floats, or a clear error naming `what`:
    a window >= 0 (0 = one pass), a context >= 0 and shorter than a window that is on."""
    for name, value in (("seconds", seconds), ("context seconds", context)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} {name} must be a number >= 0, got {value!r}")
    if seconds and context >= seconds:  # type: ignore[operator]
        raise ValueError(f"{what}'s context ({context:g} s) must be shorter than its window ({seconds:g} s)")
    return float(seconds), float(context)  # type: ignore[arg-type]


def window_spans(tokens: int, window: int) -> list[tuple[int, int]]:
    """[start, end) of each window over `tokens` new semantic tokens, windows of at most `window`
    tokens (0: one window) and as equal as they can be, so that no window is a short remainder."""
    if tokens <= window or window == 0:
        return [(0, tokens)]
    count = -(-tokens // window)
    bounds = [round(i * tokens / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def parse_dialogue(script: str) -> list[tuple[str, str]]:
    """`NAME: text` lines -> [(NAME, text)]. Blank lines and lines starting with # are skipped;
    a line without `NAME:` continues the previous turn."""
    turns: list[tuple[str, str]] = []
    for number, line in enumerate(script.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, text = line.partition(":")
        if colon and name.strip() and " " not in name.strip() and text.strip():
            turns.append((name.strip(), text.strip()))
        elif turns:
            turns[-1] = (turns[-1][0], f"{turns[-1][1]} {line}")
        else:
            raise ValueError(f"line {number}: a dialogue line is `NAME: text`, got {line!r}")
    if not turns:
        raise ValueError("the dialogue script has no `NAME: text` lines")
    return turns
