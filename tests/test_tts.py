"""Text to speech, dialogue, resynthesis and token-file generation end to end, on a models folder
of tiny random models (a SoundStream codec, an MFCC k-means tokenizer, SoundStorm, the
text-to-semantic model) and real flite voice prompts; and each kind of bad input."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.cli import main
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig
from soundstorm.text.phonemes import Phonemizer, UnknownWordError
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline, Trace, parse_dialogue
from soundstorm.text.symbols import TextSymbols
from tests.speech_models import flite, needs_flite, write_tiny_models

pytestmark = needs_flite


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


def test_phonemes_and_symbols() -> None:
    assert Phonemizer().phonemize("Cats, dogs!") == ["K", "AE", "T", "S", ",", " ", "D", "AA", "G", "Z", "."]
    symbols = TextSymbols()
    ids = symbols.encode("Hello there.")
    assert symbols.join(ids, ids, turn=True)[len(ids)] == symbols.turn_id
    with pytest.raises(ValueError, match="no words"):
        symbols.encode("... !")
    with pytest.raises(UnknownWordError, match="spell symbols"):
        symbols.encode("50 % off")
    assert TextSymbols("characters").to_symbols("Hi, you.") == ["h", "i", ",", " ", "y", "o", "u", "."]


def test_quotation_marks_are_silent_and_brackets_pause() -> None:
    phonemize = Phonemizer().phonemize
    # A quoted word, a possessive plural and curly quotes say what the bare words say.
    assert phonemize("The 'fair' states' \u201cword\u201d.") == phonemize("The fair states word.")
    assert phonemize("Wait\u2014now\u2026") == phonemize("Wait - now...")
    # A bracket pauses before the next word, once, and never at either end.
    assert phonemize("(Cats) dogs [birds].") == phonemize("Cats, dogs, birds.")
    assert phonemize("Cats (, dogs).") == phonemize("Cats, dogs.")
    with pytest.raises(UnknownWordError, match="'#'"):
        phonemize("Cats # dogs.")
    characters = TextSymbols("characters").to_symbols
    assert characters("(Hi) \"you\".") == characters("Hi, you.")
    assert characters("it\u2019s") == ["i", "t", "'", "s"]  # the apostrophe is a letter among characters


def test_dialogue_script_format() -> None:
    script = "# a test\nA: Hello there.\n\nB: Hi.\nHow are you?\nA: Fine."
    assert parse_dialogue(script) == [("A", "Hello there."), ("B", "Hi. How are you?"), ("A", "Fine.")]
    with pytest.raises(ValueError, match="NAME: text"):
        parse_dialogue("no speaker here")


def test_tts_dialogue_resynth_and_generate(models: Path, tmp_path: Path) -> None:
    out = tmp_path / "tts.wav"
    assert main(["tts", "Hello there. This is a second sentence.", "--models", str(models), "-o", str(out),
                 "--spectrogram", str(tmp_path / "tts.png"), "--steps", "2", "1", "1", "1",
                 "--t2s-eos-threshold", "0.3"]) == 0
    wav, rate = sf.read(out)
    assert rate == 16000 and len(wav) > 0 and np.isfinite(wav).all()
    assert (tmp_path / "tts.png").read_bytes()[:4] == b"\x89PNG"

    voice_b = flite(tmp_path / "b.wav", "Another speaker says a few words here.", voice="awb")
    script = tmp_path / "script.txt"
    script.write_text("A: Good morning.\nB: Good morning to you.\nA: Shall we begin?\n")
    assert main(["dialogue", str(script), "--models", str(models), "--voice", f"A={models / 'voices' / 'default.wav'}",
                 "--voice", f"B={voice_b}", "-o", str(tmp_path / "dialogue.wav")]) == 0
    assert sf.info(tmp_path / "dialogue.wav").duration > 0.5  # three turns and two pauses
    assert main(["dialogue", str(script), "--models", str(models), "--turn-context", "previous",
                 "-o", str(tmp_path / "chained.wav")]) == 0
    with pytest.raises(SystemExit):
        main(["dialogue", str(script), "--models", str(models), "--turn-context", "next", "-o", str(tmp_path / "x.wav")])
    with pytest.raises(ValueError, match="turn_context must be one of none, previous"):
        DecodingOptions(turn_context="next")

    assert main(["resynth", str(voice_b), "--models", str(models), "-o", str(tmp_path / "resynth.wav")]) == 0
    source = sf.info(voice_b).duration
    assert abs(sf.info(tmp_path / "resynth.wav").duration - source) < 0.1  # the words keep their timing

    tokens = tmp_path / "tokens.txt"
    tokens.write_text(" ".join(str(t) for t in range(16)) * 2)
    np.save(tmp_path / "tokens.npy", np.arange(10) % 16)
    assert main(["generate", str(tmp_path / "tokens.npy"), "--models", str(models), "-o", str(tmp_path / "g.wav")]) == 0
    assert sf.info(tmp_path / "g.wav").frames == 10 * 2 * 320  # 10 tokens at 25 Hz = 20 frames at 50 Hz


def test_a_prompt_keeps_its_tokens_and_decoding_is_seeded(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    assert voice.codes.shape[0] == 2 * voice.semantic.shape[0] <= 150  # at most 3 s, whole semantic tokens
    semantic = torch.arange(12) % 16
    first, second = pipeline.speak(semantic, voice), pipeline.speak(semantic, voice)
    assert np.array_equal(first, second) and len(first) == 24 * 320


def test_bad_input_gets_clear_errors(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tts", "Hello.", "--models", str(models), "-o", str(tmp_path / "x.wav"), "--t2s-eos-threshold", "1.5"])
    assert "--t2s-eos-threshold: expected a number in [0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    # Errors found past argument parsing: one line that says what was expected, no traceback.
    assert main(["tts", "Hello.", "--models", str(models), "-o", str(tmp_path / "x.wav"), "--guidance-scale", "2", "1"]) == 2
    assert capsys.readouterr().err == ("soundstorm tts: error: guidance_scale must be >= 0 (1 = no guidance): one number, "
                                       "or one per level decoded (4 levels); got [2.0, 1.0]\n")
    assert main(["tts", "Hello.", "--models", str(models), "-o", str(tmp_path / "x.wav"), "--soft-temperature", "-1"]) == 2
    assert capsys.readouterr().err == ("soundstorm tts: error: soft_temperature must be a number >= 0 (0: decode the "
                                       "tokens themselves), got -1.0\n")
    assert main(["tts", "Hello.", "--models", str(tmp_path / "absent"), "-o", str(tmp_path / "x.wav")]) == 2
    assert "lacks codec, semantic, soundstorm" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    with pytest.raises(ValueError, match="empty"):
        pipeline.tts("   ", voice)
    with pytest.raises(ValueError, match="no words"):
        pipeline.tts("?!", voice)
    with pytest.raises(ValueError, match="no voice for speaker"):
        pipeline.dialogue([("A", "Hi."), ("C", "Hello.")], {"A": voice})
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(1600, dtype=np.float32) + 0.1, 16000)
    with pytest.raises(ValueError, match="at least 0.5 s"):
        pipeline.voice(short)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        pipeline.voice(silent)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    with pytest.raises(ValueError):
        pipeline.voice(not_audio)
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        pipeline.speak(torch.tensor([3, 99]), voice)
    with pytest.raises(FileNotFoundError, match="lacks codec, semantic, soundstorm"):
        SpeechPipeline.from_folder(tmp_path)


def test_mismatched_models_are_refused(models: Path, tmp_path: Path) -> None:
    mismatched = tmp_path / "models"
    shutil.copytree(models, mismatched)
    shutil.rmtree(mismatched / "t2s")
    TextToSemantic(TextToSemanticConfig(semantic_vocab_size=32, dim=32, depth=1, heads=2)).save_pretrained(mismatched / "t2s")
    with pytest.raises(ValueError, match="makes 32 tokens"):
        SpeechPipeline.from_folder(mismatched)
    shutil.rmtree(mismatched / "soundstorm")
    SoundStorm(SoundStormConfig(codebook_size=1024, num_quantizers=4, semantic_vocab_size=16, dim=32, depth=1,
                                heads=2)).save_pretrained(mismatched / "soundstorm")
    with pytest.raises(ValueError, match="codebook_size differs"):
        SpeechPipeline.from_folder(mismatched)


def test_bundle_and_the_speech_demo(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    from soundstorm.data.manifest import ManifestEntry, write_manifest

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    entries = []
    for speaker, voice in (("flite-slt", "slt"), ("flite-awb", "awb")):
        path = flite(corpus / "audio" / f"{speaker}.wav", "A sentence long enough to be a voice prompt of three seconds.", voice)
        entries.append(ManifestEntry(id=speaker, path=f"audio/{speaker}.wav", duration=sf.info(path).duration,
                                     sample_rate=sf.info(path).samplerate, speaker=speaker, split="train"))
    write_manifest(entries, corpus / "manifest.jsonl")
    out = tmp_path / "bundled"
    assert main(["bundle", "--codec", str(models / "codec"), "--semantic", str(models / "semantic"),
                 "--soundstorm", str(models / "soundstorm"), "--t2s", str(models / "t2s"),
                 "--voices", str(corpus / "manifest.jsonl"), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "voices").iterdir()) == ["default.wav", "flite-awb.wav", "flite-slt.wav"]
    with safe_open(out / "soundstorm" / "model.safetensors", "pt") as weights:
        assert all(weights.get_tensor(k).dtype in (torch.float16, torch.int64, torch.bool) for k in weights.keys())

    monkeypatch.setenv("SOUNDSTORM_MODELS", str(out))
    assert main(["demo", "--out-dir", str(tmp_path / "demo")]) == 0
    assert sf.info(tmp_path / "demo" / "tts.wav").duration > 0 and sf.info(tmp_path / "demo" / "dialogue.wav").duration > 0
    # A rebuild keeps the folder's description and its measured decoding defaults.
    (out / "README.md").write_text("# trained on ...\n")
    (out / "decoding.json").write_text('{"steps": [4, 1, 1, 1]}')
    assert main(["bundle", "--codec", str(models / "codec"), "--semantic", str(models / "semantic"),
                 "--soundstorm", str(models / "soundstorm"), "--out", str(out)]) == 0
    assert (out / "README.md").read_text() == "# trained on ...\n"
    assert SpeechPipeline.from_folder(out).default_steps == [4, 1, 1, 1]
    # --decoder: a decoder of SoundStorm's tokens beside the codec (here the codec's own weights).
    args = ["bundle", "--codec", str(models / "codec"), "--semantic", str(models / "semantic"),
            "--soundstorm", str(models / "soundstorm"), "--out", str(out)]
    assert main([*args, "--decoder", str(models / "codec")]) == 0
    pipeline = SpeechPipeline.from_folder(out)
    assert pipeline.decoder.name.endswith("decoder") and pipeline.codec.name.endswith("codec")
    with safe_open(out / "decoder" / "model.safetensors", "pt") as weights:
        assert all(weights.get_tensor(k).dtype in (torch.float16, torch.int64, torch.bool) for k in weights.keys())
    # One behind other codebooks reads other tokens: refused, and the folder on disk is kept.
    from soundstorm.codecs.soundstream import SoundStream

    SoundStream(SoundStream.from_pretrained(models / "codec").config).save_pretrained(tmp_path / "stranger")
    assert main([*args, "--decoder", str(tmp_path / "stranger")]) != 0
    assert SpeechPipeline.from_folder(out).decoder.name.endswith("decoder")


def test_batched_rendering_equals_each_request_alone_and_traces_the_decoding(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    plans = [pipeline.plan_tts("Good morning. How are you today?", voice, DecodingOptions(seed=1)),
             pipeline.plan_dialogue([("A", "Hello."), ("B", "Hi there, friend.")], {"A": voice, "B": voice},
                                    DecodingOptions(seed=2)),
             pipeline.plan_speak(torch.arange(9) % 16, voice, DecodingOptions(seed=3))]  # each its own seed
    traces = [Trace() for _ in plans]
    together = pipeline.render(plans, max_batch=8, traces=traces)
    for plan, wav, trace in zip(plans, together, traces):
        assert np.array_equal(pipeline.render([plan], max_batch=1)[0], wav)
        grid = trace.reveal_grid()  # [T, Q]
        assert grid.shape == trace.codes.shape == (sum(len(s.semantic) for s in plan.segments) * 2, 4)
        assert int(grid.min()) >= 1 and int(grid.max()) <= len(trace.passes)
        levels = torch.tensor([trace.passes[int(k) - 1].level for k in grid.flatten()]).view(grid.shape)
        assert torch.equal(levels, torch.arange(4).expand_as(levels))  # each token fixed while its level ran
    assert len(traces[0].passes) == 16 + 3  # the default steps, one batch for both sentences


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_is_what_soundstorm_and_text_to_semantic_compute_in(models: Path, precision: str,
                                                                       dtype: torch.dtype) -> None:
    pipeline = SpeechPipeline.from_folder(models, precision=precision)
    seen: dict[str, set[torch.dtype]] = {"soundstorm": set(), "t2s": set()}
    for name, model in (("soundstorm", pipeline.soundstorm), ("t2s", pipeline.t2s)):
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, i, out, name=name: seen[name].add(out.dtype))
    wav = pipeline.tts("Hello there.", pipeline.default_voice(), DecodingOptions(steps=[2, 1, 1, 1]))
    assert seen == {"soundstorm": {dtype}, "t2s": {dtype}}
    assert wav.dtype == np.float32 and np.isfinite(wav).all()  # the codec decodes in float32 either way


def test_auto_precision_keeps_the_text_to_semantic_steps_in_float32_on_a_cpu(models: Path) -> None:
    from soundstorm.precision import bf16_is_fast

    pipeline = SpeechPipeline.from_folder(models, precision="auto")
    assert pipeline.t2s_precision == "fp32"
    assert pipeline.precision == ("bf16" if bf16_is_fast(torch.device("cpu")) else "fp32")


def test_a_models_folder_can_carry_its_measured_decoding_steps(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    assert SpeechPipeline.from_folder(folder).default_steps == [16, 1, 1, 1]  # none given: the paper's
    (folder / "decoding.json").write_text('{"steps": [3, 2, 1, 1]}')
    pipeline = SpeechPipeline.from_folder(folder)
    assert pipeline.default_steps == [3, 2, 1, 1]
    voice = pipeline.default_voice()
    for options, passes in ((DecodingOptions(), 3 + 2 + 1 + 1), (DecodingOptions(steps=[1, 1, 1, 1]), 4)):
        traces = [Trace()]
        pipeline.render([pipeline.plan_tts("Hello there.", voice, options)], traces=traces)
        assert len(traces[0].passes) == passes  # the folder's default, unless the request names steps
    # Guidance too: per level, the first level's passes run a doubled batch, the rest do not.
    (folder / "decoding.json").write_text('{"steps": [3, 1, 1, 1], "guidance_scale": [2, 1, 1, 1]}')
    pipeline = SpeechPipeline.from_folder(folder)
    assert pipeline.default_guidance_scale == [2.0, 1.0, 1.0, 1.0]
    batches: list[int] = []
    pipeline.soundstorm.conformer.register_forward_hook(lambda module, inputs, output: batches.append(output.shape[0]))
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions())])
    assert batches == [2, 2, 2, 1, 1, 1]
    batches.clear()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions(guidance_scale=1.0))])
    assert batches == [1] * 6  # a request's own guidance wins
    # Voice guidance: one more copy of the batch at every pass, the prompt's frames masked in it.
    (folder / "decoding.json").write_text('{"steps": [3, 1, 1, 1], "guidance_scale": [2, 1, 1, 1], "prompt_guidance": 1}')
    pipeline = SpeechPipeline.from_folder(folder)
    pipeline.soundstorm.conformer.register_forward_hook(lambda module, inputs, output: batches.append(output.shape[0]))
    assert pipeline.default_prompt_guidance == 1.0
    batches.clear()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions())])
    assert batches == [3, 3, 3, 2, 2, 2]
    batches.clear()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions(prompt_guidance=0.0))])
    assert batches == [2, 2, 2, 1, 1, 1]
    # Prompt reuse: after one full pass (the prompt's states recorded per kind of level: guided,
    # then unguided), the passes run over the frames after the prompt alone.
    (folder / "decoding.json").write_text('{"steps": [3, 1, 1, 1], "guidance_scale": [2, 1, 1, 1], "prompt_refresh": "once"}')
    pipeline = SpeechPipeline.from_folder(folder)
    assert pipeline.default_prompt_refresh == "once"
    frames: list[int] = []
    conformer = pipeline.soundstorm.conformer
    conformer.register_forward_pre_hook(lambda module, inputs: frames.append(-inputs[0].shape[1]))
    after = conformer.forward_after_prompt
    conformer.forward_after_prompt = lambda x, *rest: (frames.append(x.shape[1]), after(x, *rest))[1]  # type: ignore[method-assign]
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions())])
    prompt_frames = len(voice.codes)
    assert [f < 0 for f in frames] == [True, False, False, True, False, False]  # full, after, after, full, ...
    assert frames[0] == -(prompt_frames + frames[1])
    frames.clear()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions(prompt_refresh="pass"))])
    assert all(f < 0 for f in frames) and len(frames) == 6  # a request's own refresh wins
    with pytest.raises(ValueError, match="prompt_refresh must be one of pass, level, once"):
        DecodingOptions(prompt_refresh="never")
    for bad, message in (('{"steps": [3, 1, 1, 1, 1]}', "1 to 4 positive iteration counts"),
                         ('{"steps": [0, 1, 1, 1]}', "positive"), ('{"steps": []}', "1 to 4 positive"),
                         ('{"stpes": [3, 1, 1, 1]}', "must be JSON like"), ("[8, 1", "must be JSON like"),
                         ('{"steps": 8}', "must be a list"), ('{"guidance_scale": [2, 1]}', "one per level"),
                         ('{"guidance_scale": -1}', "one number >= 0"),
                         ('{"prompt_guidance": -1}', "prompt guidance must be a number >= 0"),
                         ('{"prompt_refresh": "always"}', "prompt refresh must be one of pass, level, once")):
        (folder / "decoding.json").write_text(bad)
        with pytest.raises(ValueError, match=message):
            SpeechPipeline.from_folder(folder)


def test_steps_for_fewer_levels_decode_the_codec_prefix_of_a_full_decoding(models: Path, tmp_path: Path) -> None:
    """A schedule listing the first L levels makes the first L levels of the full decoding (the
    same random streams) and the codec decodes that prefix: the folder's decoding.json can set
    it, and a request's own steps still win."""
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    full_trace, prefix_trace = Trace(), Trace()
    plan = pipeline.plan_tts("Hello there, how are you?", voice, DecodingOptions(seed=4, steps=[3, 1, 1, 1]))  # one segment
    full = pipeline.render([plan], traces=[full_trace])[0]
    plan.options = DecodingOptions(seed=4, steps=[3, 1])
    prefix = pipeline.render([plan], traces=[prefix_trace])[0]
    assert full_trace.codes is not None and prefix_trace.codes is not None
    assert prefix_trace.codes.shape[1] == 2 and torch.equal(prefix_trace.codes, full_trace.codes[:, :2])
    assert prefix_trace.reveal_grid().shape == prefix_trace.codes.shape and len(prefix_trace.passes) == 4
    assert torch.equal(prefix_trace.reveal_grid(), full_trace.reveal_grid()[:, :2])
    with torch.inference_mode():
        expected = pipeline.codec.decode(full_trace.codes[None, :, :2])[0, 0].numpy()
    assert prefix.shape == full.shape and np.allclose(prefix, expected[: len(prefix)], atol=1e-6)
    assert not np.allclose(prefix, full, atol=1e-3)  # the finer levels do change the audio

    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    (folder / "decoding.json").write_text('{"steps": [3, 1], "guidance_scale": [2, 1]}')
    pipeline = SpeechPipeline.from_folder(folder)
    assert pipeline.default_steps == [3, 1] and pipeline.default_guidance_scale == [2.0, 1.0]
    trace = Trace()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions())], traces=[trace])
    assert trace.codes is not None and trace.codes.shape[1] == 2
    batches: list[int] = []
    pipeline.soundstorm.conformer.register_forward_hook(lambda module, inputs, output: batches.append(output.shape[0]))
    trace = Trace()
    pipeline.render([pipeline.plan_tts("Hello there.", voice, DecodingOptions(steps=[1, 1, 1, 1]))], traces=[trace])
    assert trace.codes is not None and trace.codes.shape[1] == 4
    assert batches == [2, 1, 1, 1]  # the folder's guidance for its levels, none for the levels it does not list


