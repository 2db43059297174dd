"""`soundstorm enroll`: a voice folder from tens of seconds of one speaker.

    soundstorm enroll ann1.wav ann2.wav ann3.wav -o voices/ann      # 30-60 s of the voice in all
    soundstorm tts "Hello there." --voice voices/ann -o hello.wav
    soundstorm dialogue script.txt --voice A=voices/ann --voice B=bob.wav -o dialogue.wav

SoundStorm continues a 3 s voice prompt, and on a voice it never heard both of its ends fall
short. The codec's decoder renders such a voice poorly (docs/codec.md): `--adapt-decoder`
fine-tunes a copy on the 3 s prompt; enrolment does it once on all the audio given, which teaches
it much more and overfits less (on the held-out flite-rms, 3 / 10 / 30 / 60 s took PESQ from 1.47
to 1.79 / 1.93 / 2.30 / 2.52, Opus at 6 kbit/s 2.18; 60 s of a training voice gained 0.07 where
3 s cost 0.15). And SoundStorm drifts towards the voices it was trained on: enrolment also
fine-tunes a copy of it on the same audio's tokens (soundstorm/model/adapt.py; on flite-rms its
continuation's similarity to the prompt went from 0.60 to 0.83, docs/eval-demo). In text to
speech the held-out voice's similarity went from 0.53 to 0.84, but the fine-tuned SoundStorm
reads the text-to-semantic model's tokens less well (CER 0.38 -> 0.52; the semantic tokens carry
the speaker, and that model writes the training voices' kind: docs/enrolment.md). So each copy
keeps half of its fine-tune's change (`--blend`, `--soundstorm-blend`, default 0.5;
soundstorm/model/blend.py): 0.53 -> 0.75 with no measured loss of words.
`--soundstorm-steps 0` keeps the models folder's SoundStorm and enrols the decoder alone.
SoundStorm's change is learned as rank-16 adapters (soundstorm/model/lora.py), stored alone
(1.5 MB instead of a 26 MB copy) and merged at load: in text to speech they equal the whole
model's fine-tune (docs/enrolment.md); `--soundstorm-rank 0` fine-tunes every weight instead.

The folder holds the prompt (the first 3 s of the first file, or --prompt), the codec with the
adapted decoder, SoundStorm's adapters (or its adapted copy) and voice.json (voice_folder.py). On two CPU threads,
about 0.25 s a decoder step (the default is about 3 a second of audio, as measured) and 1.3 s a
SoundStorm step (100).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from soundstorm.codecs import Codec
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
from soundstorm.codecs.soundstream.codec import SoundStreamCodec
from soundstorm.data.audio import load_audio, rms_db
from soundstorm.eval.codec_metrics import mel_distance
from soundstorm.model.adapt import SoundStormAdaptation, adapt_soundstorm, soundstorm_adapter
from soundstorm.model.lora import LoRAAdapter
from soundstorm.model.soundstorm import SoundStorm
from soundstorm.text.commands import models_folder
from soundstorm.text.pipeline import MIN_PROMPT_SECONDS, PROMPT_SECONDS, SILENT_DB, SpeechPipeline
from soundstorm.text.voice_folder import VoiceFolder, write_voice_folder

MIN_STEPS, MAX_STEPS = 20, 300
# Enrolment keeps half of each fine-tune's change (soundstorm/model/blend.py): on the held-out
# flite-rms in text to speech, similarity 0.53 -> 0.75 at no measured cost in words, where the whole
# change gave 0.84 and cost CER +0.14 (docs/enrolment.md). 1: all of it.
BLEND = 0.5
LORA_LR = 1e-3  # low-rank adapters learn at a higher rate than the whole model (measured: docs/enrolment.md)
# Rank-16 adapters with the blend equal the whole model's enrolment in text to speech (held-out
# flite-rms, paired: similarity +0.006 +- 0.004, CER -0.007 +- 0.021) in a folder of 21 MB, not 45.
RANK = 16
SOUNDSTORM_ENROLMENT = SoundStormAdaptation(lr=LORA_LR, rank=RANK, blend=BLEND)  # `soundstorm enroll`'s default


def default_steps(seconds: float) -> int:
    """About 3 steps a second of audio, within [20, 300]: the step counts docs/codec.md measured
    (3 s: 20, 10 s: 50, 30 s: 100, 60 s: 200)."""
    return int(min(MAX_STEPS, max(MIN_STEPS, round(10 * seconds / 3))))


def enroll_voice(pipeline: SpeechPipeline, audio: Sequence[str | Path], out: str | Path, steps: int | None = None,
                 prompt: str | Path | None = None,
                 soundstorm: SoundStormAdaptation = SOUNDSTORM_ENROLMENT, blend: float = BLEND,
                 progress: bool = False) -> VoiceFolder:
    """Adapt the pipeline codec's decoder (`steps`, default: default_steps) and a copy of its
    SoundStorm (`soundstorm`; steps 0 leaves it out, a rank stores low-rank adapters) to the voice
    of the `audio` files, and write the voice folder `out` (atomically: an existing one survives
    until the new one is complete)."""
    if not audio:
        raise ValueError("enrolment needs at least one audio file of the voice")
    clips: list[np.ndarray] = []
    for path in audio:
        wav, _ = load_audio(path, sample_rate=pipeline.sample_rate, resample=True, downmix=True)
        if len(wav) < MIN_PROMPT_SECONDS * pipeline.sample_rate:
            raise ValueError(f"{path} lasts {len(wav) / pipeline.sample_rate:.2f} s; each enrolment file needs at "
                             f"least {MIN_PROMPT_SECONDS} s of speech")
        if not np.isfinite(wav).all():
            raise ValueError(f"{path} holds NaN or infinite samples")
        if rms_db(wav) < SILENT_DB:
            raise ValueError(f"{path} is silent ({rms_db(wav):.0f} dBFS): give recordings of the voice's speech")
        clips.append(wav)
    seconds = sum(len(c) for c in clips) / pipeline.sample_rate
    steps = default_steps(seconds) if steps is None else steps
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    prompt_wav = (clips[0] if prompt is None else
                  load_audio(prompt, sample_rate=pipeline.sample_rate, resample=True, downmix=True)[0])
    prompt_wav = prompt_wav[: round(PROMPT_SECONDS * pipeline.sample_rate)]
    pipeline.voice(prompt_wav, name="prompt", sample_rate=pipeline.sample_rate)  # the checks a voice prompt gets

    tensors = [torch.from_numpy(np.ascontiguousarray(c))[None, None] for c in clips]
    if progress:
        print(f"enrolling {seconds:.1f} s of audio: {steps} decoder steps, {soundstorm.steps} SoundStorm steps "
              "(a few minutes on a CPU)", file=sys.stderr)
    enrolment = adapt_to_voice(pipeline, tensors, steps, soundstorm, blend)
    adapted, levels = enrolment.codec, enrolment.levels
    before, after = _fit(pipeline.decoder, adapted, tensors, levels)
    if progress:
        print(f"adapted the decoder on {seconds:.1f} s of audio in {enrolment.decoder_seconds:.1f} s ({steps} steps); "
              f"log-mel distance on that audio {before:.3f} -> {after:.3f}", file=sys.stderr)
    soundstorm_info = None
    if enrolment.soundstorm is not None:
        soundstorm_info = {"steps": soundstorm.steps, "levels": levels, "lr": soundstorm.lr, "rank": soundstorm.rank,
                           "blend": soundstorm.blend, "seconds_taken": round(enrolment.soundstorm_seconds, 1)}
        if progress:
            what = f"rank-{soundstorm.rank} adapters of " if soundstorm.rank else ""
            print(f"adapted {what}SoundStorm on the same audio in {enrolment.soundstorm_seconds:.1f} s "
                  f"({soundstorm.steps} steps)", file=sys.stderr)
    info = {
        "encoder_weights": adapted.encoder_digest,
        "codec": adapted.name,
        "audio": [{"file": Path(p).name, "seconds": round(len(c) / pipeline.sample_rate, 3)} for p, c in zip(audio, clips)],
        "seconds": round(seconds, 3),
        "prompt": "first file" if prompt is None else Path(prompt).name,
        "adaptation": {"steps": steps, "levels": levels, "blend": blend,
                       "seconds_taken": round(enrolment.decoder_seconds, 1)},
        "soundstorm_adaptation": soundstorm_info,
        # On the enrolment audio itself: how well the decoder learned it, not how it generalizes.
        "mel_distance": {"before": round(before, 4), "after": round(after, 4)},
    }
    return write_voice_folder(out, prompt_wav, pipeline.sample_rate, adapted.model, info,
                              enrolment.soundstorm_adapter or enrolment.soundstorm)


@dataclass
class Enrolment:
    codec: SoundStreamCodec  # the pipeline's codec with its decoder adapted to the voice
    soundstorm: SoundStorm | None  # the pipeline's SoundStorm adapted to it, or None
    soundstorm_adapter: LoRAAdapter | None  # what `soundstorm` adds to the pipeline's, with a rank
    levels: int  # the levels both learned from: those SoundStorm decodes by default
    decoder_seconds: float
    soundstorm_seconds: float


def adapt_to_voice(pipeline: SpeechPipeline, clips: Sequence[torch.Tensor], steps: int,
                   soundstorm: SoundStormAdaptation = SOUNDSTORM_ENROLMENT,
                   blend: float = BLEND) -> Enrolment:
    """The pipeline's decoder and SoundStorm adapted to one voice's clips [1, 1, N] (copies;
    soundstorm.steps 0 leaves SoundStorm out), on the levels SoundStorm decodes; the decoder keeps
    `blend` of its fine-tune's change (soundstorm/model/blend.py)."""
    codec = pipeline.decoder  # the codec that decodes SoundStorm's tokens (a models folder's decoder/ where it has one)
    if not isinstance(codec, SoundStreamCodec):
        raise ValueError(f"enrolment adapts our SoundStream codec's decoder; this models folder's codec is {codec.name}")
    levels = len(pipeline.default_steps)
    # (codes [T, Q], semantic [S]) of each clip, where SoundStorm or the decoder learns from them: a
    # decoder that reads semantic tokens learns the voice beside the clips' own, as it will decode
    # SoundStorm's output beside the text's.
    examples = [pipeline.tokens(clip) for clip in clips] if soundstorm.steps or codec.semantic_vocab_size else []
    semantic = [tokens for _, tokens in examples] if codec.semantic_vocab_size else None
    if codec.reads_reference:
        # A decoder that reads a voice reference learns the voice beside the long-term spectrum of
        # all the audio given, as it will decode it beside the voice's prompt's.
        codec = codec.with_reference(torch.cat(list(clips), dim=-1))
    start = time.perf_counter()
    adapted = codec.adapted_to(clips, DecoderAdaptation(steps=steps, levels=levels, blend=blend), semantic)
    decoder_seconds = time.perf_counter() - start
    model, adapter = None, None
    start = time.perf_counter()
    if soundstorm.steps:
        options = replace(soundstorm, train_levels=levels)
        with torch.inference_mode(False), torch.enable_grad():
            if options.rank is not None:
                adapter = soundstorm_adapter(pipeline.soundstorm, examples, options)
                model = adapter.merged_into(pipeline.soundstorm).eval()
            else:
                model = adapt_soundstorm(pipeline.soundstorm, examples, options)
        model = model.to(pipeline.device)
    return Enrolment(adapted, model, adapter, levels, decoder_seconds, time.perf_counter() - start)


