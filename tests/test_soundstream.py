"""Our SoundStream codec: shapes and frame rate, the residual quantizer's update rules, losses,
discriminator, a short real training run on flite speech, checkpoints, the Codec wrapper, the
crop dataset, and clear errors for bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp

from soundstorm.codecs import load_codec
from soundstorm.codecs.soundstream import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    SoundStream,
    SoundStreamCodec,
    SoundStreamConfig,
    SoundStreamLossConfig,
    SoundStreamObjective,
    fit,
)
from soundstorm.codecs.soundstream.losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_filterbank,
)
from soundstorm.codecs.soundstream.quantizer import ResidualVectorQuantizer
from soundstorm.data.audio import load_audio
from soundstorm.data.audio_dataset import AudioCropDataset, collate_crops
from soundstorm.data.manifest import ManifestEntry, write_manifest

SPEECH = (
    "The quick brown fox jumps over the lazy dog. "
    "A codec turns speech into a few thousand bits a second and back again."
)


def tiny_model(seed: int = 0, **overrides: object) -> SoundStream:
    torch.manual_seed(seed)
    return SoundStream(SoundStreamConfig.preset("tiny", **overrides))


def noise(batch: int = 2, samples: int = 1600, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, samples, generator=generator)  # [B, 1, N]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """About 5 s of flite speech at 16 kHz: float [N]."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite, or make system-deps)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", SPEECH, "-o", str(path)], check=True, capture_output=True)
    wav, _ = load_audio(path, sample_rate=16000, resample=True)
    return torch.from_numpy(wav)


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model after a few training steps (codebooks initialised), saved."""
    model = tiny_model()
    fit(model, [noise(2, 3200, seed=s) for s in range(3)])
    path = tmp_path_factory.mktemp("codec") / "soundstream"
    model.save_pretrained(path)
    return path


# ---------------------------------------------------------------- config and shapes


def test_default_config_is_4_kbps_at_50_hz_and_small() -> None:
    config = SoundStreamConfig()
    assert (config.hop_length, config.frame_rate, config.bitrate) == (320, 50.0, 4000.0)
    assert (config.num_quantizers, config.codebook_size) == (8, 1024)
    params = SoundStream(config).num_parameters()
    assert 300_000 <= params <= 2_500_000, params  # trains on a CPU
    assert SoundStream(SoundStreamConfig.preset("paper")).num_parameters() > 3 * params


def test_config_validates_and_round_trips_through_json() -> None:
    config = SoundStreamConfig.preset("tiny", strides=[2, 2])
    assert config.strides == (2, 2)
    restored = SoundStreamConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    with pytest.raises(ValueError, match="unknown SoundStreamConfig fields"):
        SoundStreamConfig.from_dict({"chanels": 8})
    with pytest.raises(ValueError, match="codebook_size"):
        SoundStreamConfig(codebook_size=0)
    with pytest.raises(ValueError, match="strides"):
        SoundStreamConfig(strides=())
    with pytest.raises(ValueError, match="ema_decay"):
        SoundStreamConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="unknown SoundStream preset"):
        SoundStreamConfig.preset("huge")
    loss = SoundStreamLossConfig(mel_n_ffts=[64], mel_n_mels=[8])
    assert SoundStreamLossConfig.from_dict(json.loads(json.dumps(loss.to_dict()))) == loss
    with pytest.raises(ValueError, match="adversarial_loss"):
        SoundStreamLossConfig(adversarial_loss="wasserstein")
    with pytest.raises(ValueError, match="equally long"):
        SoundStreamLossConfig(mel_n_ffts=[64, 128], mel_n_mels=[8])


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 1000])
def test_shapes_follow_the_frame_rate(samples: int) -> None:
    model = tiny_model().eval()
    wav = noise(2, samples)
    T = math.ceil(samples / 320)
    codes = model.encode(wav)
    assert codes.shape == (2, T, 4) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    assert model.decode(codes).shape == (2, 1, T * 320)
    assert model.decode(codes[..., :2]).shape == (2, 1, T * 320)  # any prefix of levels decodes
    output = model(wav)
    assert output.reconstruction.shape == (2, 1, samples)
    assert torch.equal(output.codes, codes)  # forward and encode agree (eval: no codebook update)


def test_causal_encoder_never_looks_ahead() -> None:
    model = tiny_model(causal=True).eval()
    wav = noise(1, 3200)
    changed = wav.clone()
    changed[..., 2000:] += 0.5  # frames before sample 2000 must not notice
    with torch.no_grad():
        before, after = model.encoder(wav), model.encoder(changed)  # [1, D, 10]
        out_before, out_after = model(wav).reconstruction, model(changed).reconstruction
    torch.testing.assert_close(before[..., : 2000 // 320], after[..., : 2000 // 320])
    assert not torch.allclose(before, after)
    torch.testing.assert_close(out_before[..., :1600], out_after[..., :1600])


# ---------------------------------------------------------------- residual quantizer


def quantizer(**overrides: object) -> ResidualVectorQuantizer:
    values: dict[str, object] = dict(
        latent_dim=8, num_quantizers=4, codebook_size=32, kmeans_iters=10, dead_code_steps=0
    )
    values.update(overrides)
    torch.manual_seed(0)
    return ResidualVectorQuantizer(SoundStreamConfig.preset("tiny", **values))


def clustered_latents(batch: int = 4, frames: int = 50, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """[B, 8, T] latents around 6 well-separated centres (plus a shift)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.randn(6, 8, generator=torch.Generator().manual_seed(123))
    choice = torch.randint(0, 6, (batch * frames,), generator=generator)
    x = centres[choice] + 0.1 * torch.randn(batch * frames, 8, generator=generator) + shift
    return x.view(batch, frames, 8).transpose(1, 2)


