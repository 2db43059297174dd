"""A models folder of tiny random models (SoundStream codec, MFCC k-means tokenizer, SoundStorm,
text-to-semantic) with real flite voice prompts, for the TTS and server tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.semantic.extractors import MfccFeatures
from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite missing: make system-deps")


def flite(path: Path, text: str, voice: str = "slt") -> Path:
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return path


def write_tiny_models(root: Path, text_model: bool = True) -> Path:
    """Q 4, K 64 at 50 Hz; 16 semantic tokens at 25 Hz; voices default (slt) and awb."""
    torch.manual_seed(0)
    SoundStream(SoundStreamConfig.preset("tiny")).save_pretrained(root / "codec")
    KMeansTokenizer(MfccFeatures(), torch.randn(16, 39)).save(root / "semantic")
    soundstorm = SoundStorm(SoundStormConfig(codebook_size=64, num_quantizers=4, semantic_vocab_size=16,
                                             semantic_rate_ratio=2, dim=32, depth=1, heads=2))
    with torch.no_grad():  # peaked predictions, like a trained model's: float noise cannot reorder them
        soundstorm.head_weight.mul_(40.0)
    soundstorm.save_pretrained(root / "soundstorm")
    if text_model:
        TextToSemantic(TextToSemanticConfig(semantic_vocab_size=16, semantic_rate=25.0, dim=32, depth=1, heads=2)) \
            .save_pretrained(root / "t2s")
    (root / "voices").mkdir()
    flite(root / "voices" / "default.wav", "This is the default voice of the demo.")
    flite(root / "voices" / "awb.wav", "Another voice says a few words here.", voice="awb")
    return root
