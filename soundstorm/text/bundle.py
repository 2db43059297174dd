"""`soundstorm bundle`: gather trained models into a models folder, small enough to commit.

    soundstorm bundle --codec runs/codec/model --semantic runs/semantic-km512 \
        --soundstorm runs/soundstorm/model --t2s runs/t2s/model \
        --voices data/synth/manifest.jsonl --out models/demo [--decoder runs/codec-sem2/model]

Weights are stored in fp16 (halving the size; they load into float32 models), the tokenizer
folder is copied as it is (its encoder is already fp16, and its k-means was fitted on those
weights), and one voice prompt per training speaker of the manifest (its first utterance of at
least 3 s in the train split) is copied to voices/, with flite-slt's as voices/default.wav.
With --decoder, a SoundStream with the codec's encoder and codebooks whose decoder was trained
for SoundStorm's tokens goes to decoder/: the pipeline decodes its output with it and keeps the
codec for everything else. The pipeline's compatibility checks run on the result, and the folder is written atomically
(a README.md and a decoding.json already in --out are kept: re-measure the latter, with
`soundstorm eval-tts --steps ...`, when the models change).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from soundstorm.atomic import atomic_folder
from soundstorm.data.audio import load_audio, save_audio
from soundstorm.data.manifest import read_manifest

DEFAULT_VOICE = "flite-slt"


def bundle(codec: Path, semantic: Path, soundstorm: Path, t2s: Path | None, voices_manifest: Path | None,
           out: Path, default_voice: str = DEFAULT_VOICE, decoder: Path | None = None) -> Path:
    from soundstorm.codecs.soundstream import SoundStream
    from soundstorm.model.soundstorm import SoundStorm
    from soundstorm.text.model import TextToSemantic
    from soundstorm.text.pipeline import DECODING_FILE, SpeechPipeline

    with atomic_folder(out) as staging:
        SoundStream.from_pretrained(codec).save_pretrained(staging / "codec", dtype=torch.float16)
        if decoder is not None:
            SoundStream.from_pretrained(decoder).save_pretrained(staging / "decoder", dtype=torch.float16)
        shutil.copytree(semantic, staging / "semantic")
        SoundStorm.from_pretrained(soundstorm).save_pretrained(staging / "soundstorm", dtype=torch.float16)
        if t2s is not None:
            TextToSemantic.from_pretrained(t2s).save_pretrained(staging / "t2s", dtype=torch.float16)
        if voices_manifest is not None:
            (staging / "voices").mkdir()
            chosen: set[str] = set()
            for entry in read_manifest(voices_manifest):
                if entry.split == "train" and entry.duration >= 3.0 and entry.speaker not in chosen:
                    wav, rate = load_audio(entry.audio_path(voices_manifest.parent))
                    save_audio(staging / "voices" / f"{entry.speaker}.wav", wav, rate)
                    chosen.add(entry.speaker)
            if default_voice in chosen:
                shutil.copy(staging / "voices" / f"{default_voice}.wav", staging / "voices" / "default.wav")
        for kept in ("README.md", DECODING_FILE):  # the folder's description and measured decoding defaults
            if (out / kept).is_file():
                shutil.copy(out / kept, staging / kept)
        SpeechPipeline.from_folder(staging)  # every pair that meets agrees
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", type=Path, required=True, help="SoundStream folder")
    parser.add_argument("--semantic", type=Path, required=True, help="semantic tokenizer folder (semantic kmeans)")
    parser.add_argument("--soundstorm", type=Path, required=True, help="SoundStorm folder")
    parser.add_argument("--t2s", type=Path, help="text-to-semantic folder")
    parser.add_argument("--decoder", type=Path, help="a SoundStream behind the codec's encoder and codebooks that "
                        "decodes SoundStorm's tokens (decoder/; recipes/demo/codec-semantic.toml)")
    parser.add_argument("--voices", type=Path, help="a manifest to take one voice prompt per training speaker from")
    parser.add_argument("--default-voice", default=DEFAULT_VOICE, help=f"speaker of voices/default.wav ({DEFAULT_VOICE})")
    parser.add_argument("--out", type=Path, required=True, help="the models folder to write")


def run(args: argparse.Namespace) -> int:
    out = bundle(args.codec, args.semantic, args.soundstorm, args.t2s, args.voices, args.out, args.default_voice,
                 args.decoder)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"models folder at {out}: {size:.1f} MB")
    return 0
