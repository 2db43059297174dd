"""Offline speech recognition for WER and CER: pocketsphinx's US-English model, from its wheel.

    asr = Recognizer()
    hypothesis = asr.transcribe(wav, sample_rate)            # "the words it heard"
    scores = error_rates(references, hypotheses)             # WER and CER over a corpus (jiwer)

pocketsphinx is a small GMM recogniser: its absolute WER is high, but the same recogniser on
the original audio, its codec resynthesis and generated audio makes the relations meaningful.
It is meaningful on flite's and festival's voices, not on espeak-ng's formant voices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstorm.data.align import normalize_words
from soundstorm.data.audio import resample_audio

ASR_SAMPLE_RATE = 16000


class Recognizer:
    def __init__(self) -> None:
        import pocketsphinx

        # The wheel's default model: en-us acoustic model, its trigram LM and the CMU dictionary.
        self.decoder = pocketsphinx.Decoder(samprate=float(ASR_SAMPLE_RATE), loglevel="FATAL")

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """The words heard in float32 wav [N], lower case."""
        if wav.ndim != 1 or len(wav) == 0:
            raise ValueError(f"expected mono audio [N] with samples, got shape {wav.shape}")
        pcm = (np.clip(resample_audio(wav.astype(np.float32), sample_rate, ASR_SAMPLE_RATE), -1, 1) * 32767).astype("<i2")
        # The feature front end adapts across utterances (noise estimate, cepstral mean): without
        # a reset, what one utterance is heard as depends on the audio decoded before it, so
        # two evaluations of the same audio in another order disagree (seen: the synthesizers'
        # own WER moved between two eval-tts runs). Reset, every utterance is heard as if first.
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        words = hypothesis.hypstr.split() if hypothesis is not None else []
        return " ".join(w for w in words if not w.startswith(("<", "[", "+")))


@dataclass(frozen=True)
class ErrorRates:
    wer: float
    cer: float
    words: int  # reference words


def error_rates(references: list[str], hypotheses: list[str]) -> ErrorRates:
    """Corpus WER and CER (jiwer) after the same normalisation of both sides (lower case,
    no punctuation). An empty hypothesis counts all its reference words as deleted."""
    import jiwer

    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need as many hypotheses as references (>= 1), got {len(references)} and {len(hypotheses)}")
    refs = [" ".join(normalize_words(r)) for r in references]
    hyps = [" ".join(normalize_words(h)) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        raise ValueError("every reference transcript is empty")
    refs, hyps = [refs[i] for i in keep], [hyps[i] for i in keep]
    return ErrorRates(wer=float(jiwer.wer(refs, hyps)), cer=float(jiwer.cer(refs, hyps)),
                      words=sum(len(r.split()) for r in refs))
