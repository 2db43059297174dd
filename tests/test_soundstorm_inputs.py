"""A codec decoder trained on the finer levels SoundStorm predicts (options.soundstorm_inputs):
the decoder reads given codes as decode() would, the predictor keeps level 1 and replaces only
the levels SoundStorm decodes, and a run trains the decoder without moving a token."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_token_cache import make_corpus

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.codecs import load_codec
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.codecs.soundstream.soundstorm_inputs import FinerLevelPredictor, SoundStormInputs
from soundstorm.decoding import decode_finer_levels
from soundstorm.semantic.extractors import MfccFeatures
from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer
from soundstorm.train.recipe import Recipe
from soundstorm.train.trainer import Trainer

RECIPE = Path(__file__).parent.parent / "recipes" / "demo" / "codec-soundstorm-inputs.toml"
VOCOS = dict(decoder="vocos", vocos_dim=32, vocos_depth=2, vocos_n_fft=1280)


def write_models(root: Path, codebook_size: int = 64) -> Path:
    """A tiny Vocos codec (4 x 64 codes at 50 Hz), an MFCC k-means tokenizer (16 tokens at 25
    Hz) and a SoundStorm over them."""
    torch.manual_seed(0)
    SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).save_pretrained(root / "codec")
    KMeansTokenizer(MfccFeatures(), torch.randn(16, 39)).save(root / "semantic")
    SoundStorm(SoundStormConfig(codebook_size=codebook_size, num_quantizers=4, semantic_vocab_size=16,
                                semantic_rate_ratio=2, dim=32, depth=1, heads=2)).save_pretrained(root / "soundstorm")
    return root


def test_a_decoder_given_codes_decodes_each_example_s_prefix_of_levels() -> None:
    torch.manual_seed(1)
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).eval()
    wav = 0.1 * torch.randn(3, 1, 3200)
    codes = torch.randint(64, (3, 10, 4))
    levels = torch.tensor([1, 4, 2])
    with torch.no_grad():
        out = model(wav, levels=levels, codes=codes)
        for b in range(3):
            alone = model.decode(codes[b : b + 1, :, : int(levels[b])])[..., :3200]
            torch.testing.assert_close(out.reconstruction[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    assert float(out.commitment_loss) == 0.0
    with pytest.raises(ValueError, match=r"codes must be \[B, T, Q\] = \[3, 10, 4\]"):
        model(wav, codes=codes[:, :9])


def test_the_predictor_keeps_level_one_and_the_levels_soundstorm_does_not_decode(tmp_path: Path) -> None:
    models = write_models(tmp_path)
    codec = load_codec(f"soundstream:{models / 'codec'}")
    predictor = FinerLevelPredictor(SoundStormInputs(str(models / "soundstorm"), str(models / "semantic"), levels=3),
                                    codec.model.config, torch.device("cpu"))
    wav = 0.1 * torch.randn(2, 1, 3200, generator=torch.Generator().manual_seed(2))
    codes = codec.encode(wav)  # [2, 10, 4]
    made = predictor(wav, codes)
    assert made.shape == codes.shape
    assert torch.equal(made[..., 0], codes[..., 0]) and torch.equal(made[..., 3], codes[..., 3])
    tokens, _ = predictor.semantic.tokenize(wav)
    assert torch.equal(made[..., :3], decode_finer_levels(predictor.model, tokens[:, :5], codes[..., :1], 3))


def test_the_decoder_reads_soundstorm_s_levels_as_codes_or_as_expected_vectors(tmp_path: Path) -> None:
    models = write_models(tmp_path)
    codec = load_codec(f"soundstream:{models / 'codec'}")
    quantizer = codec.model.quantizer
    wav = 0.1 * torch.randn(2, 1, 3200, generator=torch.Generator().manual_seed(2))
    codes = codec.encode(wav)  # [2, 10, 4]
    hard = FinerLevelPredictor(SoundStormInputs(str(models / "soundstorm"), str(models / "semantic"), levels=3),
                               codec.model.config, torch.device("cpu"))
    semantic = hard.semantic_tokens(wav, codes.shape[1])  # [2, 5]
    assert torch.equal(semantic, hard.semantic.tokenize(wav)[0][:, :5])
    torch.testing.assert_close(hard.decoder_inputs(semantic, codes, quantizer), quantizer.decode(hard(wav, codes)[..., :3]))
    soft = FinerLevelPredictor(SoundStormInputs(str(models / "soundstorm"), str(models / "semantic"), levels=3,
                                                soft_temperature=0.5), codec.model.config, torch.device("cpu"))
    tokens, _ = soft.semantic.tokenize(wav)
    finer, logits = decode_finer_levels(soft.model, tokens[:, :5], codes[..., :1], 3, return_logits=True)
    expected = quantizer.decode_expected(codes[..., :1], (logits / 0.5).softmax(-1))
    latents = soft.decoder_inputs(semantic, codes, quantizer)
    torch.testing.assert_close(latents, expected)
    assert not torch.allclose(latents, quantizer.decode(finer))
    # The decoder reads given latents as decode() reads codes' vectors; bad shapes are refused.
    with torch.no_grad():
        torch.testing.assert_close(codec.model(wav, latents=quantizer.decode(codes)).reconstruction,
                                   codec.model.decode(codes)[..., :3200])
    with pytest.raises(ValueError, match=r"latents must be float \[B, D, T\] = \[2, 16, 10\]"):
        codec.model(wav, latents=latents[..., :9])
    with pytest.raises(ValueError, match="without codes or levels"):
        codec.model(wav, codes=codes, latents=latents)


def test_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    models = write_models(tmp_path)
    codec = SoundStreamConfig.preset("tiny", **VOCOS)
    base = {"soundstorm": str(models / "soundstorm"), "semantic": str(models / "semantic")}
    for bad, message in [({"share": 1.5}, "share must be in"), ({"levels": 1}, "levels must be an integer >= 2"),
                         ({"guidance": 2.0}, "fields: soundstorm, semantic"),
                         ({"soft_temperature": -1}, "soft_temperature must be a number >= 0")]:
        with pytest.raises(ValueError, match=message):
            SoundStormInputs.from_dict({**base, **bad})
    with pytest.raises(ValueError, match="levels is 5; the codec has 4"):
        FinerLevelPredictor(SoundStormInputs.from_dict({**base, "levels": 5}), codec, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="no folder"):
        FinerLevelPredictor(SoundStormInputs.from_dict({**base, "soundstorm": str(tmp_path / "none")}), codec,
                            torch.device("cpu"))
    other = write_models(tmp_path / "other", codebook_size=32)
    with pytest.raises(ValueError, match="makes 4 levels of 32 codes; this codec has 4 of 64"):
        FinerLevelPredictor(SoundStormInputs.from_dict({**base, "soundstorm": str(other / "soundstorm")}), codec,
                            torch.device("cpu"))


def run_overrides(manifest: Path, models: Path, steps: int) -> list[str]:
    return [f'data.cache="{manifest}"', 'model.preset="tiny"', "model.vocos_dim=32", "model.vocos_depth=2",
            "data.batch_size=4", "data.max_frames=10", "data.num_workers=0", "optimizer.warmup_steps=1",
            f"schedule.valid_every={steps}", f"schedule.checkpoint_every={steps}", "schedule.valid_batches=1",
            "optimizer.bf16=false", f"optimizer.max_steps={steps}",
            f'options.soundstorm_inputs.soundstorm="{models / "soundstorm"}"',
            f'options.soundstorm_inputs.semantic="{models / "semantic"}"', "options.soundstorm_inputs.share=1.0"]


def test_training_on_soundstorm_s_codes_moves_the_decoder_and_no_token(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")
    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    trainer = Trainer(Recipe.load(RECIPE, run_overrides(manifest, models, 3)), tmp_path / "run", progress=False,
                      init_from=models / "codec")
    trainer.initialize_from(models / "codec")
    summary = trainer.fit()
    assert summary["step"] == 3
    before, after = load_codec(f"soundstream:{models / 'codec'}"), load_codec(f"soundstream:{tmp_path / 'run' / 'model'}")
    assert after.encoder_digest == before.encoder_digest  # the token cache stays valid
    changed = [name for name, p in after.model.decoder.state_dict().items()
               if not torch.equal(p, before.model.decoder.state_dict()[name])]
    assert changed
    metrics = trainer.validate()
    # The run's loss: the decoder on the true codes and on SoundStorm's, by the share trained (all).
    assert metrics["loss"] == pytest.approx(metrics["mel_soundstorm_inputs"]) and metrics["mel"] > 0

    # The same on SoundStorm's finer levels as expected vectors (the pipeline's soft decoding).
    soft = Trainer(Recipe.load(RECIPE, [*run_overrides(manifest, models, 2), "options.soundstorm_inputs.soft_temperature=0.5"]),
                   tmp_path / "soft", progress=False, init_from=models / "codec")
    soft.initialize_from(models / "codec")
    assert soft.fit()["step"] == 2
    assert load_codec(f"soundstream:{tmp_path / 'soft' / 'model'}").encoder_digest == before.encoder_digest
    assert soft.validate()["mel_soundstorm_inputs"] > 0

    with pytest.raises(ValueError, match="needs options.decoder_only = true"):
        Trainer(Recipe.load(RECIPE, [*run_overrides(manifest, models, 1), "options.decoder_only=false"]),
                tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="needs options.decoder_only = true"):
        Trainer(Recipe.load(RECIPE, [*run_overrides(manifest, models, 1), "options.adversarial=true"]),
                tmp_path / "bad2", progress=False)