def test_kmeans_initialisation_places_codes_on_the_data() -> None:
    rvq = quantizer().train()
    latents = clustered_latents()
    random_init = rvq.levels[0].embedding.clone()
    output = rvq(latents)
    codebook = rvq.levels[0].embedding
    assert bool(rvq.levels[0].initialized) and not torch.equal(codebook, random_init)
    # 32 codes, 6 tight clusters: every code used at level 1 sits on a cluster centre.
    x = latents.transpose(1, 2).reshape(-1, 8)
    used = codebook[output.codes[..., 0].unique()]
    assert torch.cdist(used, x).min(dim=1).values.max() < 1.0
    first_level_error = (x - codebook[output.codes[..., 0].reshape(-1)]).pow(2).mean()
    assert first_level_error < 0.05 * x.var(dim=0).sum()


def test_ema_updates_move_the_codebooks_towards_the_data() -> None:
    rvq = quantizer(ema_decay=0.8).train()
    rvq(clustered_latents(seed=0))  # k-means on the original data
    shifted = [clustered_latents(seed=s, shift=3.0) for s in range(1, 30)]
    x = torch.cat([s.transpose(1, 2).reshape(-1, 8) for s in shifted])

    def distance_to_data() -> float:
        return float(torch.cdist(x, rvq.levels[0].embedding).min(dim=1).values.mean())

    start = distance_to_data()
    for latents in shifted:
        rvq(latents)
    assert distance_to_data() < 0.2 * start


def test_dead_codes_restart_at_batch_vectors() -> None:
    rvq = quantizer(dead_code_steps=3).train()
    latents = clustered_latents()
    rvq(latents)
    level = rvq.levels[0]
    level.embedding[0] = 1e4  # far from everything: never chosen again
    level.embedding_sum[0] = 1e4 * level.cluster_size[0]
    for _ in range(3):  # unused for 3 steps: restarted at the end of the third
        rvq(latents)
    x = latents.transpose(1, 2).reshape(-1, 8)
    assert float((x - level.embedding[0]).norm(dim=1).min()) < 1e-5  # now exactly a batch vector
    assert int(level.unused_steps[0]) == 0 and float(level.cluster_size[0]) == 1.0