def _fit(original: Codec, adapted: Codec, clips: Sequence[torch.Tensor], levels: int) -> tuple[float, float]:
    """Mean log-mel distance of the clips [1, 1, N] to their decoding from `levels` levels by the
    original decoder and by the adapted one (the same tokens: encoded once)."""
    distances = []
    with torch.inference_mode():
        for clip in clips:
            codes = original.encode(clip)[..., :levels]
            reference = clip[0, 0].numpy()
            distances.append([mel_distance(reference, codec.decode(codes)[0, 0, : clip.shape[-1]].numpy(),
                                           original.sample_rate) for codec in (original, adapted)])
    before, after = np.mean(distances, axis=0)
    return float(before), float(after)


def add_soundstorm_adaptation_arguments(parser: argparse.ArgumentParser, prefix: str) -> None:
    """--PREFIX-steps, --PREFIX-lr and --PREFIX-rank: how SoundStorm is adapted to a voice
    (`soundstorm enroll` takes prefix "soundstorm", the evaluations "enroll-soundstorm")."""
    defaults = SoundStormAdaptation()
    parser.add_argument(f"--{prefix}-steps", type=int, default=defaults.steps,
                        help=f"steps adapting SoundStorm to the voice (default {defaults.steps}, "
                             "measured on 60 s; 0: keep the models folder's SoundStorm)")
    parser.add_argument(f"--{prefix}-lr", type=float, help=f"its learning rate (default: the adapters' {LORA_LR:g}, "
                        f"or with rank 0 the whole model's {defaults.lr:g})")
    parser.add_argument(f"--{prefix}-rank", type=int, default=RANK,
                        help=f"the rank of the low-rank adapters SoundStorm learns the voice with "
                             f"(soundstorm/model/lora.py; default {RANK}: 1.5 MB stored, merged at load); 0: fine-tune "
                             "every weight (a 26 MB SoundStorm copy in the voice folder)")
    parser.add_argument(f"--{prefix}-blend", type=float, default=BLEND,
                        help=f"the share of SoundStorm's fine-tune kept, W0 + blend (W1 - W0) (default {BLEND:g}; "
                             "1: all of it, more voice for fewer words: docs/enrolment.md)")


