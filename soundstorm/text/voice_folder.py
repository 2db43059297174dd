"""A voice folder: a voice prompt, and a codec whose decoder learned that voice (`soundstorm enroll`).

    voices/ann/
        prompt.wav   the voice prompt that SoundStorm continues (3 s of the voice)
        codec/       our SoundStream (config.json + model.safetensors): the models folder's own
                     encoder and codebooks, its decoder fine-tuned on all the enrolment audio
                     (soundstorm/codecs/soundstream/adapt.py); `soundstream:voices/ann/codec`
                     anywhere a codec spec is taken
        soundstorm/  the models folder's SoundStorm fine-tuned on the voice's tokens
                     (soundstorm/model/adapt.py; optional): config.json + model.safetensors, or
                     low-rank adapters, adapter.json + adapter.safetensors (soundstorm/model/lora.py),
                     which belong to the models folder's SoundStorm (its weights' digest)
        voice.json   what it was made from, and the digest of the weights that make tokens

`--voice voices/ann` then works wherever a voice prompt file does. The tokens are the models
folder's (nothing but the decoder changed), so the folder belongs to that codec: a pipeline whose
codec's encoder or codebooks differ refuses it, naming both digests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundstorm.atomic import atomic_folder
from soundstorm.codecs.soundstream.model import SoundStream
from soundstorm.data.audio import save_audio
from soundstorm.model.lora import ADAPTER_CONFIG, LoRAAdapter
from soundstorm.model.soundstorm import SoundStorm

VOICE_FILE = "voice.json"
PROMPT_FILE = "prompt.wav"
CODEC_FOLDER = "codec"
SOUNDSTORM_FOLDER = "soundstorm"
FORMAT_VERSION = 2  # 2: soundstorm/ may hold adapters; version 1 folders are read as they are
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class VoiceFolder:
    path: Path
    encoder_weights: str  # SoundStreamCodec.encoder_digest of the codec it was enrolled with
    info: dict[str, Any]  # voice.json as written

    @property
    def prompt(self) -> Path:
        return self.path / PROMPT_FILE

    @property
    def codec(self) -> Path:
        return self.path / CODEC_FOLDER

    @property
    def soundstorm(self) -> Path:
        """A SoundStorm fine-tuned on the voice, or adapters for one (optional: absent when
        enrolment left SoundStorm alone)."""
        return self.path / SOUNDSTORM_FOLDER

    @property
    def soundstorm_is_adapter(self) -> bool:
        return (self.soundstorm / ADAPTER_CONFIG).is_file()


def read_voice_folder(path: str | Path) -> VoiceFolder:
    path = Path(path)
    meta = path / VOICE_FILE
    if not meta.is_file():
        raise FileNotFoundError(f"{path} is a folder but not a voice folder: it has no {VOICE_FILE} "
                                "(`soundstorm enroll` writes one; a voice prompt is an audio file)")
    try:
        info = json.loads(meta.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{meta} is not valid JSON ({error}): enroll the voice again") from None
    if not isinstance(info, dict) or info.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{meta} has format_version {info.get('format_version') if isinstance(info, dict) else None!r}; "
                         f"this version of soundstorm reads {' and '.join(map(str, READABLE_VERSIONS))}: "
                         "enroll the voice again")
    folder = VoiceFolder(path, str(info.get("encoder_weights", "")), info)
    for needed in (folder.prompt, folder.codec / "config.json", folder.codec / "model.safetensors"):
        if not needed.exists():
            raise FileNotFoundError(f"the voice folder {path} lacks {needed.relative_to(path)}: enroll the voice again")
    return folder


def write_voice_folder(path: str | Path, prompt: np.ndarray, sample_rate: int, model: SoundStream,
                       info: dict[str, Any], soundstorm: SoundStorm | LoRAAdapter | None = None) -> VoiceFolder:
    """Write the folder atomically (an existing one survives until the new one is complete).

    prompt: float32 [N] at sample_rate; model: the codec with its adapted decoder; info: what
    voice.json records besides the format version (it must hold "encoder_weights"); soundstorm:
    a SoundStorm adapted to the voice, or adapters for the models folder's, stored in float16
    (tokens come from float32 logits)."""
    if "encoder_weights" not in info:
        raise ValueError("a voice folder records the digest of its codec's encoder weights (info['encoder_weights'])")
    path = Path(path)
    with atomic_folder(path) as staging:
        save_audio(staging / PROMPT_FILE, prompt, sample_rate)
        model.save_pretrained(staging / CODEC_FOLDER, dtype=_storage_dtype(model))
        if isinstance(soundstorm, LoRAAdapter):
            soundstorm.save(staging / SOUNDSTORM_FOLDER, dtype=torch.float16)
        elif soundstorm is not None:
            soundstorm.save_pretrained(staging / SOUNDSTORM_FOLDER, dtype=torch.float16)
        (staging / VOICE_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **info}, indent=2) + "\n")
    return read_voice_folder(path)


def _storage_dtype(model: SoundStream) -> torch.dtype | None:
    """float16 when the weights that make tokens survive it unchanged (a codec stored in float16,
    like the bundled one: half the size, the same digest); else as they are, so that no token moves."""
    for name, tensor in model.state_dict().items():
        if not name.startswith("decoder.") and tensor.is_floating_point():
            if not torch.equal(tensor.float(), tensor.half().float()):
                return None
    return torch.float16