def test_straight_through_gradient_is_the_identity() -> None:
    rvq = quantizer().train()
    latents = clustered_latents().requires_grad_(True)
    output = rvq(latents)
    weights = torch.randn_like(latents)
    (output.quantized * weights).sum().backward()
    torch.testing.assert_close(latents.grad, weights)
    latents.grad = None
    rvq(latents).commitment_loss.backward()
    assert latents.grad is not None and float(latents.grad.abs().sum()) > 0


def test_gradients_reach_the_encoder_through_the_quantizer() -> None:
    model = tiny_model().train()
    output = model(noise(2, 3200))
    (output.reconstruction.pow(2).mean() + output.commitment_loss).backward()
    first_conv = model.encoder.layers[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and float(first_conv.grad.abs().sum()) > 0


def test_quantizer_dropout_decodes_each_prefix_and_more_levels_reconstruct_better() -> None:
    rvq = quantizer(ema_decay=0.5, dead_code_steps=5).train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):  # fit the codebooks of every level to Gaussian latents
        rvq(torch.randn(4, 8, 50, generator=generator))
    rvq.eval()
    latents = torch.randn(3, 8, 50, generator=generator)
    levels = torch.tensor([1, 2, 4])
    output = rvq(latents, levels=levels)
    for b, kept in enumerate(levels.tolist()):
        prefix = rvq.decode(output.codes[b : b + 1, :, :kept])  # [1, 8, 50]
        torch.testing.assert_close(output.quantized[b : b + 1], prefix)
    errors = [float((rvq.decode(output.codes[..., :q]) - latents).pow(2).mean()) for q in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert torch.equal(rvq.encode(latents, 2), output.codes[..., :2])
    with pytest.raises(ValueError, match="levels must be int64"):
        rvq(latents, levels=torch.tensor([0, 1, 2]))


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    rvq = quantizer(dead_code_steps=2).train()  # same initial weights on both ranks (seed 0)
    for step in range(6):  # each rank sees different data, and restarts happen
        rvq(clustered_latents(seed=10 * rank + step, shift=float(rank)))
    torch.save(rvq.state_dict(), os.path.join(out_dir, f"rvq{rank}.pt"))

    # A whole GAN step under DDP: one discriminator forward per backward, codebooks in sync.
    model = torch.nn.parallel.DistributedDataParallel(tiny_model(seed=1).train())
    torch.manual_seed(2)
    discriminator = torch.nn.parallel.DistributedDataParallel(
        MultiScaleSTFTDiscriminator(DiscriminatorConfig(n_ffts=(128, 64), filters=4))
    )
    config = SoundStreamLossConfig(adversarial=True, mel_n_ffts=(64, 256), mel_n_mels=(8, 32))
    objective = SoundStreamObjective(config, sample_rate=16000)
    generator_optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    discriminator_optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.01)
    for step in range(2):
        wav = noise(2, 3200, seed=10 * rank + step)
        generated = objective.generator_losses(model, discriminator, wav, step)
        generator_optimizer.zero_grad()
        generated.losses["total"].backward()
        generator_optimizer.step()
        discriminator_optimizer.zero_grad()
        objective.discriminator_losses(discriminator, wav, generated.reconstruction.detach())["total"].backward()
        discriminator_optimizer.step()
    torch.save(
        {**model.module.state_dict(), **{f"d.{k}": v for k, v in discriminator.module.state_dict().items()}},
        os.path.join(out_dir, f"gan{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def test_codebooks_and_weights_stay_identical_across_ddp_ranks(tmp_path: Path) -> None:
    # spawn, not fork: a forked child of a process that has run OpenMP kernels can hang.
    mp.start_processes(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    for kind in ("rvq", "gan"):
        first, second = (torch.load(tmp_path / f"{kind}{r}.pt") for r in range(2))
        for name in first:
            torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=f"{kind}: {name}")
    # And the ranks really did pool their data: a single process on rank 0's data differs.
    first = torch.load(tmp_path / "rvq0.pt")
    alone = quantizer(dead_code_steps=2).train()
    for step in range(6):
        alone(clustered_latents(seed=step))
    assert not torch.equal(alone.state_dict()["levels.0.embedding"], first["levels.0.embedding"])


# ---------------------------------------------------------------- losses and discriminator


@pytest.mark.parametrize(("n_fft", "n_mels"), [(32, 5), (1024, 80), (2048, 320)])
def test_mel_filterbank_is_sane(n_fft: int, n_mels: int) -> None:
    bank = mel_filterbank(n_fft, n_mels, 16000)
    assert bank.shape == (n_mels, n_fft // 2 + 1)
    assert bool((bank.sum(dim=1) > 0).all()) and bool((bank >= 0).all()) and float(bank.max()) <= 1.0
    peaks = bank.argmax(dim=1)
    assert bool((peaks[1:] >= peaks[:-1]).all())
    if n_fft == 1024:  # fine enough that every band peaks on its own bin
        assert bool((peaks[1:] > peaks[:-1]).all())
    assert int(peaks[-1]) > n_fft // 4  # the top band is in the upper half of the spectrum


def test_reconstruction_losses_vanish_only_for_identical_audio() -> None:
    objective = SoundStreamObjective(SoundStreamLossConfig(), sample_rate=16000)
    real = noise(2, 4000)
    fake = real + 0.01 * torch.randn_like(real)
    same = objective.reconstruction_losses(real, real.clone())
    different = objective.reconstruction_losses(fake, real)
    for name in same:
        assert float(same[name]) < 1e-6, name
        assert float(different[name]) > 1e-4, name
    stft, mel = MultiResolutionSTFTLoss((64,)), MultiScaleMelLoss(16000, (64,), (8,))
    assert float(stft(real, real)[0]) == 0.0 and float(mel(fake, real)) > 0.0


def test_adversarial_losses() -> None:
    confident_real, confident_fake = [torch.full((2, 1, 3, 4), 2.0)], [torch.full((2, 1, 3, 4), -2.0)]
    assert float(discriminator_adversarial_loss(confident_real, confident_fake, "hinge")) == 0.0
    assert float(discriminator_adversarial_loss(confident_fake, confident_real, "hinge")) == 6.0
    assert float(generator_adversarial_loss(confident_real, "hinge")) == 0.0
    assert float(generator_adversarial_loss([torch.ones(2, 1, 3, 4)], "lsgan")) == 0.0
    assert float(discriminator_adversarial_loss([torch.ones(1)], [torch.zeros(1)], "lsgan")) == 0.0
    features = [[torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 3)]]
    assert float(feature_matching_loss(features, features)) == 0.0
    assert float(feature_matching_loss(features, [[f + 1 for f in features[0]]])) > 0.0
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        generator_adversarial_loss(confident_real, "wgan")


def test_discriminator_outputs_and_feature_maps() -> None:
    config = DiscriminatorConfig(n_ffts=(128, 64), filters=4, dilations=(1, 2, 4))
    discriminator = MultiScaleSTFTDiscriminator(config)
    output = discriminator(noise(2, 4000))
    assert len(output.logits) == len(output.features) == 2
    for n_fft, logits, features in zip(config.n_ffts, output.logits, output.features, strict=True):
        frames, bins = 4000 // (n_fft // 4) + 1, n_fft // 2 + 1
        assert len(features) == 1 + len(config.dilations) + 1
        widths = [bins]
        for _ in config.dilations:
            widths.append(math.ceil(widths[-1] / 2))  # stride 2 in frequency
        widths.append(widths[-1])
        for feature, width in zip(features, widths, strict=True):
            assert feature.shape == (2, 4, frames, width)
        assert logits.shape == (2, 1, frames, widths[-1])
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        discriminator(torch.zeros(2, 4000))


def test_generator_and_discriminator_steps_with_warmup() -> None:
    model = tiny_model().train()
    discriminator = MultiScaleSTFTDiscriminator(DiscriminatorConfig(n_ffts=(128, 64), filters=4))
    config = SoundStreamLossConfig(adversarial=True, adversarial_start_step=2, mel_n_ffts=(64, 256), mel_n_mels=(8, 32))
    objective = SoundStreamObjective(config, sample_rate=16000)
    wav = noise(2, 3200)
    warmup = objective.generator_losses(model, discriminator, wav, step=1)
    assert "adversarial" not in warmup.losses and not objective.adversarial_active(1)
    result = objective.generator_losses(model, discriminator, wav, step=2)
    assert {"total", "mel", "stft_convergence", "stft_log_magnitude", "waveform", "commitment", "adversarial",
            "feature_matching"} <= set(result.losses)
    assert result.reconstruction.shape == wav.shape
    result.losses["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    discriminator.zero_grad(set_to_none=True)
    losses = objective.discriminator_losses(discriminator, wav, result.reconstruction.detach())
    assert set(losses) == {"total", "real_score", "fake_score"} and float(losses["total"].detach()) > 0
    losses["total"].backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    with pytest.raises(ValueError, match="no discriminator"):
        objective.generator_losses(model, None, wav, step=5)
    with pytest.raises(ValueError, match="sample_rate=16000"):
        SoundStreamObjective(config, sample_rate=24000).generator_losses(model, discriminator, wav, step=0)


def test_training_on_speech_reduces_the_reconstruction_loss(speech: torch.Tensor) -> None:
    """About 40 s on one core: 220 steps of 2 x 0.5 s crops. The mel loss sits on a plateau
    (about 0.7) for the first 60 to 120 steps, while the decoder learns spectral envelopes, then
    falls. Training batches are random crops whose loss varies a lot with what they hold, so the
    loss is measured on six fixed held-out crops: after 10 steps (codebooks initialised, on the
    plateau) and at the end."""
    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.preset("tiny", channels=16, latent_dim=32))
    objective = SoundStreamObjective(SoundStreamLossConfig(quantizer_dropout=0.0), model.sample_rate)
    generator = torch.Generator().manual_seed(0)
    crop, steps = 8000, 220
    starts = torch.randint(0, len(speech) - crop, (steps, 2), generator=generator)
    batches = [torch.stack([speech[s : s + crop] for s in row.tolist()])[:, None] for row in starts]
    fixed = torch.stack([speech[s : s + crop] for s in torch.linspace(0, len(speech) - crop, 6).long().tolist()])[:, None]

    def held_out_mel() -> float:
        model.eval()
        with torch.no_grad():
            loss = float(objective.reconstruction_losses(model(fixed).reconstruction, fixed)["mel"])
        model.train()
        return loss

    history = fit(model, batches[:10], objective=objective, lr=1e-3)
    plateau = held_out_mel()
    history += fit(model, batches[10:], objective=objective, lr=1e-3)
    final = held_out_mel()
    assert final < 0.8 * plateau, (plateau, final)
    log_magnitude = [h["stft_log_magnitude"] for h in history]
    assert np.mean(log_magnitude[-20:]) < np.mean(log_magnitude[:10])


def test_save_and_load_round_trip_is_exact(trained_folder: Path) -> None:
    loaded = SoundStream.from_pretrained(trained_folder)
    assert loaded.config == SoundStreamConfig.preset("tiny")
    assert bool(loaded.quantizer.levels[0].initialized)
    again = trained_folder.parent / "again"
    loaded.save_pretrained(again)
    reloaded = SoundStream.from_pretrained(again)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    wav = noise(1, 2000, seed=7)
    loaded.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.encode(wav), reloaded.encode(wav))
        assert torch.equal(loaded(wav).reconstruction, reloaded(wav).reconstruction)


def test_codec_through_load_codec(trained_folder: Path) -> None:
    codec = load_codec(f"soundstream:{trained_folder}")
    assert isinstance(codec, SoundStreamCodec)
    config = SoundStreamConfig.preset("tiny")
    assert codec.describe() == {
        "name": f"soundstream:{trained_folder}",
        "sample_rate": 16000,
        "frame_rate": 50.0,
        "num_quantizers": config.num_quantizers,
        "codebook_size": config.codebook_size,
        "encoder_weights": codec.encoder_digest,
    }
    # Retrained in place, the folder keeps its name but not its digest: a token cache tells them apart.
    assert len(codec.encoder_digest) == 16
    assert SoundStreamCodec(tiny_model(seed=1), name=codec.name).encoder_digest != codec.encoder_digest
    # A new decoder makes the same tokens: the digest, and so every cache, stands.
    retuned = SoundStream.from_pretrained(trained_folder)
    with torch.no_grad():
        next(retuned.decoder.parameters()).add_(1.0)
    assert SoundStreamCodec(retuned, name=codec.name).encoder_digest == codec.encoder_digest
    wav = noise(2, 1000)
    codes = codec.encode(wav)
    assert codes.shape == (2, codec.num_frames(1000), 4) == (2, 4, 4)
    assert codec.decode(codes).shape == (2, 1, 4 * 320)
    assert codec.decode(codes[..., :1]).shape == (2, 1, 4 * 320)
    model = SoundStream.from_pretrained(trained_folder).eval()
    with torch.no_grad():
        assert torch.equal(codes, model.encode(wav))
        torch.testing.assert_close(codec.decode(codes), model.decode(codes))
    low = load_codec(f"soundstream:{trained_folder}?num_quantizers=2")
    assert low.num_quantizers == 2 and torch.equal(low.encode(wav), codes[..., :2])
    assert load_codec(low.name).describe() == low.describe()  # the name is the spec
    assert codec.with_num_quantizers(2).describe() == low.describe()


def test_codec_rejects_bad_input(trained_folder: Path) -> None:
    codec = SoundStreamCodec.from_pretrained(trained_folder)
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        codec.encode(torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="downmix"):
        codec.encode(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="float"):
        codec.encode(torch.zeros(1, 1, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(torch.full((1, 1, 1000), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        codec.encode(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        codec.decode(torch.full((1, 3, 4), 64, dtype=torch.int64))
    with pytest.raises(ValueError, match="levels"):
        codec.decode(torch.zeros(1, 3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        codec.decode(torch.zeros(1, 3, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="num_quantizers"):
        load_codec(f"soundstream:{trained_folder}?num_quantizers=9")
    with pytest.raises(ValueError, match="soundstream:PATH"):
        load_codec(f"soundstream:{trained_folder}?levels=2")
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        load_codec("soundstream:/nonexistent/codec")
    model = SoundStream.from_pretrained(trained_folder)
    with pytest.raises(ValueError, match="num_quantizers must be in"):
        model.encode(noise(1, 320), num_quantizers=0)


# ---------------------------------------------------------------- the crop dataset


def test_audio_crop_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = {"long": (3.0, 16000, "train"), "short": (0.25, 16000, "train"), "fast": (2.0, 22050, "valid")}
    entries = []
    for name, (seconds, rate, split) in files.items():
        sf.write(tmp_path / f"{name}.wav", (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
        entries.append(
            ManifestEntry(id=name, path=f"{name}.wav", duration=seconds, sample_rate=rate, speaker="s", split=split)
        )
    write_manifest(entries, tmp_path / "manifest.jsonl")

    dataset = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=16000, crop_seconds=0.5, split="train", seed=3)
    assert len(dataset) == 2
    long, short = dataset[0], dataset[1]
    assert long.wav.shape == short.wav.shape == (1, 8000) and long.wav.dtype == torch.float32
    assert long.length == 8000 and short.length == 4000
    assert bool((short.wav[0, 4000:] == 0).all()) and bool((short.wav[0, :4000] != 0).any())
    assert torch.equal(dataset[0].wav, long.wav)  # deterministic for (seed, epoch, index)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0].wav, long.wav)  # a new window each epoch
    batch = collate_crops([dataset[0], dataset[1]])
    assert batch.wav.shape == (2, 1, 8000) and batch.lengths.tolist() == [8000, 4000] and len(batch) == 2

    resampled = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=16000, crop_seconds=3.0, split="valid")
    assert resampled[0].length == 32000  # 2 s of 22050 Hz audio, resampled to 16 kHz
    with pytest.raises(ValueError, match="no entries of split 'test'"):
        AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=16000, crop_seconds=1.0, split="test")
    with pytest.raises(ValueError, match="crop_seconds"):
        AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=16000, crop_seconds=0.0)

    # Another seed gives other windows.
    other = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=16000, crop_seconds=0.5, split="train", seed=4)
    assert not torch.equal(other[0].wav, long.wav)


def test_speed_perturbation_moves_pitch_and_duration_by_the_drawn_factor(tmp_path: Path) -> None:
    # A 1 s, 500 Hz tone: sped up by s it must last 1/s seconds and sound at 500 s Hz. A wrong
    # direction of the resampling (s Hz read as 1/s) or a factor outside the range fails here.
    rate, seconds, tone = 16000, 1.0, 500.0
    t = np.arange(int(seconds * rate)) / rate
    sf.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32), rate)
    write_manifest([ManifestEntry(id="tone", path="tone.wav", duration=seconds, sample_rate=rate, speaker="s",
                                  split="train")], tmp_path / "manifest.jsonl")
    dataset = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=2.0, seed=5,
                               speed_range=(0.8, 1.25))
    speeds = []
    for epoch in range(12):
        dataset.set_epoch(epoch)
        crop = dataset[0]
        assert 0.8 <= crop.speed <= 1.25
        assert abs(crop.length - rate * seconds / crop.speed) <= 2  # the whole file fits the 2 s crop
        wav = crop.wav[0, : crop.length].numpy()
        spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=1 << 16))
        peak = np.argmax(spectrum) * rate / (1 << 16)
        assert abs(peak - tone * crop.speed) < 3.0, (epoch, crop.speed, peak)
        assert torch.equal(dataset[0].wav, crop.wav)  # deterministic for (seed, epoch, index)
        speeds.append(crop.speed)
    assert min(speeds) < 0.95 and max(speeds) > 1.05  # the draws spread over the range

    plain = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=2.0, seed=5)
    assert plain[0].speed == 1.0 and plain[0].length == rate
    with pytest.raises(ValueError, match="speed_range"):
        AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=2.0, speed_range=(1.2, 0.9))


