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
codec. A long text is split into sentences, each generated with the same voice prompt. A
dialogue is generated turn by turn: each turn's text follows the previous turn's text and a
<turn> marker, and its semantic tokens continue the previous turn's (the turn-marked pairs
the text-to-semantic model is trained on), while SoundStorm gives it its own speaker's prompt.

A models folder holds `codec/` (a SoundStream folder), `semantic/` (a k-means tokenizer
folder), `soundstorm/`, `t2s/` and `voices/*.wav`; every pair that meets is checked once, here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from soundstorm.codecs import Codec, check_codec_matches, load_codec
from soundstorm.data.audio import load_audio, rms_db
from soundstorm.data.sentences import split_sentences
from soundstorm.model.soundstorm import SoundStorm
from soundstorm.semantic import SemanticTokenizer
from soundstorm.semantic.rate import check_semantic_matches
from soundstorm.text.model import TextToSemantic
from soundstorm.text.symbols import TextSymbols

PROMPT_SECONDS = 3.0  # the paper's voice prompt
MIN_PROMPT_SECONDS = 0.5
SILENT_DB = -50.0
TURN_PAUSE_SECONDS = 0.25


@dataclass
class Voice:
    """A voice prompt as tokens: the first frames of every level, and their semantic tokens."""

    name: str
    codes: Tensor  # int64 [P, Q], P a multiple of the model's semantic_rate_ratio
    semantic: Tensor  # int64 [P / r]
    text: str | None = None  # its transcript, if known: then the text-to-semantic model continues it


