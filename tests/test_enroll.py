"""Voice enrolment: a folder with a prompt and a codec whose decoder learned the voice, usable as
--voice wherever a prompt file is, tied to the codec whose tokens it reads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.checkpoint import weights_digest
from soundstorm.cli import main
from soundstorm.codecs.soundstream.codec import SoundStreamCodec
from soundstorm.model.adapt import SoundStormAdaptation
from soundstorm.model.lora import LoRAAdapter
from soundstorm.text.enroll import MAX_STEPS, MIN_STEPS, default_steps, enroll_voice
from soundstorm.text.pipeline import SpeechPipeline
from soundstorm.text.voice_folder import read_voice_folder
from tests.speech_models import flite, needs_flite, write_tiny_models


def tiny_models_and_speech(tmp_path: Path) -> tuple[Path, SpeechPipeline, Path]:
    """Tiny models, their pipeline, and a sentence of a voice they never heard (flite's rms)."""
    models = write_tiny_models(tmp_path / "models")
    speech = flite(tmp_path / "a.wav", "The birch canoe slid on the smooth planks.", voice="rms")
    return models, SpeechPipeline.from_folder(models), speech


def test_default_steps_grow_with_the_audio_within_bounds() -> None:
    counts = [default_steps(s) for s in (0.5, 3, 10, 30, 60, 600)]
    assert counts == sorted(counts) and counts[0] == MIN_STEPS and counts[-1] == MAX_STEPS
    assert default_steps(30) == 100 and default_steps(60) == 200  # the measured points


@needs_flite
def test_enrolled_voice_folder_decodes_with_its_own_decoder(tmp_path: Path) -> None:
    models = write_tiny_models(tmp_path / "models")
    pipeline = SpeechPipeline.from_folder(models)
    audio = [flite(tmp_path / f"rms{i}.wav", text, voice="rms") for i, text in
             enumerate(["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."])]
    out = tmp_path / "voices" / "rms"
    folder = enroll_voice(pipeline, audio, out, steps=4)

    info = json.loads((out / "voice.json").read_text())
    assert info["encoder_weights"] == pipeline.codec.encoder_digest and info["adaptation"]["steps"] == 4
    assert [a["file"] for a in info["audio"]] == ["rms0.wav", "rms1.wav"]
    assert info["mel_distance"]["after"] < info["mel_distance"]["before"]  # it learned the enrolment audio
    prompt, rate = sf.read(folder.prompt)
    first = sf.info(audio[0])
    assert rate == pipeline.sample_rate and len(prompt) == min(first.frames, 3 * rate)  # <= 3 s of the first file
    codec = SoundStreamCodec.from_pretrained(folder.codec)  # a codec spec in its own right
    assert codec.encoder_digest == pipeline.codec.encoder_digest  # the same tokens...
    original = pipeline.codec.model.decoder.state_dict()
    assert any(not torch.allclose(v.float(), original[k].float()) for k, v in codec.model.decoder.state_dict().items())

    assert info["soundstorm_adaptation"]["steps"] == 100 and info["soundstorm_adaptation"]["rank"] == 16
    assert sorted(p.name for p in folder.soundstorm.iterdir()) == ["adapter.json", "adapter.safetensors"]
    assert info["adaptation"]["blend"] == info["soundstorm_adaptation"]["blend"] == 0.5  # half of each change kept
    voice, plain = pipeline.voice(out), pipeline.voice(folder.prompt)
    assert voice.name == "rms" and voice.codec is not None and plain.codec is None
    assert voice.soundstorm is not None and voice.soundstorm.config == pipeline.soundstorm.config
    assert torch.equal(voice.codes, plain.codes)  # ... read by another decoder
    codes = voice.codes[:50, : len(pipeline.default_steps)]
    assert not np.allclose(pipeline.decode(codes, voice), pipeline.decode(codes, plain))

    wav_out = tmp_path / "tts.wav"
    assert main(["tts", "Hello there.", "--models", str(models), "--voice", str(out), "-o", str(wav_out),
                 "--steps", "2", "1", "1", "1", "--t2s-eos-threshold", "0.3"]) == 0
    assert sf.info(wav_out).frames > 0
    with pytest.raises(ValueError, match="already adapted"):
        pipeline.voice(out, adapt_steps=2)


@needs_flite
def test_enrolment_refuses_bad_input_and_keeps_the_old_folder(tmp_path: Path) -> None:
    models, pipeline, speech = tiny_models_and_speech(tmp_path)
    out = tmp_path / "voice"
    assert main(["enroll", str(speech), "-o", str(out), "--models", str(models), "--steps", "1",
                 "--soundstorm-steps", "0"]) == 0
    assert not (out / "soundstorm").exists() and pipeline.voice(out).soundstorm is None
    whole = tmp_path / "whole"  # rank 0: every weight fine-tuned, a SoundStorm copy stored
    assert main(["enroll", str(speech), "-o", str(whole), "--models", str(models), "--steps", "1",
                 "--soundstorm-steps", "2", "--soundstorm-rank", "0"]) == 0
    adaptation = json.loads((whole / "voice.json").read_text())["soundstorm_adaptation"]
    assert adaptation["rank"] is None and adaptation["lr"] == SoundStormAdaptation().lr
    assert sorted(p.name for p in (whole / "soundstorm").iterdir()) == ["config.json", "model.safetensors"]
    assert main(["enroll", str(tmp_path / "missing.wav"), "-o", str(out), "--models", str(models)]) == 2
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        enroll_voice(pipeline, [speech, silent], out, steps=1)
    short = tmp_path / "short.wav"
    sf.write(short, np.full(800, 0.1, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="each enrolment file needs at least"):
        enroll_voice(pipeline, [short], out, steps=1)
    with pytest.raises(ValueError, match="at least one audio file"):
        enroll_voice(pipeline, [], out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing lost

    with pytest.raises(FileNotFoundError, match="not a voice folder"):
        pipeline.voice(tmp_path / "models")  # a folder without voice.json
    meta = json.loads((out / "voice.json").read_text())
    (out / "voice.json").write_text(json.dumps({**meta, "encoder_weights": "0123456789abcdef"}))
    with pytest.raises(ValueError, match="digest 0123456789abcdef.*enroll the voice again"):
        pipeline.voice(out)  # enrolled with another codec: its decoder would read other tokens
    (out / "voice.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        read_voice_folder(out)
    (out / "voice.json").write_text(json.dumps(meta))
    other = SoundStorm(SoundStormConfig(codebook_size=64, num_quantizers=4, semantic_vocab_size=16,
                                        semantic_rate_ratio=2, dim=48, depth=1, heads=2))
    other.save_pretrained(out / "soundstorm")  # not the models folder's architecture
    with pytest.raises(ValueError, match="SoundStorm of another configuration"):
        pipeline.voice(out)


@needs_flite
def test_enrolment_with_adapters_stores_them_alone_and_merges_them_into_the_pipelines(tmp_path: Path) -> None:
    models, pipeline, speech = tiny_models_and_speech(tmp_path)
    out = tmp_path / "voice"
    assert main(["enroll", str(speech), "-o", str(out), "--models", str(models), "--steps", "1",
                 "--soundstorm-steps", "3", "--soundstorm-rank", "2", "--soundstorm-lr", "1e-2",
                 "--soundstorm-blend", "0.5", "--blend", "0.25"]) == 0
    info = json.loads((out / "voice.json").read_text())
    assert info["format_version"] == 2 and info["adaptation"]["blend"] == 0.25
    assert info["soundstorm_adaptation"]["rank"] == 2 and info["soundstorm_adaptation"]["lr"] == 1e-2
    assert info["soundstorm_adaptation"]["blend"] == 0.5
    assert sorted(p.name for p in (out / "soundstorm").iterdir()) == ["adapter.json", "adapter.safetensors"]
    adapter = LoRAAdapter.load(out / "soundstorm")
    assert adapter.base_weights == weights_digest(pipeline.soundstorm)
    assert adapter.num_parameters() < 0.25 * pipeline.soundstorm.num_parameters()

    voice = pipeline.voice(out)
    assert voice.soundstorm is not None and voice.soundstorm is not pipeline.soundstorm
    merged, original = voice.soundstorm.state_dict(), pipeline.soundstorm.state_dict()
    moved = {k for k in original if not torch.equal(merged[k], original[k])}
    assert moved and moved <= {f"{layer}.weight" for layer in adapter.layers}  # only where adapters are
    torch.testing.assert_close(merged, adapter.merged_into(pipeline.soundstorm).state_dict())

    assert main(["enroll", str(speech), "-o", str(out), "--models", str(models), "--blend", "2"]) == 2
    # A version-1 folder (before adapters) is read as it was.
    meta = json.loads((out / "voice.json").read_text())
    (out / "voice.json").write_text(json.dumps({**meta, "format_version": 1}))
    assert pipeline.voice(out).soundstorm is not None
    # Adapters of another SoundStorm's weights would add their change to the wrong model.
    retrained = SpeechPipeline.from_folder(models)
    with torch.no_grad():
        retrained.soundstorm.head_bias.add_(0.01)
    with pytest.raises(ValueError, match="holds adapters for a SoundStorm with weights .*enroll the voice again"):
        retrained.voice(out)


@needs_flite
def test_server_offers_an_enrolled_voice_of_the_models_folder(tmp_path: Path) -> None:
    import httpx

    from soundstorm.serve.app import create_app
    from tests.live_server import LiveServer

    models = write_tiny_models(tmp_path / "models")
    speech = flite(tmp_path / "rms.wav", "The birch canoe slid on the smooth planks.", voice="rms")
    enroll_voice(SpeechPipeline.from_folder(models), [speech], models / "voices" / "rms", steps=4)
    pipeline = SpeechPipeline.from_folder(models)
    with LiveServer(create_app(pipeline)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/api/voices").json()["voices"] == ["awb", "default", "rms"]
        request = {"text": "Hello there.", "steps": "2,1,1,1", "seed": "3"}
        enrolled = client.post("/api/tts", data={**request, "voice_name": "rms"})
        prompt = (models / "voices" / "rms" / "prompt.wav").read_bytes()
        uploaded = client.post("/api/tts", data=request, files={"voice": ("rms.wav", prompt, "audio/wav")})
    assert enrolled.status_code == uploaded.status_code == 200, enrolled.text
    a, _ = sf.read(io.BytesIO(enrolled.content))
    b, _ = sf.read(io.BytesIO(uploaded.content))
    assert len(a) == len(b) and not np.allclose(a, b)  # the same tokens, decoded by the voice's own decoder
