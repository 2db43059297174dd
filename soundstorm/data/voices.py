"""Synthetic voices from Debian main: flite, festival and espeak-ng, behind one interface.

A voice is named by a speaker id `<engine>-<engine's voice name>`:

    flite-slt  flite-kal16  flite-awb  flite-rms  flite-kal        (package flite)
    festival-kal_diphone  festival-ked_diphone                     (festvox-kallpc16k, festvox-kdlpc16k)
    festival-cmu_us_slt_arctic_hts                                 (festvox-us-slt-hts)
    espeak-en-us  espeak-en-us+f3  espeak-en+m7  espeak-en+klatt    (espeak-ng)
    espeak-mb-us1  espeak-mb-de1-en  espeak-mb-fr4-en              (espeak-ng, mbrola, mbrola-us1 ...)

The `espeak-mb-*` voices are MBROLA diphone voices, each one real speaker's diphones, spoken
through espeak-ng's front end: `mb-us1` is American English, `mb-de1-en` a German voice reading
English through espeak-ng's phone mapping. mbrola is in Debian's contrib and its voices in
non-free (`make mbrola-voices` adds those components and installs them).

`synthesize(voice, texts, workdir)` runs the engine and returns each text's audio at the
engine's own rate with its phone timings where the engine prints them: flite with `-psdur`
(phone end times), festival from the utterance's Segment relation (one batch process per
call, not one per sentence, since festival takes ~0.15 s to start). espeak-ng prints no timings.

Quirks worth knowing (espeak-ng 1.51, flite 2.2): both engines silently fall back to a default
voice when a name is unknown, and espeak-ng ignores variants on `en-gb` (`en-gb+f3` sounds
exactly like `en-gb`); `check_voice` detects both, so use `en+f3`-style names.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundstorm.data.manifest import Phone

ENGINES = ("flite", "festival", "espeak")

# Debian packages that provide each engine's program and each non-builtin voice.
ENGINE_PACKAGES = {"flite": "flite", "festival": "festival", "espeak": "espeak-ng"}
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"),)

# Typical speaking rates (characters of text per second of audio), measured on the default
# voices over fortunes/bible/wordnet sentences; used only to plan how many sentences reach a
# target duration before any audio of a voice exists.
CHARS_PER_SECOND = {"flite": 15.0, "festival": 14.0, "espeak": 16.0}

# Seconds allowed per sentence before an engine is considered hung.
_TIMEOUT_PER_SENTENCE = 30.0


class VoiceUnavailable(RuntimeError):
    """An engine or voice is not installed (the message names the Debian package), or a
    voice name is one the engine would silently replace by another voice."""


@dataclass(frozen=True)
class Voice:
    engine: str  # one of ENGINES
    name: str  # the engine's own voice name: "slt", "kal_diphone", "en-us+f3"

    @property
    def speaker(self) -> str:
        """The speaker id used in manifests and folder names, e.g. "flite-slt"."""
        return f"{self.engine}-{self.name}"

    @property
    def package(self) -> str:
        """The Debian package(s) to install for this voice."""
        if self.engine == "festival":
            voice_package = FESTIVAL_VOICE_PACKAGES.get(self.name, "the festvox-* package of this voice "
                                                        "(apt-cache search festvox)")
            return f"festival and {voice_package}"
        if self.engine == "espeak" and self.name.startswith("mb-"):
            # mb-de1-en speaks with the voice of mbrola-de1.
            return f"espeak-ng, mbrola and mbrola-{self.name.split('-')[1]} (contrib and non-free: make mbrola-voices)"
        return ENGINE_PACKAGES[self.engine]


@dataclass(frozen=True)
class Synthesized:
    audio: np.ndarray  # float32 [N], mono, in [-1, 1]
    sample_rate: int  # Hz, the engine's own rate
    phones: tuple[Phone, ...] | None  # time-ordered and within the audio; None: engine gives none


def parse_voice(speaker: str) -> Voice:
    """The Voice of a speaker id such as "flite-slt" or "espeak-en-us+f3"."""
    engine, sep, name = speaker.partition("-")
    if not sep or not name or engine not in ENGINES:
        raise ValueError(f"bad voice {speaker!r}: expected <engine>-<voice> with engine one of "
                         f"{', '.join(ENGINES)}, e.g. flite-slt, festival-kal_diphone, espeak-en-us+f3")
    return Voice(engine, name)


def _program(voice: Voice) -> str:
    program = {"flite": "flite", "festival": "festival", "espeak": "espeak-ng"}[voice.engine]
    path = shutil.which(program)
    if path is None:
        raise VoiceUnavailable(f"voice {voice.speaker} needs the `{program}` program: "
                               f"install the Debian package(s) {voice.package}")
    return path


@functools.lru_cache(maxsize=None)
def _flite_voices(program: str) -> tuple[str, ...]:
    out = subprocess.run([program, "-lv"], capture_output=True, text=True, check=False).stdout
    return tuple(out.partition(":")[2].split())


def check_voice(voice: Voice) -> None:
    """Raise VoiceUnavailable unless `voice` is installed and is really the voice it names."""
    program = _program(voice)
    if voice.engine == "flite":
        available = _flite_voices(program)
        if voice.name not in available:
            # flite would silently speak with its default voice instead.
            raise VoiceUnavailable(f"flite has no voice {voice.name!r} (it has {', '.join(available)}); "
                                   f"install the Debian package flite or pick one of those")
    elif voice.engine == "festival":
        if not any((root / lang / voice.name).is_dir() for root in FESTIVAL_VOICE_DIRS if root.is_dir()
                   for lang in (p.name for p in root.iterdir())):
            raise VoiceUnavailable(f"festival has no voice {voice.name!r}: "
                                   f"install the Debian package(s) {voice.package}")
    else:
        base, plus, variant = voice.name.partition("+")
        audio = _espeak_digest(program, voice.name)
        if audio is None and voice.name.startswith("mb-"):
            raise VoiceUnavailable(f"espeak-ng cannot speak the MBROLA voice {voice.name!r}: install the Debian "
                                   f"packages {voice.package}; see `espeak-ng --voices=mb`")
        if audio is None:
            raise VoiceUnavailable(f"espeak-ng has no voice {voice.name!r}: install the Debian package espeak-ng, "
                                   f"see `espeak-ng --voices=en` and `espeak-ng --voices=variant`")
        if plus and audio == _espeak_digest(program, base):
            # espeak-ng ignores unknown variants, and every variant on some languages (en-gb).
            raise VoiceUnavailable(f"espeak-ng voice {voice.name!r} sounds exactly like {base!r}: the variant "
                                   f"{variant!r} is unknown (see `espeak-ng --voices=variant`) or ignored on "
                                   f"{base!r} (espeak-ng 1.51 ignores all variants on en-gb); put variants on en "
                                   f"or en-us, e.g. espeak-en+f3")


@functools.lru_cache(maxsize=None)
def _espeak_digest(program: str, name: str) -> str | None:
    """A hash of a short test phrase in voice `name`, or None when espeak-ng rejects the name."""
    with tempfile.TemporaryDirectory(prefix="soundstorm-espeak-") as tmp:
        out = Path(tmp) / "probe.wav"
        result = subprocess.run([program, "-v", name, "-w", str(out), "Testing one voice."],
                                capture_output=True, check=False, timeout=_TIMEOUT_PER_SENTENCE)
        if result.returncode != 0 or not out.is_file():
            return None
        return hashlib.sha256(out.read_bytes()).hexdigest()


def synthesize(voice: Voice, texts: Sequence[str], workdir: Path) -> list[Synthesized | None]:
    """Speak each of `texts` with `voice`; scratch files go to `workdir` (which must exist).

    Returns one item per text: its audio at the engine's rate, or None where the engine failed
    on that text (the caller decides what to do; a failure on one text never loses the others).
    """
    if voice.engine == "flite":
        return [_flite(voice, text, workdir / f"{i}.wav") for i, text in enumerate(texts)]
    if voice.engine == "festival":
        return _festival(voice, texts, workdir)
    return [_espeak(voice, text, workdir / f"{i}.wav") for i, text in enumerate(texts)]


def _read(path: Path) -> tuple[np.ndarray, int] | None:
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return None
    if audio.shape[0] == 0:
        return None
    return audio.mean(axis=1), int(rate)  # engines write mono; mean() makes sure


def _finish_phones(ends: Sequence[tuple[str, float]], duration: float) -> tuple[Phone, ...] | None:
    """Phones from (name, end time) pairs: each starts where the previous ended; end times are
    clipped to `duration` (engines round their last end a few ms past the samples they write)."""
    phones: list[Phone] = []
    start = 0.0
    for name, end in ends:
        end = min(max(end, start), duration)
        phones.append(Phone(name, start, end))
        start = end
    return tuple(phones) or None


def _flite(voice: Voice, text: str, out: Path) -> Synthesized | None:
    result = subprocess.run([_program(voice), "-voice", voice.name, "-psdur", "-t", text, "-o", str(out)],
                            capture_output=True, text=True, check=False, timeout=_TIMEOUT_PER_SENTENCE)
    read = _read(out) if result.returncode == 0 else None
    if read is None:
        return None
    audio, rate = read
    # -psdur prints "pau:0.164 hh:0.255 ...": each phone with its end time in seconds.
    ends = []
    for token in result.stdout.split():
        name, sep, end = token.rpartition(":")
        if sep and name:
            try:
                ends.append((name, float(end)))
            except ValueError:
                pass
    return Synthesized(audio, rate, _finish_phones(ends, len(audio) / rate))


def _espeak(voice: Voice, text: str, out: Path) -> Synthesized | None:
    result = subprocess.run([_program(voice), "-v", voice.name, "-w", str(out), text],
                            capture_output=True, check=False, timeout=_TIMEOUT_PER_SENTENCE)
    read = _read(out) if result.returncode == 0 else None
    if read is None:
        return None
    audio, rate = read
    return Synthesized(audio, rate, None)


# Saves an utterance's Segment relation as "name end" lines.
_FESTIVAL_PRELUDE = """\
(define (soundstorm_save_segs utt path)
  (let ((fd (fopen path "w")))
    (mapcar (lambda (seg) (format fd "%s %f\\n" (item.name seg) (item.feat seg "end")))
            (utt.relation.items utt 'Segment))
    (fclose fd)))
"""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival(voice: Voice, texts: Sequence[str], workdir: Path) -> list[Synthesized | None]:
    lines = [_FESTIVAL_PRELUDE, f"(voice_{voice.name})"]
    for i, text in enumerate(texts):
        wav, segs = workdir / f"{i}.wav", workdir / f"{i}.segs"
        # unwind-protect: an error on one sentence is reported and the script goes on.
        lines.append(f"(unwind-protect (begin (set! utt (SynthText {_scheme_string(text)})) "
                     f"(utt.save.wave utt {_scheme_string(str(wav))} 'riff) "
                     f"(soundstorm_save_segs utt {_scheme_string(str(segs))})) "
                     f"(format t \"soundstorm: failed {i}\\n\"))")
    script = workdir / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    try:
        subprocess.run([_program(voice), "-b", str(script)], capture_output=True, check=False, cwd=workdir,
                       timeout=30.0 + _TIMEOUT_PER_SENTENCE * len(texts))
    except subprocess.TimeoutExpired:
        pass  # whatever was written before the hang is still good
    results: list[Synthesized | None] = []
    for i in range(len(texts)):
        wav, segs = workdir / f"{i}.wav", workdir / f"{i}.segs"
        read = _read(wav) if segs.is_file() else None  # the segs file is written last
        if read is None:
            results.append(None)
            continue
        audio, rate = read
        ends = []
        for line in segs.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                ends.append((parts[0], float(parts[1])))
        results.append(Synthesized(audio, rate, _finish_phones(ends, len(audio) / rate)))
    return results
