"""The shared training loop: loss goes down, exact resume, corrupt checkpoints, torchrun, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fakes import FakeCodec, FakeSemantic
from test_token_cache import make_corpus

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.data.tokenize import build_token_cache
from soundstorm.train.recipe import Recipe
from soundstorm.train.schedule import warmup_cosine
from soundstorm.train.state import load_state, save_state
from soundstorm.train.trainer import Trainer

RECIPES = Path(__file__).parent.parent / "recipes"
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    durations = [0.4 + 0.13 * (i % 9) for i in range(32)]
    manifest = make_corpus(root / "corpus", durations)
    build_token_cache(manifest, root / "cache", FakeCodec(codebook_size=64), FakeSemantic(vocab_size=32), shard_size=16)
    return root / "cache"


def tiny_recipe(cache_dir: Path, **overrides: object) -> Recipe:
    values = [f'data.cache="{cache_dir}"', "data.max_frames=40", "data.batch_size=4", "data.num_workers=0",
              "optimizer.warmup_steps=5", "optimizer.max_steps=12", "schedule.log_every=4",
              "schedule.valid_every=6", "schedule.checkpoint_every=4", "schedule.valid_batches=4"]
    values += [f"{k}={v}" for k, v in overrides.items()]
    return Recipe.load(RECIPES / "soundstorm-tiny.toml", values)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return SoundStorm.from_pretrained(path).state_dict()


def test_short_run_reduces_the_loss_and_exports(cache_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(cache_dir, **{"optimizer.max_steps": 200, "optimizer.lr": 3e-3, "schedule.valid_every": 50,
                                      "schedule.checkpoint_every": 50, "schedule.keep_last": 1, "data.batch_size": 8})
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    first = trainer.validate()
    summary = trainer.fit()
    last = trainer.validate()
    assert summary["step"] == 200 and not summary["stopped_early"]
    # Level 1 follows the audio's envelope, which the semantic tokens carry: learnable. The
    # finer levels of the stand-in codec hold remainders that look like noise.
    assert last["loss/level_1"] < 0.6 * first["loss/level_1"], (first, last)
    assert summary["best_valid_loss"] < first["loss"]
    model = SoundStorm.from_pretrained(tmp_path / "run" / "model")
    assert model.config.codebook_size == 64 and model.config.semantic_vocab_size == 32
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints[-1] == "step-00000200" and len(checkpoints) <= 2  # last + best
    assert json.loads((tmp_path / "run" / "recipe.json").read_text())["task"] == "soundstorm"


def test_bf16_auto_trains_in_float32_without_native_bf16_and_true_warns(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # On a CPU without avx512_bf16 / AMX, bf16 is emulated: 27x slower than float32 for the demo
    # recipe's SoundStorm step on an AVX2 CPU. "auto" must not turn it on there.
    import soundstorm.precision
    import soundstorm.train.trainer

    for module in (soundstorm.precision, soundstorm.train.trainer):
        monkeypatch.setattr(module, "bf16_is_fast", lambda device: False)
    auto = Trainer(tiny_recipe(cache_dir, **{"optimizer.bf16": '"auto"'}), tmp_path / "auto", progress=False)
    with auto.task.autocast():
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    forced = Trainer(tiny_recipe(cache_dir, **{"optimizer.bf16": "true", "optimizer.max_steps": 1}),
                     tmp_path / "forced", progress=False)
    with forced.task.autocast():
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    forced.fit()
    assert "no native bf16" in capsys.readouterr().err
    with pytest.raises(ValueError, match='bf16 must be true, false or "auto"'):
        tiny_recipe(cache_dir, **{"optimizer.bf16": '"fast"'})
    assert Recipe.load(RECIPES / "demo" / "soundstorm.toml").optimizer.bf16 == "auto"


def test_training_only_the_first_levels(cache_dir: Path, tmp_path: Path) -> None:
    """options.train_levels = 2 reaches the model: a run trains, and its validation scores the
    first two levels alone (test_masking checks the mask itself); a value outside [1, Q] or of
    another type is refused before anything runs."""
    recipe = tiny_recipe(cache_dir, **{"options.train_levels": 2, "optimizer.max_steps": 6})
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.fit()
    metrics = trainer.validate()
    assert {"accuracy/level_1", "accuracy/level_2"} <= set(metrics)
    assert not any(key.startswith(("accuracy/level_", "loss/level_")) and int(key.rsplit("_", 1)[1]) > 2
                   for key in metrics), metrics
    for i, bad in enumerate(("0", "99", '"2"')):  # TOML values: two integers out of range, a string
        with pytest.raises(ValueError, match=r"options.train_levels must be an integer in \[1, "):
            Trainer(tiny_recipe(cache_dir, **{"options.train_levels": bad}), tmp_path / f"bad-{i}", progress=False)


def test_level_weights_reach_the_mask(cache_dir: Path, tmp_path: Path) -> None:
    """options.level_weights with a zero weight: that level is never trained (without weight
    decay, its output head does not move), and weights that cannot be drawn are refused."""
    recipe = tiny_recipe(cache_dir, **{"options.train_levels": 2, "options.level_weights": "[0, 1]",
                                       "optimizer.max_steps": 3, "optimizer.weight_decay": 0.0})
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    model = trainer.modules["model"]
    before = model.head_weight[0].detach().clone()
    trainer.fit()
    assert torch.equal(model.head_weight[0].detach(), before)  # level 1's head never saw a loss
    for i, bad in enumerate(("[1, 1, 1]", "[0, 0]", "[1, -1]")):
        with pytest.raises(ValueError, match="options.level_weights must list 2 non-negative numbers"):
            Trainer(tiny_recipe(cache_dir, **{"options.train_levels": 2, "options.level_weights": bad}),
                    tmp_path / f"bad-{i}", progress=False)


def test_interrupted_and_resumed_equals_uninterrupted(cache_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(cache_dir, deterministic="true", **{"model.dropout": 0.1})
    Trainer(recipe, tmp_path / "straight", progress=False).fit()

    stopped = Trainer(recipe, tmp_path / "resumed", progress=False, until_step=6).fit()
    assert stopped["stopped_early"] and stopped["step"] == 6
    assert stopped["best_step"] == 6 and (tmp_path / "resumed" / "best" / "config.json").is_file()  # validated at the stop
    stop, best = weights(tmp_path / "resumed" / "model"), weights(tmp_path / "resumed" / "best")
    assert all(torch.equal(stop[k], best[k]) for k in stop)  # model/ holds the weights of the stop too
    resumed = Trainer(recipe, tmp_path / "resumed", progress=False)
    assert resumed.resume() and resumed.step == 6 and resumed.batch_in_epoch > 0
    resumed = Trainer(recipe, tmp_path / "resumed", progress=False)
    summary = resumed.fit()
    assert summary["step"] == 12
    a, b = weights(tmp_path / "straight" / "model"), weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_between_validations_validates_and_still_resumes_exactly(cache_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(cache_dir, deterministic="true", **{"model.dropout": 0.1})
    Trainer(recipe, tmp_path / "straight", progress=False).fit()
    stopped = Trainer(recipe, tmp_path / "resumed", progress=False, until_step=5).fit()  # valid_every is 6
    assert stopped["stopped_early"] and stopped["best_step"] == 5  # best/ holds the weights of the stop
    stop, best = weights(tmp_path / "resumed" / "model"), weights(tmp_path / "resumed" / "best")
    assert all(torch.equal(stop[k], best[k]) for k in stop)  # and so does model/
    assert (tmp_path / "resumed" / "best" / "model.safetensors").is_file()
    assert Trainer(recipe, tmp_path / "resumed", progress=False).fit()["step"] == 12
    a, b = weights(tmp_path / "straight" / "model"), weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the extra validation drew no training randomness


def test_a_corrupt_checkpoint_is_reported_and_the_previous_one_used(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tiny_recipe(cache_dir, **{"optimizer.max_steps": 8})
    Trainer(recipe, tmp_path / "run", progress=False).fit()
    newest = tmp_path / "run" / "checkpoints" / "step-00000008" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    trainer = Trainer(tiny_recipe(cache_dir, **{"optimizer.max_steps": 12}), tmp_path / "run", progress=False)
    assert trainer.resume() and trainer.step == 4
    err = capsys.readouterr().err
    assert "step-00000008" in err and "corrupt or truncated" in err
    for checkpoint in (tmp_path / "run" / "checkpoints").iterdir():
        (checkpoint / "state.json").write_text("{")
    with pytest.raises(ValueError, match="no checkpoint .* can be loaded"):
        Trainer(recipe, tmp_path / "run", progress=False).resume()


def test_resume_refuses_a_different_model(cache_dir: Path, tmp_path: Path) -> None:
    Trainer(tiny_recipe(cache_dir, **{"optimizer.max_steps": 4}), tmp_path / "run", progress=False).fit()
    with pytest.raises(ValueError, match="model"):
        Trainer(tiny_recipe(cache_dir, **{"model.dim": 32}), tmp_path / "run", progress=False).fit()


def _command(cache_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "soundstorm.cli", "train", str(RECIPES / "soundstorm-tiny.toml"), "--out", str(out), "--quiet",
            "--set", f'data.cache="{cache_dir}"', "--set", "data.max_frames=40", "--set", "data.batch_size=4",
            "--set", "schedule.valid_batches=2", *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")


def test_torchrun_two_processes_keep_identical_weights(cache_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
         *_command(cache_dir, tmp_path / "ddp", "--set", "optimizer.max_steps=10", "--set", "schedule.valid_every=5")],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 10
    assert len(set(summary["replica_checksums"])) == 1
    assert SoundStorm.from_pretrained(tmp_path / "ddp" / "model").config.dim == 64


def test_sigterm_writes_a_checkpoint_and_the_run_resumes(cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, *_command(cache_dir, out, "--set", "optimizer.max_steps=100000", "--set", "schedule.log_every=1",
                                   "--set", "schedule.checkpoint_every=100000", "--set", "schedule.valid_every=100000")],
        stderr=subprocess.PIPE, text=True, env=_env(),
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    for line in process.stderr:  # wait until it is training
        if line.startswith("step 5/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and summary["step"] >= 5
    step = summary["step"]
    assert (out / "checkpoints" / f"step-{step:08d}").is_dir()
    result = subprocess.run([sys.executable, *_command(cache_dir, out, "--set", "optimizer.max_steps=100000",
                                                      "--until-step", str(step + 2))],
                            capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stderr
    assert json.loads((out / "summary.json").read_text())["step"] == step + 2


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.toml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_recipe_loads(path: Path) -> None:
    recipe = Recipe.load(path)
    if recipe.task == "soundstorm":
        model = dict(recipe.model)
        preset = model.pop("preset", None)
        defaults = dict(codebook_size=1024, num_quantizers=8, semantic_vocab_size=500)
        values = {**defaults, **model}
        config = SoundStormConfig.preset(preset, **values) if preset else SoundStormConfig.from_dict(values)
        assert config.codebook_size == 1024  # the cache's values fill in what the recipe leaves out
    elif recipe.task == "soundstream":
        from soundstorm.codecs.soundstream.config import SoundStreamConfig
        from soundstorm.codecs.soundstream.training import SoundStreamLossConfig

        model = dict(recipe.model)
        preset = model.pop("preset", None)
        config = SoundStreamConfig.preset(preset, **model) if preset else SoundStreamConfig.from_dict(model)
        assert config.frame_rate > 0
        options = dict(recipe.options)
        options.pop("discriminator", None)
        low, high = options.pop("speed_perturbation", (1.0, 1.0))
        assert 0.5 <= low <= high <= 2.0
        assert 0.0 < options.pop("random_eq_db", 1.0) <= 24.0
        low, high = options.pop("random_formant", (1.0, 1.0))
        assert 0.5 <= low <= high <= 2.0
        encoder_from = options.pop("encoder_from", None)
        if encoder_from is not None:  # a codec folder of the repo, whose tokens the new decoder keeps
            assert (RECIPES.parent / encoder_from / "config.json").is_file() and options["decoder_only"]
        decoder_from = options.pop("decoder_from", None)
        if decoder_from is not None:  # a codec folder of the repo whose decoder the new one starts from
            assert (RECIPES.parent / decoder_from / "config.json").is_file()
        assert 0.0 <= options.pop("semantic_dropout", 0.0) <= 1.0
        inputs = options.pop("soundstorm_inputs", None)
        if inputs is not None:  # the repo's own SoundStorm and tokenizer, for a decoder that only trains
            from soundstorm.codecs.soundstream.soundstorm_inputs import SoundStormInputs

            inputs = SoundStormInputs.from_dict(inputs)
            assert all((RECIPES.parent / folder / "config.json").is_file() for folder in (inputs.soundstorm, inputs.semantic))
            assert options["decoder_only"] and not options.get("adversarial", False)
        reference = options.pop("reference", None)
        if reference is not None:  # a decoder that reads a voice reference, and only such a one
            from soundstorm.train.soundstream_task import ReferenceOptions

            assert ReferenceOptions.from_dict(reference).seconds > 0 and config.reference_mels and options["decoder_only"]
        SoundStreamLossConfig.from_dict(options)
    elif recipe.task == "semantic":
        from soundstorm.semantic.content import ContentEncoderConfig

        assert ContentEncoderConfig(phones=("sil", "aa"), **recipe.model).rate == 25.0  # phones come from the manifest
    elif recipe.task == "ar":
        from soundstorm.baselines import ARAcousticConfig

        defaults = dict(codebook_size=1024, num_quantizers=8, semantic_vocab_size=500, semantic_rate_ratio=2)
        assert ARAcousticConfig.from_dict({**defaults, **recipe.model}).fine_levels > 0
    elif recipe.task == "t2s":
        from soundstorm.text.model import TextToSemanticConfig

        assert TextToSemanticConfig.from_dict({"semantic_vocab_size": 500, **recipe.model}).text_vocab_size > 40
    else:
        raise AssertionError(f"{path.name}: no check for task {recipe.task!r}")
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_recipe_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('task = "soundstorm"\n[optimizer]\nlearning_rate = 1e-3\n')
    with pytest.raises(ValueError, match=r"unknown fields in \[optimizer\]: \['learning_rate'\]"):
        Recipe.load(path)
    path.write_text('task = "soundstorm"\n[optimizer]\nlr = -1.0\n')
    with pytest.raises(ValueError, match="lr must be > 0"):
        Recipe.load(path)
    path.write_text('task = "soundstorm"\n')
    recipe = Recipe.load(path, ["optimizer.lr=1e-3", "data.cache=tokens", "schedule.valid_every=7"])
    assert (recipe.optimizer.lr, recipe.data.cache, recipe.schedule.valid_every) == (1e-3, "tokens", 7)
    with pytest.raises(FileNotFoundError, match="no recipe"):
        Recipe.load(tmp_path / "absent.toml")


def test_warmup_cosine_schedule() -> None:
    values = [warmup_cosine(s, warmup_steps=10, max_steps=110, min_ratio=0.1) for s in range(130)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.55)  # half way through the cosine
    assert values[110] == pytest.approx(0.1) and values[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))


def test_training_state_round_trip_without_pickle(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), betas=(0.9, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "note": [1, 2.5, "x", None, True]}
    save_state(state, tmp_path / "state")
    loaded = load_state(tmp_path / "state")
    restored = torch.optim.AdamW(model.parameters())
    restored.load_state_dict(loaded["optimizer"])
    assert list(loaded["optimizer"]["state"]) == [0, 1]  # integer keys survive JSON
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(loaded["rng"], state["rng"]) and loaded["note"] == [1, 2.5, "x", None, True]
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "state").iterdir())


def test_accumulation_and_audio_samples_in_tensorboard(cache_dir: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tiny_recipe(cache_dir, **{"optimizer.max_steps": 4, "optimizer.grad_accum": 2, "schedule.sample_every": 2,
                                      "data.codec": '"python:fakes:make_fake_codec"', "optimizer.ema_decay": 0.9})
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    summary = trainer.fit()
    assert summary["step"] == 4
    batches_per_epoch = len(trainer.task.data.sampler.all_batches())
    assert trainer.epoch * batches_per_epoch + trainer.batch_in_epoch == 8  # two micro-batches a step
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert {"samples/generated", "samples/original"} <= set(events.Tags()["audio"])
    assert "spectrograms/generated" in events.Tags()["images"]
    assert {"train/main/loss", "valid/loss", "valid/accuracy/level_1"} <= set(events.Tags()["scalars"])


def test_codec_training_with_both_gan_phases(tmp_path: Path) -> None:
    from soundstorm.codecs import load_codec

    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    recipe = Recipe.load(RECIPES / "soundstream-small.toml", [
        f'data.cache="{manifest}"', 'model.preset="tiny"', "data.batch_size=2", "data.max_frames=10",
        "data.num_workers=0", "optimizer.max_steps=4", "optimizer.warmup_steps=1", "schedule.log_every=1",
        "schedule.valid_every=4", "schedule.checkpoint_every=2", "schedule.valid_batches=1",
        "options.adversarial_start_step=2", "schedule.sample_every=4", "options.speed_perturbation=[0.9, 1.1]",
        "options.random_eq_db=6.0", "options.random_formant=[0.9, 1.1]",
    ])
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    assert [p.name for p in trainer.phases] == ["generator", "discriminator"]
    assert trainer.task.train_set.speed_range == (0.9, 1.1) and trainer.task.valid_set.speed_range is None
    assert trainer.task.train_set.eq_db == 6.0 and trainer.task.valid_set.eq_db is None
    assert trainer.task.train_set.formant_range == (0.9, 1.1) and trainer.task.valid_set.formant_range is None
    with pytest.raises(ValueError, match=r"speed_perturbation must be \[low, high\]"):
        Trainer(Recipe.load(RECIPES / "soundstream-small.toml", [f'data.cache="{manifest}"', 'model.preset="tiny"',
                                                                 "options.speed_perturbation=1.1"]), tmp_path / "bad")
    before = [p.detach().clone() for p in trainer.modules["discriminator"].parameters()]
    summary = trainer.fit()
    assert summary["step"] == 4 and summary["best_valid_loss"] is not None
    moved = [not torch.equal(a, b) for a, b in zip(before, trainer.modules["discriminator"].parameters())]
    assert any(moved), "the discriminator should train once the GAN starts"
    codec = load_codec(f"soundstream:{tmp_path / 'run' / 'model'}")
    assert codec.frame_rate == 50 and codec.num_quantizers == trainer.task.config.num_quantizers


def test_decoder_only_fine_tune_keeps_every_token(tmp_path: Path) -> None:
    # recipes/demo/codec-gan.toml: the GAN phase on a codec SoundStorm was trained on. Only the
    # decoder may move; encoder weights, codebooks (EMA buffers) and so the codes stay as they are.
    from soundstorm.codecs.soundstream.model import SoundStream

    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    common = [f'data.cache="{manifest}"', 'model.preset="tiny"', "data.batch_size=2", "data.max_frames=10",
              "data.num_workers=0", "optimizer.warmup_steps=1", "schedule.valid_every=3",
              "schedule.checkpoint_every=3", "schedule.valid_batches=1", "optimizer.bf16=false"]
    first = Trainer(Recipe.load(RECIPES / "soundstream-small.toml", [*common, "optimizer.max_steps=3"]),
                    tmp_path / "first", progress=False)
    first.fit()
    recipe = Recipe.load(RECIPES / "demo" / "codec-gan.toml", [*common, "optimizer.max_steps=3"])
    assert recipe.options["decoder_only"] and recipe.options["adversarial_start_step"] == 0
    second = Trainer(recipe, tmp_path / "second", progress=False, init_from=tmp_path / "first" / "model")
    assert second.fit()["step"] == 3
    before, after = (SoundStream.from_pretrained(tmp_path / run / "model") for run in ("first", "second"))
    wav = torch.randn(1, 1, 16000) * 0.1
    assert torch.equal(before.encode(wav), after.encode(wav))
    for name, tensor in before.state_dict().items():
        same = torch.equal(tensor, after.state_dict()[name])
        assert same != name.startswith("decoder."), f"{name}: {'unchanged' if same else 'changed'}"


def test_a_new_run_can_start_from_a_model_folder(cache_dir: Path, tmp_path: Path) -> None:
    first = Trainer(tiny_recipe(cache_dir, **{"optimizer.max_steps": 4}), tmp_path / "first", progress=False)
    first.fit()
    exported = weights(tmp_path / "first" / "model")
    second = Trainer(tiny_recipe(cache_dir, **{"optimizer.max_steps": 4}), tmp_path / "second", progress=False,
                     init_from=tmp_path / "first" / "model")
    second.initialize_from(tmp_path / "first" / "model")
    for name, tensor in second.modules["model"].state_dict().items():
        assert torch.equal(tensor, exported[name]), name
    assert second.fit()["step"] == 4
    other = Trainer(tiny_recipe(cache_dir, **{"model.depth": 1}), tmp_path / "third", progress=False)
    with pytest.raises(ValueError, match=r"config differs from this recipe's in \['depth'\]"):
        other.initialize_from(tmp_path / "first" / "model")
    # Regularization is the fine-tune's own choice: dropout settings may differ from the weights'.
    regularized = Trainer(tiny_recipe(cache_dir, **{"model.dropout": 0.2, "model.attention_dropout": 0.0}),
                          tmp_path / "fourth", progress=False)
    regularized.initialize_from(tmp_path / "first" / "model")


def test_a_run_carried_as_its_model_folder_continues_at_its_step(cache_dir: Path, tmp_path: Path) -> None:
    # A new machine has the committed model folder, not the checkpoint: --start-step puts the run
    # back on its schedule, with the rate re-warmed for the optimizer's new moments.
    recipe = tiny_recipe(cache_dir, deterministic="true")
    Trainer(recipe, tmp_path / "first", progress=False, until_step=6).fit()
    carried = tmp_path / "first" / "model"
    with pytest.raises(ValueError, match="give the model folder with --init-from"):
        Trainer(recipe, tmp_path / "bad", progress=False, start_step=6)
    with pytest.raises(ValueError, match=r"between 1 and optimizer.max_steps - 1 \(11\), got 12"):
        Trainer(recipe, tmp_path / "bad", progress=False, init_from=carried, start_step=12)

    second = Trainer(recipe, tmp_path / "second", progress=False, init_from=carried, start_step=6, until_step=8)
    assert second.fit()["step"] == 8  # two steps: from 6, not from 0
    peak, opt = recipe.optimizer.lr, recipe.optimizer
    on_schedule = warmup_cosine(8, warmup_steps=opt.warmup_steps, max_steps=opt.max_steps, min_ratio=opt.min_lr_ratio)
    (group,) = second.optimizers["main"].param_groups
    assert group["lr"] == pytest.approx(peak * on_schedule * 3 / opt.warmup_steps)  # step 8 is the third of the re-warm-up
    # The re-warm-up survives a resume from the continued run's checkpoint.
    resumed = Trainer(recipe, tmp_path / "second", progress=False)
    assert resumed.fit()["step"] == 12
    schedule = resumed.schedulers["main"].lr_lambdas[0]
    assert schedule.restart_step == 6  # type: ignore[attr-defined]
    cosine = [warmup_cosine(s, warmup_steps=opt.warmup_steps, max_steps=opt.max_steps, min_ratio=opt.min_lr_ratio)
              for s in range(12)]
    assert schedule(5) == cosine[5] and schedule(7) == pytest.approx(cosine[7] * 2 / opt.warmup_steps)
    assert schedule(10) == cosine[10]  # the re-warm-up over, the run's own schedule


def test_sigterm_to_the_whole_process_group_with_loader_workers(cache_dir: Path, tmp_path: Path) -> None:
    # A cluster's pre-emption or Ctrl-C signals every process of the group, DataLoader workers
    # too: they must leave it to the main process, which checkpoints and stops them.
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, *_command(cache_dir, out, "--set", "optimizer.max_steps=100000", "--set", "schedule.log_every=1",
                                   "--set", "data.num_workers=1", "--set", "schedule.checkpoint_every=100000",
                                   "--set", "schedule.valid_every=100000")],
        stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if line.startswith("step 5/") or time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and (out / "checkpoints" / f"step-{summary['step']:08d}").is_dir()


@pytest.fixture(scope="module")
def text_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Utterances whose transcripts grow with their duration, as speech's do."""
    root = tmp_path_factory.mktemp("t2s")
    durations = [0.4 + 0.13 * (i % 9) for i in range(32)]
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]
    texts = [" ".join(words[: 1 + i % 9]) for i in range(32)]
    manifest = make_corpus(root / "corpus", durations, texts=texts)
    build_token_cache(manifest, root / "cache", FakeCodec(codebook_size=64), FakeSemantic(vocab_size=32), shard_size=16)
    return root / "cache"