def test_random_equalization_applies_the_drawn_gain_at_each_frequency(tmp_path: Path) -> None:
    # Tones at three of EQ_POINTS: each must come out scaled by 10^(gain/20) of its own point's
    # draw. Gains applied to the wrong points, in the wrong direction, or left out fail here.
    from soundstorm.data.audio_dataset import EQ_POINTS, equalize

    rate = 16000
    t = np.arange(rate) / rate
    points = (1, 3, 5)  # 250, 1400, 5000 Hz
    tones = [0.1 * np.sin(2 * np.pi * EQ_POINTS[k] * t) for k in points]
    sf.write(tmp_path / "tones.wav", np.sum(tones, axis=0).astype(np.float32), rate)
    write_manifest([ManifestEntry(id="tones", path="tones.wav", duration=1.0, sample_rate=rate, speaker="s",
                                  split="train")], tmp_path / "manifest.jsonl")
    dataset = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0, seed=2, eq_db=10.0)

    def amplitude(wav: np.ndarray, frequency: float) -> float:  # of a tone at an exact FFT bin of 1 s
        middle = wav[rate // 4 : 3 * rate // 4]  # away from the ends, where the filter's response rings
        return float(2 * np.abs(np.fft.rfft(middle))[int(frequency / 2)] / len(middle))

    seen = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        crop = dataset[0]
        assert len(crop.eq_gains_db) == len(EQ_POINTS) and all(-10 <= g <= 10 for g in crop.eq_gains_db)
        wav = crop.wav[0].numpy()
        assert np.abs(wav).max() <= 0.99 + 1e-6
        scale = 1.0 if np.abs(equalize(np.sum(tones, axis=0).astype(np.float32), rate, crop.eq_gains_db)).max() <= 0.99 \
            else None  # a loud boost is scaled down as a whole: compare ratios then
        gains = [amplitude(wav, EQ_POINTS[k]) / 0.1 for k in points]
        expected = [10 ** (crop.eq_gains_db[k] / 20) for k in points]
        if scale is None:
            gains, expected = [g / gains[0] for g in gains], [e / expected[0] for e in expected]
        assert np.allclose(gains, expected, rtol=0.03), (epoch, gains, expected)
        assert torch.equal(dataset[0].wav, crop.wav)  # deterministic for (seed, epoch, index)
        seen.append(crop.eq_gains_db)
    assert len(set(seen)) == len(seen)  # new draws each epoch

    plain = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0, seed=2)
    assert plain[0].eq_gains_db == () and np.allclose(plain[0].wav[0].numpy(), np.sum(tones, axis=0), atol=1e-4)  # 16-bit file
    assert np.abs(equalize(plain[0].wav[0].numpy(), rate, [0.0] * len(EQ_POINTS)) - plain[0].wav[0].numpy()).max() < 1e-6
    with pytest.raises(ValueError, match="eq_db"):
        AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0, eq_db=0.0)