def test_a_frame_budget_splits_soundstorm_batches_and_leaves_every_segment_as_it_was(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()  # its prompt: P frames
    P = len(voice.semantic) * pipeline.ratio
    plan = pipeline.plan_speak(torch.arange(10) % 16, voice, DecodingOptions(seed=4))
    others = [pipeline.plan_speak(torch.arange(n) % 16, voice, DecodingOptions(seed=n)) for n in (8, 6, 4)]
    plans = [plan, *others]  # segments of P + 20, 16, 12 and 8 frames
    pipeline.batch_frames = None
    calls: list[int] = []
    original = pipeline.acoustic_batch
    pipeline.acoustic_batch = lambda segments, *a, **k: calls.append(len(segments)) or original(segments, *a, **k)  # type: ignore[method-assign]
    unbounded = pipeline.render(plans)
    assert calls == [4]
    calls.clear()
    pipeline.batch_frames = 2 * (P + 20)  # two of the longest fit; the rest are shorter
    budgeted = pipeline.render(plans)
    assert calls == [2, 2]
    calls.clear()
    pipeline.batch_frames = 1  # smaller than any segment: each alone, never refused
    alone = pipeline.render(plans)
    assert calls == [1, 1, 1, 1]
    for a, b, c in zip(unbounded, budgeted, alone):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_guidance_is_one_scale_or_one_per_level_on_the_command_line() -> None:
    import argparse

    from soundstorm.text.commands import add_decoding_arguments, decoding_options

    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    assert decoding_options(parser.parse_args([])).guidance_scale is None  # the models folder's default
    assert decoding_options(parser.parse_args(["--guidance-scale", "2"])).guidance_scale == 2.0
    assert decoding_options(parser.parse_args(["--guidance-scale", "2", "1", "1", "1"])).guidance_scale == [2.0, 1.0, 1.0, 1.0]
    assert decoding_options(parser.parse_args([])).soft_temperature is None  # the models folder's default
    assert decoding_options(parser.parse_args(["--soft-temperature", "0"])).soft_temperature == 0.0


def test_text_to_semantic_candidates_keep_the_one_that_spells_the_text_best(models: Path) -> None:
    from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig
    from soundstorm.semantic.extractors import ContentFeatures
    from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer
    from soundstorm.text.phone_score import PhoneScorer
    from soundstorm.text.phonemes import CMU_PHONES

    plain = SpeechPipeline.from_folder(models)  # MFCC tokens: no phones to score against
    with pytest.raises(ValueError, match="content encoder's phone classes"):
        plain.text_to_semantic("Hello there.", options=DecodingOptions(t2s_candidates=3))
    torch.manual_seed(0)
    phones = ("sil", *(p.lower() for p in CMU_PHONES), "ax")
    encoder = ContentEncoder(ContentEncoderConfig(phones=phones, dim=32, depth=1, heads=2, feature_dim=8))
    tokenizer = KMeansTokenizer(ContentFeatures(encoder, "posteriors"), torch.rand(16, len(phones)) ** 8)
    pipeline = SpeechPipeline(plain.codec, tokenizer, plain.soundstorm, plain.t2s)
    assert isinstance(pipeline.phone_scorer, PhoneScorer)
    text, options = "The birch canoe slid on the smooth planks.", DecodingOptions(t2s_candidates=4, t2s_temperature=1.5)
    chosen = pipeline.text_to_semantic(text, options=options)
    ids = torch.tensor(pipeline.symbols.encode(text))
    drawn = [pipeline.t2s.generate(ids, temperature=1.5, top_k=options.t2s_top_k, generator=pipeline._generator(options, 0, k))
             for k in range(4)]  # each candidate on its own stream
    scores = [pipeline.phone_scorer.score(d, text) for d in drawn]
    assert len({tuple(d.tolist()) for d in drawn}) == 4  # a real choice
    assert pipeline.phone_scorer.score(chosen, text) == max(scores)
    assert any(torch.equal(chosen, d) for d in drawn)
    # candidate 0 is the single draw: N candidates never spell the text worse than one
    single = pipeline.text_to_semantic(text, options=replace(options, t2s_candidates=1))
    assert torch.equal(single, drawn[0])
    with pytest.raises(ValueError, match="at least 1"):
        pipeline.text_to_semantic(text, options=DecodingOptions(t2s_candidates=0))


def test_candidates_of_several_sentences_read_together_choose_what_each_chooses_alone(
        models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """texts_to_semantic reads T2S_BATCH texts at a time, each with its candidates' rows (here two
    batches of 2 x 3 rows): each sentence's choice is the one text_to_semantic makes for it alone."""
    import soundstorm.text.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "T2S_BATCH", 2)
    from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig
    from soundstorm.semantic.extractors import ContentFeatures
    from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer
    from soundstorm.text.phonemes import CMU_PHONES

    plain = SpeechPipeline.from_folder(models, precision="fp32")
    torch.manual_seed(0)
    phones = ("sil", *(p.lower() for p in CMU_PHONES), "ax")
    encoder = ContentEncoder(ContentEncoderConfig(phones=phones, dim=32, depth=1, heads=2, feature_dim=8))
    tokenizer = KMeansTokenizer(ContentFeatures(encoder, "posteriors"), torch.rand(16, len(phones)) ** 8)
    pipeline = SpeechPipeline(plain.codec, tokenizer, plain.soundstorm, plain.t2s)
    texts = ["Hello there.", "A somewhat longer second sentence, for the padding.", "Yes.", "Go on then."]
    options = DecodingOptions(seed=3, t2s_candidates=3, t2s_temperature=1.5)
    together = pipeline.texts_to_semantic(texts, [None] * 4, options, salts=[1, 2, 3, 4])
    alone = [pipeline.text_to_semantic(text, options=options, salt=salt) for text, salt in zip(texts, [1, 2, 3, 4])]
    assert all(torch.equal(a, b) for a, b in zip(together, alone))


def test_sentences_read_as_one_batch_draw_what_each_draws_alone(models: Path) -> None:
    """texts_to_semantic (tts's sentences, a dialogue's turns) batches the text-to-semantic model;
    each sentence keeps its own random stream (salt), so it draws what it draws alone."""
    pipeline = SpeechPipeline.from_folder(models, precision="fp32")
    voice = pipeline.default_voice()
    texts = ["Hello there.", "A somewhat longer second sentence, for the padding.", "Yes."]
    options = DecodingOptions(seed=4)
    batched = pipeline.texts_to_semantic(texts, [voice] * 3, options, salts=[0, 2, 4])
    alone = [pipeline.text_to_semantic(text, voice, options=options, salt=salt) for text, salt in zip(texts, [0, 2, 4])]
    assert all(torch.equal(a, b) for a, b in zip(batched, alone))


def test_a_turn_after_the_previous_one_keeps_its_own_length_bounds(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a context, a turn's bounds are its own text's: a previous turn that ran long must not
    let it stop after a token (docs/dialogue_context.md)."""
    pipeline = SpeechPipeline.from_folder(models)
    calls: list[dict] = []
    original = pipeline.t2s.generate_batch

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline.t2s, "generate_batch", spy)
    long_previous = torch.arange(400) % 16  # far more tokens than its text's
    text = "Then we should fix it."
    tokens = pipeline.text_to_semantic(text, context=("Hello.", long_previous))
    fewest, most = pipeline.t2s.config.length_bounds(len(pipeline.symbols.encode(text)))
    assert calls[-1]["bounds"] == [(fewest, most)]
    assert fewest <= len(tokens) <= most
    pipeline.text_to_semantic(text)  # alone: the model's own bounds
    assert calls[-1]["bounds"] == [None]