def soundstorm_adaptation(args: argparse.Namespace, prefix: str) -> SoundStormAdaptation:
    """The SoundStormAdaptation that add_soundstorm_adaptation_arguments' flags ask for."""
    dest = prefix.replace("-", "_")
    steps, lr, rank, blend = (getattr(args, f"{dest}_{name}") for name in ("steps", "lr", "rank", "blend"))
    if not 0.0 <= blend <= 1.0:
        raise SystemExit(f"--{prefix}-blend must be in [0, 1], got {blend}")
    if steps < 0:
        raise SystemExit(f"--{prefix}-steps must be at least 0, got {steps}")
    if rank < 0:
        raise SystemExit(f"--{prefix}-rank must be at least 0 (0: every weight), got {rank}")
    rank = rank or None
    if lr is not None and not lr > 0:
        raise SystemExit(f"--{prefix}-lr must be positive, got {lr}")
    default_lr = SoundStormAdaptation().lr if rank is None else LORA_LR
    return SoundStormAdaptation(steps=steps, lr=default_lr if lr is None else lr, rank=rank, blend=blend)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", type=Path, help="audio files of one voice (30-60 s in all is best)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the voice folder to write")
    parser.add_argument("--models", type=Path, help="models folder whose decoder and SoundStorm to adapt (default: the bundled models/demo)")
    parser.add_argument("--steps", type=int, help=f"decoder adaptation steps (default: about 3 a second of audio, "
                        f"{MIN_STEPS} to {MAX_STEPS})")
    parser.add_argument("--blend", type=float, default=BLEND,
                        help=f"the share of the decoder's fine-tune kept, W0 + blend (W1 - W0) (default {BLEND:g}; "
                             "1: all of it, more voice for fewer words)")
    add_soundstorm_adaptation_arguments(parser, "soundstorm")
    parser.add_argument("--prompt", type=Path, help="the voice prompt's audio (default: the first 3 s of the first file)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = SpeechPipeline.from_folder(models_folder(args.models))
    if not 0.0 <= args.blend <= 1.0:
        raise ValueError(f"--blend must be in [0, 1], got {args.blend}")
    folder = enroll_voice(pipeline, args.audio, args.output, steps=args.steps, prompt=args.prompt, blend=args.blend,
                          soundstorm=soundstorm_adaptation(args, "soundstorm"), progress=True)
    print(f"wrote the voice folder {folder.path}: use it as --voice {folder.path}")
    return 0