def test_random_formant_shift_moves_the_envelope_of_crop_and_reference_alike(tmp_path: Path) -> None:
    # A vowel-like sound (harmonics of 125 Hz under one resonance at 1000 Hz) per utterance: each
    # crop's resonance must sit at its drawn factor times where it was, its harmonics where they
    # were, and its voice reference must carry the same factor.
    from soundstorm.data.formant import formant_shifted

    rate, pitch = 16000, 125.0
    t = np.arange(2 * rate) / rate
    harmonics = np.arange(1, 56)
    amplitudes = 10 ** (np.maximum(-30 * ((harmonics * pitch - 1000.0) / 600) ** 2, -40.0) / 20)
    vowel = (amplitudes[:, None] * np.sin(2 * np.pi * harmonics[:, None] * pitch * t)).sum(0)
    vowel = (0.3 * vowel / np.abs(vowel).max()).astype(np.float32)
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", vowel, rate)
    write_manifest([ManifestEntry(id=name, path=f"{name}.wav", duration=2.0, sample_rate=rate, speaker="s", split="train")
                    for name in ("a", "b")], tmp_path / "manifest.jsonl")
    dataset = AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0, seed=3,
                               formant_range=(0.8, 1.25), reference_seconds=1.0)

    def centre(wav: np.ndarray) -> float:  # power-weighted mean frequency of the harmonics within 10 dB of the peak
        power = np.abs(np.fft.rfft(wav * np.hanning(len(wav)))) ** 2
        at = np.array([power[round(h * pitch * len(wav) / rate)] for h in harmonics])
        strong = at > at.max() / 10
        return float((harmonics[strong] * pitch * at[strong]).sum() / at[strong].sum())

    seen = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        crop = dataset[0]
        assert 0.8 <= crop.formant <= 1.25 and crop.formant == dataset.formant(0)
        assert centre(crop.wav[0].numpy()) == pytest.approx(centre(vowel[:rate]) * crop.formant, rel=0.04)
        assert crop.reference is not None and crop.clean is not None
        assert centre(crop.reference[0].numpy()) == pytest.approx(centre(vowel[:rate]) * crop.formant, rel=0.04)
        assert torch.allclose(crop.clean, crop.wav)  # no equalization asked for: clean is the shifted crop
        assert torch.equal(dataset[0].wav, crop.wav)  # deterministic for (seed, epoch, index)
        seen.append(crop.formant)
    assert len(set(seen)) == len(seen)
    start = dataset[0].start
    recorded = sf.read(tmp_path / "a.wav", dtype="float32")[0]
    expected = formant_shifted(recorded[start : start + rate], rate, dataset.formant(0))
    assert np.allclose(dataset[0].wav[0].numpy(), expected, atol=1e-6)
    assert AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0)[0].formant == 1.0
    with pytest.raises(ValueError, match="formant_range"):
        AudioCropDataset(tmp_path / "manifest.jsonl", sample_rate=rate, crop_seconds=1.0, formant_range=(1.2, 0.9))