def t2s_recipe(cache_dir: Path, eos_weight: float) -> Recipe:
    values = [f'data.cache="{cache_dir}"', "data.batch_size=8", "model.dim=32", "model.depth=1", "model.heads=2",
              "model.dropout=0.0", "optimizer.warmup_steps=5", "optimizer.max_steps=60", "optimizer.lr=3e-3",
              "optimizer.bf16=false", "optimizer.ema_decay=0.0", "schedule.log_every=20", "schedule.valid_every=30", "schedule.checkpoint_every=30",
              "schedule.valid_batches=4", "options.turn_pairs=0.0", f"options.eos_weight={eos_weight}"]
    return Recipe.load(RECIPES / "t2s-small.toml", values)


def test_t2s_training_measures_its_length_bounds_and_eos_weight_teaches_stopping(text_cache_dir: Path, tmp_path: Path) -> None:
    from soundstorm.data.cache import TokenCache
    from soundstorm.text.model import TextToSemantic
    from soundstorm.text.symbols import TextSymbols

    results = {}
    for eos_weight in (1.0, 30.0):
        trainer = Trainer(t2s_recipe(text_cache_dir, eos_weight), tmp_path / f"eos{eos_weight}", progress=False)
        trainer.fit()
        results[eos_weight] = trainer.validate()
    assert {"loss", "accuracy", "eos_accuracy", "eos_probability"} <= set(results[1.0])
    # The weighted loss puts far more probability on EOS where each utterance ends.
    assert results[30.0]["eos_probability"] > 1.5 * results[1.0]["eos_probability"], results

    cache, symbols = TokenCache(text_cache_dir), TextSymbols("phonemes")
    rates = [len(cache.semantic(i)) / len(symbols.encode(cache.items[i].text)) for i in cache.indices("train")]
    config = TextToSemantic.from_pretrained(tmp_path / "eos30.0" / "model").config
    assert config.min_tokens_per_symbol == pytest.approx(min(rates))
    assert config.max_tokens_per_symbol == pytest.approx(max(rates))
    # A run initialised from it re-measures the rates on its own data instead of refusing the weights.
    again = Trainer(t2s_recipe(text_cache_dir, 1.0), tmp_path / "again", progress=False,
                    init_from=tmp_path / "eos30.0" / "model", until_step=1)
    assert again.fit()["step"] == 1


def test_ema_warms_up_so_that_a_short_run_forgets_its_initialization() -> None:
    """Weights that jump from 0 to 1 and stay: after 1250 updates at decay 0.999 a fixed-decay
    average would still hold 0.999 ** 1250 = 29% of the zeros; the warmed-up one holds almost
    none, and its decay reaches the configured value only late."""
    from soundstorm.train.ema import EMA, warmed_up_decay

    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    ema = EMA(module, decay=0.999)
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(1.0)
    for step in range(1250):
        ema.update(module, step)
    weight = ema.module.weight
    assert float(weight.min()) > 0.99 > 1 - 0.999 ** 1250
    assert warmed_up_decay(0.999, 0) == 0.1 and warmed_up_decay(0.999, 100) < 0.92
    assert warmed_up_decay(0.999, 20_000) == 0.999 and warmed_up_decay(0.5, 8) == 0.5
