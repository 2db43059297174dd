"""Speaker similarity: cosine similarity of resemblyzer's d-vectors (weights in its wheel).

    similarity = SpeakerSimilarity()
    similarity(prompt_wav, generated_wav, sample_rate)      # in [-1, 1]; same voice ~0.8 and up

The paper's speaker similarity compares the prompt with the generated continuation; the
acoustic consistency compares the prompt with later crops of the output (does the voice
drift?). Both use this.
"""

from __future__ import annotations

import numpy as np

from soundstorm.data.audio import resample_audio

ENCODER_SAMPLE_RATE = 16000
MIN_SECONDS = 0.25  # the least audio a d-vector is made from


class SpeakerSimilarity:
    def __init__(self, device: str = "cpu") -> None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as error:
            raise ImportError("speaker similarity needs resemblyzer: make eval-deps") from error
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """An L2-normalised d-vector [256] of float32 wav [N]."""
        from resemblyzer import preprocess_wav

        if wav.ndim != 1 or len(wav) < int(MIN_SECONDS * sample_rate):
            raise ValueError(f"speaker similarity needs at least {MIN_SECONDS:g} s of mono audio, got shape {wav.shape}")
        audio = resample_audio(wav.astype(np.float32), sample_rate, ENCODER_SAMPLE_RATE)
        processed = preprocess_wav(audio, source_sr=ENCODER_SAMPLE_RATE)  # volume norm, VAD trims silence
        if len(processed) < ENCODER_SAMPLE_RATE // 4:
            processed = audio  # almost all silence by the VAD: embed what there is
        return self.encoder.embed_utterance(processed)

    def __call__(self, a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
        return float(np.dot(self.embed(a, sample_rate), self.embed(b, sample_rate)))