@dataclass
class DecodingOptions:
    steps: list[int] | None = None  # SoundStorm iterations per level (default [16, 1, ...])
    temperature: float = 1.0  # SoundStorm sampling
    t2s_temperature: float = 0.8  # text-to-semantic sampling
    t2s_top_k: int | None = 50
    guidance_scale: float = 1.0
    seed: int = 0


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
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.codec, self.semantic, self.t2s = codec, semantic, t2s
        self.soundstorm = soundstorm.to(self.device).eval()
        if t2s is not None:
            t2s.to(self.device).eval()
        self.voices_dir = voices_dir
        config = soundstorm.config
        check_codec_matches(codec, config)
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
        self.timing = Timing()

    @classmethod
    def from_folder(cls, path: str | Path, device: str | torch.device = "cpu") -> SpeechPipeline:
        path = Path(path)
        missing = [name for name in ("codec", "semantic", "soundstorm") if not (path / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} lacks {', '.join(missing)}: a models folder holds codec/, semantic/, "
                                    "soundstorm/ (and t2s/, voices/); recipes/demo builds one")
        t2s = TextToSemantic.from_pretrained(path / "t2s") if (path / "t2s").is_dir() else None
        from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer  # any kind: content, mfcc, hubert

        return cls(load_codec(f"soundstream:{path / 'codec'}"), load_kmeans_tokenizer(path / "semantic"),
                   SoundStorm.from_pretrained(path / "soundstorm"), t2s,
                   path / "voices" if (path / "voices").is_dir() else None, device)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def ratio(self) -> int:
        return self.soundstorm.config.semantic_rate_ratio

    # ------------------------------------------------------------------ inputs

    def voice(self, source: str | Path | np.ndarray, name: str | None = None, text: str | None = None,
              max_seconds: float = PROMPT_SECONDS, sample_rate: int | None = None) -> Voice:
        """A voice prompt from an audio file (or float32 [N] at sample_rate): its first max_seconds."""
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
        with torch.inference_mode():
            codes = self.codec.encode(tensor)[0]  # [T, Q]
            semantic, lengths = self.semantic.tokenize(tensor)
        frames = (codes.shape[0] // self.ratio) * self.ratio  # whole semantic tokens only
        tokens = semantic[0, : int(lengths[0])]
        frames = min(frames, len(tokens) * self.ratio)
        return Voice(label, codes[:frames].long(), tokens[: frames // self.ratio].long(), text)

    def default_voice(self) -> Voice:
        if self.voices_dir is None or not (self.voices_dir / "default.wav").is_file():
            raise FileNotFoundError("no bundled default voice: give a voice prompt (--voice prompt.wav)")
        return self.voice(self.voices_dir / "default.wav", name="default")

    # ------------------------------------------------------------------ stages

    def _generator(self, options: DecodingOptions, salt: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(options.seed * 1_000_003 + salt)

    def text_to_semantic(self, text: str, voice: Voice | None = None, context: tuple[str, Tensor] | None = None,
                         options: DecodingOptions | None = None, salt: int = 0) -> Tensor:
        """Semantic tokens [S] of text. A `context` (previous turn's text and tokens) is continued
        after a <turn> marker; else a voice with a transcript is continued after a word break."""
        if self.t2s is None:
            raise ValueError("this models folder has no text-to-semantic model (t2s/): give semantic tokens instead")
        options = options or DecodingOptions()
        ids = self.symbols.encode(text)
        prompt: Tensor | None = None
        if context is not None:
            ids = self.symbols.join(self.symbols.encode(context[0]), ids, turn=True)
            prompt = context[1]
        elif voice is not None and voice.text:
            ids = self.symbols.join(self.symbols.encode(voice.text), ids, turn=False)
            prompt = voice.semantic
        start = time.perf_counter()
        tokens = self.t2s.generate(torch.tensor(ids, device=self.device), prompt_semantic=prompt,
                                   temperature=options.t2s_temperature, top_k=options.t2s_top_k,
                                   generator=self._generator(options, salt))
        self.timing.stages["text_to_semantic"] = self.timing.stages.get("text_to_semantic", 0.0) + time.perf_counter() - start
        if len(tokens) == 0:
            raise ValueError(f"the text-to-semantic model produced no tokens for {text!r}")
        return tokens

    def acoustic(self, semantic: Tensor, voice: Voice, options: DecodingOptions | None = None, salt: int = 0,
                 callback: Callable[..., None] | None = None) -> Tensor:
        """Codec tokens [T, Q] of the new semantic tokens [S] (T = S * r), in voice's voice."""
        options = options or DecodingOptions()
        V = self.soundstorm.config.semantic_vocab_size
        semantic = semantic.to(self.device).long()
        if semantic.dim() != 1 or len(semantic) == 0 or int(semantic.min()) < 0 or int(semantic.max()) >= V:
            raise ValueError(f"semantic tokens must be a non-empty int64 [S] in [0, {V})")
        conditioning = torch.cat([voice.semantic.to(self.device), semantic])[None]  # [1, P / r + S]
        prompt = voice.codes.to(self.device)[None]  # [1, P, Q]
        start = time.perf_counter()
        codes = self.soundstorm.generate(semantic_tokens=conditioning, prompt_codes=prompt, steps=options.steps,
                                         temperature=options.temperature, guidance_scale=options.guidance_scale,
                                         generator=self._generator(options, salt), callback=callback)
        self.timing.stages["soundstorm"] = self.timing.stages.get("soundstorm", 0.0) + time.perf_counter() - start
        return codes[0, prompt.shape[1] :]  # [T, Q]

    def decode(self, codes: Tensor) -> np.ndarray:
        start = time.perf_counter()
        with torch.inference_mode():
            wav = self.codec.decode(codes[None].cpu())[0, 0].float().numpy()
        self.timing.stages["codec"] = self.timing.stages.get("codec", 0.0) + time.perf_counter() - start
        return wav

    # ------------------------------------------------------------------ tasks

    def _timed(self, run: Callable[[], np.ndarray]) -> np.ndarray:
        self.timing = Timing()
        start = time.perf_counter()
        wav = run()
        self.timing.seconds = time.perf_counter() - start
        self.timing.audio_seconds = len(wav) / self.sample_rate
        return wav

    def speak(self, semantic: Tensor, voice: Voice, options: DecodingOptions | None = None) -> np.ndarray:
        """Audio float32 [N] of semantic tokens [S] in voice's voice."""
        return self._timed(lambda: self.decode(self.acoustic(semantic, voice, options)))

    def tts(self, text: str, voice: Voice, options: DecodingOptions | None = None) -> np.ndarray:
        """Audio of text, sentence by sentence (an over-long text is split, never refused)."""
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("the text is empty: nothing to say")

        def run() -> np.ndarray:
            pieces = []
            for i, sentence in enumerate(sentences):
                semantic = self.text_to_semantic(sentence, voice, options=options, salt=2 * i)
                pieces.append(self.decode(self.acoustic(semantic, voice, options, salt=2 * i + 1)))
            return np.concatenate(pieces)

        return self._timed(run)

    def dialogue(self, turns: Sequence[tuple[str, str]], voices: dict[str, Voice],
                 options: DecodingOptions | None = None) -> np.ndarray:
        """Audio of a dialogue: turns (speaker, text), each in its speaker's voice."""
        if not turns:
            raise ValueError("the dialogue has no turns")
        unknown = sorted({speaker for speaker, _ in turns} - set(voices))
        if unknown:
            raise ValueError(f"no voice for speaker(s) {', '.join(unknown)}: give --voice NAME=prompt.wav for each")
        pause = np.zeros(round(TURN_PAUSE_SECONDS * self.sample_rate), dtype=np.float32)

        def run() -> np.ndarray:
            pieces, context, previous = [], None, None
            for i, (speaker, text) in enumerate(turns):
                turn_context = context if previous is not None and previous != speaker else None
                semantic = self.text_to_semantic(text, voices[speaker], context=turn_context, options=options, salt=2 * i)
                pieces += [self.decode(self.acoustic(semantic, voices[speaker], options, salt=2 * i + 1)), pause]
                context, previous = (text, semantic), speaker
            return np.concatenate(pieces[:-1])

        return self._timed(run)

    def resynth(self, source: str | Path, voice: Voice, options: DecodingOptions | None = None) -> np.ndarray:
        """The words of `source` (its semantic tokens) in voice's voice: voice conversion."""
        wav, _ = load_audio(source, sample_rate=self.semantic.sample_rate, resample=True, downmix=True)
        if len(wav) / self.semantic.sample_rate < MIN_PROMPT_SECONDS / 5:
            raise ValueError(f"{source} is too short to resynthesize")
        with torch.inference_mode():
            tokens, lengths = self.semantic.tokenize(torch.from_numpy(wav)[None, None])
        return self.speak(tokens[0, : int(lengths[0])], voice, options)


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
