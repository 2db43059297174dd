"""Step weights (soundstorm/model/step_linear.py): one-position passes read the float16 or int8
copy and stay within its rounding of float32; every other pass (many positions, training,
autocast) is the float32 layer exactly; saving and loading do not see the copy; and the
pipeline turns it on for "auto" on a CPU only, int8 where the CPU is AVX2 without native bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from soundstorm.model.decoder import KVCache
from soundstorm.model.step_linear import INT8_STEP_ROWS, STEP_ROWS, StepLinear, quantize_rows, use_step_weights
from soundstorm.precision import bf16_is_fast, step_weights_dtype
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline
from tests.speech_models import write_tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


def tiny_t2s() -> TextToSemantic:
    torch.manual_seed(0)
    config = TextToSemanticConfig(semantic_vocab_size=16, dim=32, depth=2, heads=2, dropout=0.0)
    return TextToSemantic(config).eval()


def test_small_passes_use_the_float16_copy_and_large_ones_the_float32_weights() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48).eval()
    step = StepLinear(linear)
    assert step.weight is linear.weight and step.bias is linear.bias and not step.training
    with torch.inference_mode():
        small = torch.randn(1, STEP_ROWS, 64)
        half = nn.functional.linear(small.half(), linear.weight.half(), linear.bias.half()).float()
        assert torch.equal(step(small), half)  # the copy, not the float32 weights
        assert not torch.equal(step(small), linear(small))
        assert torch.allclose(step(small), linear(small), atol=1e-2)  # within float16 rounding
        large = torch.randn(2, STEP_ROWS, 64)  # 2 * STEP_ROWS rows
        assert torch.equal(step(large), linear(large))
        assert step(small).dtype == torch.float32


def test_int8_copies_are_each_rows_nearest_grid_and_the_product_is_the_kernels() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 40).eval()
    with torch.no_grad():
        linear.weight[3] = 0.0  # an all-zero row: a tiny scale, codes 0, no division by zero
        linear.weight[5, 7] = -2.0  # a row's largest magnitude negative
    step = StepLinear(linear, torch.int8)
    codes, scale = step.step_weight, step.step_scale
    assert codes.dtype == torch.int8 and scale.dtype == torch.bfloat16 and scale.shape == (40,)
    assert int(codes[5, 7]) in (-127, -128) and int(codes.abs().max()) <= 128
    assert not codes[3].any()
    dequantized = codes.float() * scale.float()[:, None]
    # each weight on the nearest point of its row's grid (up to the rounding of the division)
    assert ((dequantized - linear.weight).abs() <= scale.float()[:, None] * 0.5001).all()
    torch.testing.assert_close(quantize_rows(linear.weight.detach())[0], codes, rtol=0, atol=0)
    with torch.inference_mode():
        x = torch.randn(2, 1, 64)
        expected = torch._weight_int8pack_mm(x.reshape(2, 64).bfloat16(), codes, scale).float() + linear.bias
        assert torch.equal(step(x), expected.reshape(2, 1, 40))
        # the kernel computes bfloat16 activations times the dequantized weights
        by_hand = nn.functional.linear(x.bfloat16().float(), dequantized, linear.bias)
        torch.testing.assert_close(step(x), by_hand, rtol=1e-2, atol=1e-2)
        most = torch.randn(INT8_STEP_ROWS, 64)  # int8 copies serve up to INT8_STEP_ROWS rows
        assert torch.equal(step(most), torch._weight_int8pack_mm(most.bfloat16(), codes, scale).float() + linear.bias)
        large = torch.randn(INT8_STEP_ROWS + 1, 64)
        assert torch.equal(step(large), linear(large))  # many rows: the float32 layer
    no_bias = StepLinear(nn.Linear(64, 8, bias=False).eval(), torch.int8)
    with torch.inference_mode():
        assert no_bias(torch.randn(1, 64)).shape == (1, 8)


def test_an_unknown_step_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="step weights are one of"):
        StepLinear(nn.Linear(4, 4), torch.float64)


def test_training_and_autocast_use_the_float32_layer() -> None:
    linear = nn.Linear(16, 8)
    step = StepLinear(linear)
    x = torch.randn(1, 16)
    assert step.training and torch.equal(step(x), linear(x))  # a training layer stays one
    step.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(step(x), linear(x))


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 1e-2), (torch.int8, 5e-2)])
def test_conversion_keeps_mode_state_dict_and_generation_close(dtype: torch.dtype, tolerance: float) -> None:
    reference = tiny_t2s()
    converted = tiny_t2s()
    keys = set(converted.state_dict())
    assert use_step_weights(converted, dtype) == 2 * 4 + 1  # qkv, out, up, down per block, and the head
    assert set(converted.state_dict()) == keys  # the copies are not saved
    assert all(not m.training for m in converted.modules())
    text = torch.randint(0, 30, (9,), generator=torch.Generator().manual_seed(3))
    semantic = torch.randint(0, 16, (12,), generator=torch.Generator().manual_seed(4))
    sequence = reference._sequence(text, semantic, eos=False)
    with torch.inference_mode():
        logits = {}
        for name, model in (("reference", reference), ("converted", converted)):
            cache = KVCache()
            prefix = model.decoder(model.embedding(sequence[None, :10]), cache)  # 10 rows: float32
            steps = [model.decoder(model.embedding(t.view(1, 1)), cache) for t in sequence[10:]]
            logits[name] = (prefix, model.head(torch.cat(steps, dim=1)[0]))  # prefix: hidden [1, 10, D]
    assert torch.equal(logits["reference"][0], logits["converted"][0])
    difference = (logits["reference"][1] - logits["converted"][1]).abs().max()
    assert 0 < difference < tolerance


def test_step_weights_are_for_auto_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    expected = torch.int8 if torch.backends.cpu.get_cpu_capability() == "AVX2" and not bf16_is_fast(cpu) else torch.float16
    assert step_weights_dtype("auto", cpu) == expected
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert step_weights_dtype("auto", cpu) == torch.int8
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # float16 was measured there
    assert step_weights_dtype("auto", cpu) == torch.float16
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")  # no vector int8 kernel
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert step_weights_dtype("auto", cpu) == torch.float16
    assert step_weights_dtype("fp32", torch.device("cpu")) is None
    assert step_weights_dtype("bf16", torch.device("cpu")) is None
    assert step_weights_dtype("auto", torch.device("meta")) is None
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        step_weights_dtype("fp16", torch.device("cpu"))


@pytest.mark.parametrize(("precision", "converted"), [("auto", True), ("fp32", False)])
def test_the_pipeline_converts_its_text_to_semantic_model_under_auto(models: Path, precision: str,
                                                                     converted: bool) -> None:
    pipeline = SpeechPipeline.from_folder(models, precision=precision)
    assert any(isinstance(m, StepLinear) for m in pipeline.t2s.modules()) == converted
    assert not any(isinstance(m, StepLinear) for m in pipeline.soundstorm.modules())
    step_dtype = str(step_weights_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    assert pipeline.t2s_description == (f"fp32, {step_dtype} step weights" if converted else "fp32")
    wav = pipeline.tts("Hello there.", pipeline.default_voice(), DecodingOptions(steps=[2, 1, 1, 1]))
    assert len(wav) > 0


def test_converting_again_renews_the_copies_of_weights_trained_since() -> None:
    model = tiny_t2s()
    use_step_weights(model)  # as the pipeline holds its own
    with torch.no_grad():  # trained since (a copy fine-tuned on a voice, say)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    plain = tiny_t2s()
    plain.load_state_dict(model.state_dict())  # the same weights, never converted
    text = torch.tensor([3, 5, 7, 9, 11])
    greedy = {"temperature": 0.0, "max_tokens": 12, "min_tokens": 12}
    assert not torch.equal(model.generate(text, **greedy), plain.generate(text, **greedy))  # stale copies
    assert use_step_weights(model) == sum(isinstance(m, StepLinear) for m in model.modules())
    use_step_weights(plain)
    assert torch.equal(model.generate(text, **greedy), plain.generate(text, **greedy))
    assert all(type(m) is not nn.Linear for m in model.modules())
