"""Real human voices for SoundStorm's training: Asterisk's recorded prompts, decoded to WAV.

Debian's asterisk-core-sounds-{en,es,fr,it,ru}-g722 hold about 2 h of studio recordings of
four professional speakers (Allison Smith in English and Spanish, June Wallack, Carlo, and a
Russian voice; CC-BY-SA-3.0, /usr/share/doc/asterisk-core-sounds-*/copyright) as G.722, a 16 kHz
wideband codec (about 7 kHz of audio bandwidth) that neither soundfile nor sox decodes. This
writes each prompt as 16 kHz 16-bit WAV, one folder per recording, for `corpus scan`:

    make asterisk-voices       # the Debian packages (and the g722 wheel, a dev extra)
    python recipes/demo/asterisk_voices.py data/asterisk-raw
    soundstorm corpus scan data/asterisk-raw --layout plain --out data/asterisk-raw/manifest.jsonl --min-seconds 0.3
    soundstorm corpus join data/asterisk-raw/manifest.jsonl data/asterisk --seconds 10

The prompts are 0.5-7 s (median 1.4 s); `corpus join` packs each voice's into 10 s utterances so
that SoundStorm sees a prompt and its continuation in one voice. Needs the `g722` wheel (sippy's
libg722 binding; in the dev extra). Tried as more voices for the bundled SoundStorm and codec, and
not kept: both lost a little on the held-out voice (docs/voices.md, docs/codec.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from soundstorm.atomic import atomic_path

SOUNDS = Path("/usr/share/asterisk/sounds")
SAMPLE_RATE = 16_000
BIT_RATE = 64_000  # Asterisk's G.722 files: mode 1, 8 bits per 16 kHz sample pair


def decode_g722(data: bytes) -> np.ndarray:
    """int16 [N] samples at 16 kHz of a raw G.722 stream."""
    import G722  # the `g722` wheel; imported here so that --help works without it

    return np.asarray(G722.G722(SAMPLE_RATE, BIT_RATE).decode(data), dtype=np.int16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write <voice>/<prompt>.wav into")
    parser.add_argument("--sounds", type=Path, default=SOUNDS, help=f"default {SOUNDS}")
    args = parser.parse_args(argv)
    voices = sorted(p for p in args.sounds.glob("*") if p.is_dir()) if args.sounds.is_dir() else []
    if not voices:
        print(f"error: no voice folders in {args.sounds}: install asterisk-core-sounds-en-g722 (and -es, -fr, -it, "
              f"-ru) with `make asterisk-voices`", file=sys.stderr)
        return 1
    written = 0
    for voice in voices:
        for source in sorted(voice.rglob("*.g722")):
            # Prompts in subfolders (digits/, letters/) keep their folder in the name: digits/1 and 1 differ.
            name = "-".join(source.relative_to(voice).with_suffix("").parts)
            target = args.out / f"asterisk-{voice.name}" / f"{name}.wav"
            if target.exists():
                continue
            samples = decode_g722(source.read_bytes())
            if samples.size == 0:
                print(f"skipped {source}: empty", file=sys.stderr)
                continue
            with atomic_path(target) as tmp:  # the decoder's int16 samples as they are
                sf.write(tmp, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            written += 1
    print(f"{written} prompts written under {args.out} from {len(voices)} voices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
