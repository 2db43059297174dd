"""The evaluation's metrics on known cases (pocketsphinx WER on flite speech, resemblyzer on the
same and other voices), and `soundstorm eval` end to end on tiny models and a tiny corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
from soundstorm.cli import main
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.eval.asr import Recognizer, error_rates
from soundstorm.eval.speaker import SpeakerSimilarity
from soundstorm.eval.speech_eval import choose
from soundstorm.eval.tts_eval import bucket, family
from soundstorm.semantic.extractors import MfccFeatures
from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite missing: make system-deps")
SENTENCE = "The quick brown fox jumps over the lazy dog."


def speak(tmp_path: Path, text: str, voice: str) -> np.ndarray:
    path = tmp_path / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return load_audio(path, sample_rate=16000, resample=True)[0]


def test_metrics_on_known_cases(tmp_path: Path) -> None:
    slt = speak(tmp_path, SENTENCE, "slt")
    heard = Recognizer().transcribe(slt, 16000)
    assert error_rates([SENTENCE], [heard]).wer <= 0.2
    assert error_rates([SENTENCE], ["a completely different thing"]).wer > 0.8
    assert error_rates(["One two three."], [""]).wer == 1.0  # nothing heard: every word deleted
    similarity = SpeakerSimilarity()
    other_sentence = speak(tmp_path, "Colorless green ideas sleep furiously tonight.", "slt")
    other_voice = speak(tmp_path, SENTENCE, "awb")
    assert similarity(slt, slt, 16000) == pytest.approx(1.0, abs=1e-5)
    assert similarity(slt, other_sentence, 16000) > similarity(slt, other_voice, 16000) + 0.2
    assert family("flite-slt") == "flite" and bucket(4.9) == "short" and bucket(5.0) == "mid" and bucket(9) == "long"


def test_what_the_recognizer_hears_does_not_depend_on_what_it_heard_before(tmp_path: Path) -> None:
    """Its front end adapts to the audio (noise estimate, cepstral mean); loud noise before an
    utterance changed what pocketsphinx heard in it until the state was reset per utterance."""
    speech = speak(tmp_path, "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
                   "slt")
    noise = 0.3 * np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32)
    recognizer = Recognizer()
    recognizer.transcribe(noise, 16000)
    assert recognizer.transcribe(speech, 16000) == Recognizer().transcribe(speech, 16000)


def test_eval_end_to_end_on_tiny_models(tmp_path: Path) -> None:
    if not Path("/usr/share/games/fortunes").is_dir():
        pytest.skip("fortunes missing: make system-deps")
    from soundstorm.data.synth import synthesize_corpus

    manifest = synthesize_corpus(tmp_path / "corpus", hours=0.006, voices=("flite-slt", "flite-awb"), held_out=(),
                                 sources=("fortunes",), seed=5, workers=1, valid_fraction=0.0, test_fraction=0.99,
                                 progress=False)
    torch.manual_seed(0)
    SoundStream(SoundStreamConfig.preset("tiny")).save_pretrained(tmp_path / "codec")
    KMeansTokenizer(MfccFeatures(), torch.randn(16, 39)).save(tmp_path / "semantic")
    SoundStorm(SoundStormConfig(codebook_size=64, num_quantizers=4, semantic_vocab_size=16, dim=32, depth=1,
                                heads=2)).save_pretrained(tmp_path / "soundstorm")
    ARAcousticModel(ARAcousticConfig(codebook_size=64, num_quantizers=4, coarse_levels=2, semantic_vocab_size=16,
                                     dim=32, depth=1, heads=2)).save_pretrained(tmp_path / "ar")
    assert main(["eval", "--manifest", str(manifest), "--soundstorm", str(tmp_path / "soundstorm"),
                 "--ar", str(tmp_path / "ar"), "--codec", f"soundstream:{tmp_path / 'codec'}",
                 "--semantic", f"mfcc:{tmp_path / 'semantic'}", "--splits", "test", "--min-seconds", "1.5",
                 "--prompt-seconds", "0.6", "--max-utterances", "3", "--steps", "2", "1", "1", "1",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    systems = {r["system"] for r in result["rows"]}
    assert systems == {"original", "codec resynthesis", "SoundStorm", "SoundStorm unprompted", "AR baseline",
                       "AR baseline unprompted"}
    overall = {r["system"]: r for r in result["rows"] if r["family"] == "all" and r["bucket"] == "all"}
    assert overall["original"]["wer"] < 0.5  # flite speech: pocketsphinx hears most words
    assert overall["SoundStorm unprompted"]["speaker_similarity"] is None  # no prompt, no voice to keep
    assert 0.5 < overall["original"]["speaker_similarity"] <= 1.0  # the same voice before and after 0.6 s
    assert len(result["utterances"]) == overall["original"]["utterances"] <= 3
    assert "| SoundStorm | all | all |" in (tmp_path / "out" / "eval.md").read_text()

    # Each speaker's audio decoded by a decoder enrolled on 1 s of its utterances not evaluated.
    assert main(["eval", "--manifest", str(manifest), "--soundstorm", str(tmp_path / "soundstorm"),
                 "--codec", f"soundstream:{tmp_path / 'codec'}", "--semantic", f"mfcc:{tmp_path / 'semantic'}",
                 "--splits", "test", "--min-seconds", "1.5", "--prompt-seconds", "0.6", "--max-utterances", "2",
                 "--steps", "1", "1", "1", "1", "--no-unprompted", "--enroll-seconds", "1", "--soft-temperature", "0.5",
                 "--out", str(tmp_path / "enrolled"), "--quiet"]) == 0
    enrolled = json.loads((tmp_path / "enrolled" / "eval.json").read_text())
    assert enrolled["enroll_seconds"] == 1.0 and enrolled["enroll_soundstorm"]["steps"] == 100
    assert enrolled["soft_temperature"] == 0.5 and result["soft_temperature"] == 0.0
    assert {r["system"] for r in enrolled["rows"]} == {"original", "codec resynthesis", "SoundStorm"}


def test_eval_tts_end_to_end_on_a_tiny_models_folder(tmp_path: Path) -> None:
    if not Path("/usr/share/games/fortunes").is_dir():
        pytest.skip("fortunes missing: make system-deps")
    from soundstorm.data.synth import synthesize_corpus
    from tests.speech_models import write_tiny_models

    manifest = synthesize_corpus(tmp_path / "corpus", hours=0.012, voices=("flite-slt", "flite-kal", "flite-awb"),
                                 held_out=("flite-awb",), sources=("fortunes",), seed=5, workers=1, valid_fraction=0.0,
                                 test_fraction=0.99, progress=False)
    models = write_tiny_models(tmp_path / "models")
    assert main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--per-group", "2",
                 "--prompt-seconds", "1.0", "--dialogue-seconds", "3", "--steps", "2", "1", "1", "1",
                 "--temperature", "0.7", "--t2s-eos-threshold", "0.5", "--adapt-decoder", "1",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "tts_eval.json").read_text())
    groups = {r["group"]: r for r in result["rows"]}
    assert set(groups) == {"training voices", "held-out voices"}
    assert groups["held-out voices"]["speakers"] == ["flite-awb"]
    assert groups["training voices"]["reference_wer"] < 0.5  # flite speech: pocketsphinx hears most words
    assert 0.5 < groups["training voices"]["reference_similarity"] <= 1.0  # another utterance, the same voice
    assert all(0 <= r["rtf"] and r["utterances"] <= 2 for r in result["rows"])
    assert result["dialogue"]["turns"] >= 1 and result["dialogue"]["audio_seconds"] > 0
    # the dialogue's words: the synthesizer's own recordings are heard (flite), ours scored too
    assert result["dialogue"]["reference_wer"] < 0.5 and 0 <= result["dialogue"]["cer"]
    assert result["dialogue"]["turn_context"] == "none"
    assert result["options"]["steps"] == [2, 1, 1, 1] and result["options"]["temperature"] == 0.7
    assert result["options"]["t2s_eos_threshold"] == 0.5 and result["adapt_decoder"] == 1
    markdown = (tmp_path / "out" / "tts_eval.md").read_text()
    assert "| training voices (" in markdown and "temperature 0.7" in markdown and "EOS threshold 0.5" in markdown

    assert all(abs(u["prompt_seconds"] - 1.0) <= 0.1 for u in result["utterances"])  # to a semantic token

    # A prompt longer than the pipeline's default 3 s is given whole, not cut to 3 s.
    assert main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--per-group", "1",
                 "--prompt-seconds", "4.0", "--dialogue-seconds", "1", "--steps", "1", "1", "1", "1",
                 "--groups", "held-out", "--out", str(tmp_path / "long-prompt"), "--quiet"]) == 0
    long_prompt = json.loads((tmp_path / "long-prompt" / "tts_eval.json").read_text())
    assert long_prompt["utterances"] and all(abs(u["prompt_seconds"] - 4.0) <= 0.1 for u in long_prompt["utterances"])

    # Enrolled decoders and SoundStorm adapters instead: one per speaker, on 2 s of its
    # utterances that are not evaluated; the held-out voice alone.
    assert main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--per-group", "1",
                 "--prompt-seconds", "1.0", "--dialogue-seconds", "1", "--steps", "1", "1", "1", "1",
                 "--enroll-seconds", "2", "--enroll-soundstorm-steps", "2", "--enroll-soundstorm-rank", "2",
                 "--groups", "held-out", "--out", str(tmp_path / "enrolled"), "--quiet"]) == 0
    enrolled = json.loads((tmp_path / "enrolled" / "tts_eval.json").read_text())
    assert enrolled["enroll_seconds"] == 2.0 and [r["group"] for r in enrolled["rows"]] == ["held-out voices"]
    assert enrolled["enroll_soundstorm"]["rank"] == 2 and enrolled["enroll_soundstorm"]["lr"] == 1e-3

    # The text-to-semantic stage taken out: SoundStorm speaks the semantic tokens of the
    # synthesizer's audio, so each output lasts as long as that audio (to a semantic token).
    assert main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--per-group", "2",
                 "--prompt-seconds", "1.0", "--dialogue-seconds", "1", "--steps", "1", "1", "1", "1",
                 "--semantic-from", "audio", "--groups", "training", "--out", str(tmp_path / "ceiling"),
                 "--quiet"]) == 0
    ceiling = json.loads((tmp_path / "ceiling" / "tts_eval.json").read_text())
    durations = {e.id: e.duration for e in read_manifest(manifest)}
    assert ceiling["semantic_from"] == "audio" and ceiling["utterances"]
    assert all(u["phone_errors"] is None for u in ceiling["utterances"])  # MFCC tokens carry no phones
    for spoken in ceiling["utterances"]:
        assert abs(spoken["audio_seconds"] - durations[spoken["id"]]) <= 0.05, spoken["id"]
    assert "semantic tokens of the synthesizer's audio" in (tmp_path / "ceiling" / "tts_eval.md").read_text()

    # Tokens of a phone classifier: the phone error rates of the synthesizer's tokens, of the
    # chosen one of 2 text-to-semantic candidates, and of the tokens heard in our audio.
    from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig
    from soundstorm.semantic.extractors import ContentFeatures
    from soundstorm.text.phonemes import CMU_PHONES

    phones = ("sil", *(p.lower() for p in CMU_PHONES), "ax")
    encoder = ContentEncoder(ContentEncoderConfig(phones=phones, dim=32, depth=1, heads=2, feature_dim=8))
    shutil.rmtree(models / "semantic")
    KMeansTokenizer(ContentFeatures(encoder, "posteriors"), torch.rand(16, len(phones)) ** 8).save(models / "semantic")
    assert main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--per-group", "1",
                 "--prompt-seconds", "1.0", "--dialogue-seconds", "1", "--steps", "1", "1", "1", "1",
                 "--t2s-candidates", "2", "--groups", "training", "--out", str(tmp_path / "phones"), "--quiet"]) == 0
    scored = json.loads((tmp_path / "phones" / "tts_eval.json").read_text())
    assert scored["options"]["t2s_candidates"] == 2
    row = scored["rows"][0]
    for name in ("reference_phone_error_rate", "phone_error_rate", "audio_phone_error_rate"):
        assert 0.0 <= row[name] < 10.0
    spoken = scored["utterances"][0]
    assert spoken["phones"] > 0 and row["phone_error_rate"] == spoken["phone_errors"] / spoken["phones"]
    with pytest.raises(SystemExit, match="give one"):
        main(["eval-tts", "--models", str(models), "--manifest", str(manifest), "--enroll-seconds", "2",
              "--adapt-decoder", "1", "--quiet"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["flite-rms", "flite-slt", "festival-kal_diphone", "espeak-en"]),
                          st.sampled_from(["train", "test", "test-unseen-speaker"]), st.floats(0.5, 6.0)),
                min_size=1, max_size=40), st.integers(1, 5))
def test_eval_tts_prompts_are_other_utterances_of_the_speaker_long_enough_and_random_ones_keep_the_sentences(
        rows: list[tuple[str, str, float]], per_group: int) -> None:
    entries = [ManifestEntry(f"u{i}", f"u{i}.wav", duration, 16000, speaker, text="Words.", split=split)
               for i, (speaker, split, duration) in enumerate(rows)]
    first = choose(entries, ("flite", "festival"), per_group, 3.0)
    drawn = choose(entries, ("flite", "festival"), per_group, 3.0, "random")
    assert [s.id for s, _ in first] == [s.id for s, _ in drawn]  # the same sentences: runs pair up
    for sentence, prompt in first + drawn:
        assert family(sentence.speaker) in ("flite", "festival") and sentence.split in ("test", "test-unseen-speaker")
        assert prompt.speaker == sentence.speaker and prompt.id != sentence.id and prompt.duration >= 3.0
    for speaker in {s.speaker for s, _ in first}:  # "first": one prompt a speaker, where it is not the sentence
        prompts = [p.id for s, p in first if s.speaker == speaker]
        assert len(set(prompts)) <= 2
    with pytest.raises(ValueError, match="prompt_choice must be one of first, random"):
        choose(entries, ("flite",), 1, 3.0, "best")
