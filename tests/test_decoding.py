"""Tier 2: properties of decoding that would catch the known bugs of DESIGN.md section 4."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm import DecodeStep, SoundStorm
from soundstorm.decoding import decode_finer_levels, filter_logits, sample_codes
from tests.conftest import tiny_model

MASK = 16  # tiny_config: codebook_size 16, so MASK is id 16
Q = 3


def random_inputs(data: st.DataObject, B: int, T: int):
    lengths = torch.tensor(data.draw(st.lists(st.integers(2, T), min_size=B, max_size=B)))
    prompt_lengths = torch.tensor([data.draw(st.integers(0, int(L) - 1)) for L in lengths])
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    semantic = torch.randint(10, (B, -(-T // 2)), generator=g)
    P = max(1, int(prompt_lengths.max()))
    prompt = torch.randint(16, (B, P, Q), generator=g)
    return lengths, prompt_lengths, semantic, prompt


@st.composite
def steps_and_guidance(draw: st.DrawFn) -> tuple[list[int], float | list[float]]:
    """A schedule for the first 1 to Q levels (fewer than Q: only those are decoded) and a
    guidance scale: one number, or one per level decoded."""
    steps = draw(st.lists(st.integers(1, 6), min_size=1, max_size=Q))
    guidance = draw(st.sampled_from([1.0, 0.0, 3.0, [3.0, 1.0, 1.0], [1.0, 2.0, 0.0]]))
    return steps, guidance[: len(steps)] if isinstance(guidance, list) else guidance


decoding_options = st.fixed_dictionaries(
    {
        "schedule": steps_and_guidance(),
        "temperature": st.sampled_from([0.0, 0.7, 1.0, 2.0]),
        "anneal_temperature": st.booleans(),
        "top_k": st.sampled_from([None, 1, 4]),
        "top_p": st.sampled_from([None, 0.5, 0.95]),
        "gumbel_scale": st.sampled_from([0.0, 1.0, 4.5]),
        "greedy_last": st.booleans(),
        "prompt_guidance": st.sampled_from([0.0, 0.0, 1.0, 2.5]),
        "prompt_refresh": st.sampled_from(["pass", "pass", "level", "once"]),
    }
).map(lambda d: {**{k: v for k, v in d.items() if k != "schedule"},
                 "steps": d["schedule"][0], "guidance_scale": d["schedule"][1]})


class Recorder:
    """Records every forward pass: which level was decoded and which codes the model saw (a pass
    over the frames after the prompts, prompt reuse's, as the whole grid: the prompt's frames
    from its recorded pass, the rest as seen)."""

    def __init__(self, model: SoundStorm) -> None:
        self.inputs: list[torch.Tensor] = []
        self.levels: list[int] = []
        self.backbone_calls = 0
        self.after_prompt_calls = 0
        self.steps: list[DecodeStep] = []
        original_hidden, original_logits = model.hidden_states, model.level_logits
        original_after = model.hidden_states_after_prompt

        last: dict[int, torch.Tensor] = {}  # batch size -> the last full grid of that size

        def hidden_states(codes, condition, valid, record=None):
            self.inputs.append(codes.clone())
            last[codes.shape[0]] = codes.clone()
            return original_hidden(codes, condition, valid, record)

        def hidden_states_after_prompt(codes, condition, valid, prompt):
            self.after_prompt_calls += 1
            grid = last[codes.shape[0]].clone()  # the recording pass's prompt frames (they never change)
            for b, P in enumerate(prompt.lengths.tolist()):
                count = int(valid[b].sum())
                grid[b, P: P + count] = codes[b, :count]
            self.inputs.append(grid)
            return original_after(codes, condition, valid, prompt)

        def level_logits(hidden, level):
            self.levels.append(level)
            return original_logits(hidden, level)

        model.hidden_states = hidden_states  # type: ignore[method-assign]
        model.hidden_states_after_prompt = hidden_states_after_prompt  # type: ignore[method-assign]
        model.level_logits = level_logits  # type: ignore[method-assign]
        model.conformer.register_forward_hook(lambda *_: setattr(self, "backbone_calls", self.backbone_calls + 1))
        original_conformer_after = model.conformer.forward_after_prompt

        def conformer_after(*args, **kwargs):
            self.backbone_calls += 1
            return original_conformer_after(*args, **kwargs)

        model.conformer.forward_after_prompt = conformer_after  # type: ignore[method-assign]

    def callback(self, step: DecodeStep) -> None:
        self.steps.append(step)


@settings(max_examples=150)
@given(data=st.data(), B=st.integers(1, 4), T=st.integers(2, 24), options=decoding_options)
def test_decoding_properties(data: st.DataObject, B: int, T: int, options: dict) -> None:
    model = tiny_model()
    recorder = Recorder(model)
    lengths, prompt_lengths, semantic, prompt = random_inputs(data, B, T)
    steps = options["steps"]
    out = model.generate(
        semantic, num_frames=T, lengths=lengths, prompt_codes=prompt, prompt_lengths=prompt_lengths,
        generator=torch.Generator().manual_seed(0), callback=recorder.callback, **options,
    )
    frames = torch.arange(T)
    valid = frames < lengths[:, None]
    to_decode = valid & (frames >= prompt_lengths[:, None])
    n = to_decode.sum(1)

    assert out.shape == (B, T, len(steps)) and out.dtype == torch.int64
    # Prompt tokens never change.
    for b in range(B):
        P = int(prompt_lengths[b])
        assert torch.equal(out[b, :P], prompt[b, :P, : len(steps)])
    # Every non-padding token is filled with a real code; padding holds 0.
    assert bool(((out >= 0) & (out < 16))[valid].all())
    assert bool((out[~valid] == 0).all())
    # The backbone runs exactly sum(steps) times, guidance or not; levels in order.
    assert recorder.backbone_calls == sum(steps) == len(recorder.steps)
    assert recorder.levels == [q for q, count in enumerate(steps) for _ in range(count)]
    # Prompt reuse: the passes that are no refresh run over the frames after the prompts alone.
    scales = [guidance] * len(steps) if isinstance(guidance := options["guidance_scale"], float) else guidance
    refreshes, recorded = 0, set()  # kinds of level (guided or not) whose prompt states are recorded
    for level, count in enumerate(steps):
        guided = scales[level] != 1.0
        if options["prompt_refresh"] == "pass":
            refreshes += count
        elif options["prompt_refresh"] == "level" or guided not in recorded:
            refreshes += 1
        recorded.add(guided)
    reused = options["prompt_refresh"] != "pass" and bool((prompt_lengths > 0).any())
    assert recorder.after_prompt_calls == (sum(steps) - refreshes if reused else 0)

    for seen, level in zip(recorder.inputs, recorder.levels):
        seen = seen[:B]  # guidance adds copies of the batch after the conditional one
        # While level q is decoded the model sees MASK at every level above q (prompt aside),
        # and every level below q is complete.
        assert bool((seen[..., level + 1 :][to_decode] == MASK).all())
        assert bool((seen[..., :level][to_decode] != MASK).all())
        # The prompt is always visible.
        for b in range(B):
            assert torch.equal(seen[b, : int(prompt_lengths[b])], prompt[b, : int(prompt_lengths[b])])

    # After iteration i of every level, exactly floor(n * cos(pi/2 * i / n_q)) frames of that
    # level are still masked, per example (the budget counts this level's frames only).
    for step in recorder.steps:
        still = (step.codes[..., step.level] == MASK) & to_decode
        ratio = math.cos(math.pi / 2 * (step.iteration + 1) / step.num_iterations)
        for b in range(B):
            expected = 0 if step.iteration + 1 == step.num_iterations else math.floor(int(n[b]) * ratio)
            assert int(still[b].sum()) == expected
        # Revealed tokens of earlier iterations never change.
    for before, after in zip(recorder.steps, recorder.steps[1:]):
        kept = before.codes != MASK
        assert torch.equal(after.codes[kept], before.codes[kept])


@settings(max_examples=60)
@given(data=st.data(), B=st.integers(1, 3), T=st.integers(3, 20), levels=st.integers(1, Q - 1),
       options=decoding_options)
def test_decoding_fewer_levels_gives_the_first_levels_of_a_full_decoding(
        data: st.DataObject, B: int, T: int, levels: int, options: dict) -> None:
    """Steps for the first L levels only make exactly the first L levels of the full decoding with
    the same random streams (sampling, Gumbel noise, guidance and all): finer levels stay MASK
    while coarser ones are decoded, so they never influence them, and their passes come after."""
    model = tiny_model()
    lengths, prompt_lengths, semantic, prompt = random_inputs(data, B, T)
    steps = data.draw(st.lists(st.integers(1, 4), min_size=Q, max_size=Q))
    guidance = data.draw(st.sampled_from([1.0, 3.0, [3.0, 1.0, 1.0], [1.0, 2.0, 0.0]]))  # for all Q levels
    per_example = data.draw(st.booleans())

    def decode(schedule: list[int]) -> torch.Tensor:
        scale = guidance[: len(schedule)] if isinstance(guidance, list) else guidance
        generator = ([torch.Generator().manual_seed(7 + b) for b in range(B)] if per_example
                     else torch.Generator().manual_seed(7))
        return model.generate(semantic, num_frames=T, lengths=lengths, prompt_codes=prompt,
                              prompt_lengths=prompt_lengths, generator=generator,
                              **{**options, "steps": schedule, "guidance_scale": scale})

    full, prefix = decode(steps), decode(steps[:levels])
    assert prefix.shape == (B, T, levels)
    assert torch.equal(prefix, full[..., :levels])


@settings(max_examples=40)
@given(data=st.data(), B=st.integers(1, 3), T=st.integers(3, 20), coarse=st.integers(1, Q - 1),
       first=st.integers(1, 4), guidance=st.sampled_from([1.0, 2.5]), temperature=st.sampled_from([0.0, 1.0]))
def test_finer_levels_of_known_coarse_ones_are_generate_s_own(
        data: st.DataObject, B: int, T: int, coarse: int, first: int, guidance: float, temperature: float) -> None:
    """decode_finer_levels given generate's first levels returns generate's finer levels, where
    generate decodes those with one greedy pass each at the same guidance."""
    model = tiny_model()
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    semantic = torch.randint(10, (B, -(-T // 2)), generator=g)
    P = data.draw(st.integers(0, T - 1))  # frames of voice prompt
    prompt = torch.randint(16, (B, max(P, 1), Q), generator=g)
    steps = [first] * coarse + [1] * (Q - coarse)
    full = model.generate(semantic, num_frames=T, steps=steps, temperature=temperature,
                          guidance_scale=[1.0] * coarse + [guidance] * (Q - coarse),
                          prompt_codes=prompt if P else None, generator=torch.Generator().manual_seed(3))
    finer = decode_finer_levels(model, semantic, full[..., :coarse], Q, guidance_scale=guidance,
                                prompt_codes=prompt if P else None)
    assert torch.equal(finer, full)
    # Their logits too: what soft decoding of those levels reads, from either function.
    _, kept = model.generate(semantic, num_frames=T, steps=steps, temperature=temperature,
                             guidance_scale=[1.0] * coarse + [guidance] * (Q - coarse),
                             prompt_codes=prompt if P else None, generator=torch.Generator().manual_seed(3),
                             return_logits_from=coarse)
    again, logits = decode_finer_levels(model, semantic, full[..., :coarse], Q, guidance_scale=guidance,
                                        prompt_codes=prompt if P else None, return_logits=True)
    assert torch.equal(again, full) and logits.shape == kept.shape == (B, T, Q - coarse, 16)
    torch.testing.assert_close(logits, kept)


def test_finer_levels_refuse_bad_input() -> None:
    model = tiny_model()
    semantic = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="1 <= c < levels"):
        decode_finer_levels(model, semantic, torch.zeros(1, 6, Q, dtype=torch.long), Q)
    with pytest.raises(ValueError, match="coarse"):
        decode_finer_levels(model, semantic, torch.full((1, 6, 1), 16), Q)
    with pytest.raises(ValueError, match="semantic_tokens must have shape"):
        decode_finer_levels(model, semantic[:, :2], torch.zeros(1, 6, 1, dtype=torch.long), Q)
    with pytest.raises(ValueError, match="P < T = 6"):
        decode_finer_levels(model, semantic, torch.zeros(1, 6, 1, dtype=torch.long), Q,
                            prompt_codes=torch.zeros(1, 6, Q, dtype=torch.long))


@settings(max_examples=60)
@given(data=st.data(), T=st.integers(3, 20))
def test_batched_generation_equals_each_example_alone(data: st.DataObject, T: int) -> None:
    model = tiny_model()
    B = 3
    lengths, prompt_lengths, semantic, prompt = random_inputs(data, B, T)
    steps = data.draw(st.lists(st.integers(1, 5), min_size=Q, max_size=Q))
    batched = model.generate(
        semantic, num_frames=T, lengths=lengths, prompt_codes=prompt, prompt_lengths=prompt_lengths, steps=steps, temperature=0
    )
    for b in range(B):
        L, P = int(lengths[b]), int(prompt_lengths[b])
        alone = model.generate(
            semantic[b : b + 1, : -(-L // 2)], num_frames=L,
            prompt_codes=prompt[b : b + 1, :P] if P else None, steps=steps, temperature=0,
        )
        assert torch.equal(alone[0], batched[b, :L])


@settings(max_examples=40)
@given(data=st.data(), T=st.integers(3, 20), options=decoding_options)
def test_sampling_with_a_generator_per_example_equals_each_example_alone(
    data: st.DataObject, T: int, options: dict
) -> None:
    """What a batching server relies on: with one generator per example, an example's sampled
    result does not depend on the other examples of its batch."""
    model = tiny_model()
    B = 3
    lengths, prompt_lengths, semantic, prompt = random_inputs(data, B, T)
    seeds = data.draw(st.lists(st.integers(0, 2**31), min_size=B, max_size=B))
    batched = model.generate(
        semantic, num_frames=T, lengths=lengths, prompt_codes=prompt, prompt_lengths=prompt_lengths,
        generator=[torch.Generator().manual_seed(s) for s in seeds], **options,
    )
    for b in range(B):
        L, P = int(lengths[b]), int(prompt_lengths[b])
        alone = model.generate(
            semantic[b : b + 1, : -(-L // 2)], num_frames=L, prompt_codes=prompt[b : b + 1, :P] if P else None,
            generator=[torch.Generator().manual_seed(seeds[b])], **options,
        )
        assert torch.equal(alone[0], batched[b, :L])


def test_a_generator_list_must_match_the_batch() -> None:
    semantic = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        tiny_model().generate(semantic, generator=[torch.Generator() for _ in range(3)])


def test_padding_content_changes_nothing_in_generation() -> None:
    model = tiny_model()
    lengths = torch.tensor([20, 11])
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(10, (2, 10), generator=g)
    prompt = torch.randint(16, (2, 6, Q), generator=g)
    prompt_lengths = torch.tensor([6, 3])
    clean = model.generate(semantic, lengths=lengths, prompt_codes=prompt, prompt_lengths=prompt_lengths, temperature=0)
    semantic[1, 6:] = 999  # past the example's 11 frames
    prompt[1, 3:] = -5  # past its 3 prompt frames
    dirty = model.generate(semantic, lengths=lengths, prompt_codes=prompt, prompt_lengths=prompt_lengths, temperature=0)
    assert torch.equal(clean, dirty)


def test_temperature_zero_is_deterministic_and_seeded_sampling_reproducible() -> None:
    model = tiny_model()
    semantic = torch.randint(10, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.generate(semantic, temperature=0), model.generate(semantic, temperature=0))
    a = model.generate(semantic, generator=torch.Generator().manual_seed(5), temperature=5.0)
    b = model.generate(semantic, generator=torch.Generator().manual_seed(5), temperature=5.0)
    c = model.generate(semantic, generator=torch.Generator().manual_seed(6), temperature=5.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generation_runs_in_inference_mode_and_builds_no_graph() -> None:
    model = tiny_model()
    modes: list[bool] = []
    for module in model.modules():  # decoding calls the model's parts, not its forward
        module.register_forward_hook(lambda module, inputs, output: modes.append(torch.is_inference_mode_enabled()))
    codes = model.generate(torch.randint(10, (1, 12), generator=torch.Generator().manual_seed(0)), temperature=0)
    assert modes and all(modes)  # every pass, even when the caller has gradients on
    assert not codes.requires_grad


def test_guidance_scale_zero_ignores_the_condition() -> None:
    """logits = null + 0 * (cond - null): only the null condition counts."""
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(10, (2, 8), generator=g)
    a = model.generate(semantic, guidance_scale=0.0, temperature=0)
    b = model.generate((semantic + 3) % 10, guidance_scale=0.0, temperature=0)
    c = model.generate(semantic, guidance_scale=1.0, temperature=0)
    d = model.generate((semantic + 3) % 10, guidance_scale=1.0, temperature=0)
    assert torch.equal(a, b) and not torch.equal(c, d)


def test_unconditional_generation(unconditional_model: SoundStorm) -> None:
    out = unconditional_model.generate(num_frames=9, temperature=0)
    assert out.shape == (1, 9, Q)
    out = unconditional_model.generate(lengths=torch.tensor([9, 4]), temperature=0)
    assert out.shape == (2, 9, Q) and bool((out[1, 4:] == 0).all())


def test_filter_logits() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.75)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.4)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, None, 1.0)).tolist() == [[False] * 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(steps=[16, 1, 1, 1]), "one positive iteration count per level decoded, for the first 1 to 3"),
        (dict(steps=[]), "one positive iteration count per level decoded"),
        (dict(steps=[4, 0, 1]), "one positive iteration count per level decoded"),
        (dict(steps=[4, True]), "one positive iteration count per level decoded"),
        (dict(steps=[4, 1], guidance_scale=[2.0, 1.0, 1.0]), r"one per level decoded \(2 levels\)"),
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_k=0), "top_k must be >= 1"),
        (dict(prompt_codes=torch.zeros(1, 10, Q, dtype=torch.long)), "must be shorter than the output"),
        (dict(prompt_codes=torch.zeros(1, 4, 2, dtype=torch.long)), "2 quantizer levels but the model generates num_quantizers=3"),
        (dict(prompt_codes=torch.full((1, 4, Q), 16)), r"prompt_codes must hold ids in \[0, 16\)"),
        (dict(prompt_codes=torch.zeros(1, 4, Q)), "prompt_codes must be int64"),
        (dict(lengths=torch.tensor([11]), semantic_tokens=None, num_frames=10), r"every one of lengths must be in \[1, 10\]"),
        (dict(num_frames=0), "num_frames must be a positive integer"),
        (dict(semantic_tokens=torch.zeros(1, 5)), "semantic_tokens must be int64"),
        (dict(semantic_tokens=torch.zeros(1, 5, 2, dtype=torch.long)), r"semantic_tokens must be an int64 tensor \[B, S\]"),
        (dict(semantic_tokens=torch.zeros(1, 4, dtype=torch.long), num_frames=10), r"shape \[B, ceil\(T / 2\)\] = \[1, 5\]"),
    ],
)
def test_bad_generation_input_raises_clear_errors(kwargs: dict, message: str) -> None:
    model = tiny_model()
    arguments: dict = dict(semantic_tokens=torch.zeros(1, 5, dtype=torch.long))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        model.generate(**arguments)


def test_guidance_needs_a_condition(unconditional_model: SoundStorm) -> None:
    with pytest.raises(ValueError, match="classifier-free guidance needs"):
        unconditional_model.generate(num_frames=5, guidance_scale=2.0)


def test_sample_codes_matches_the_distribution_and_never_draws_zero_probability_codes() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])  # zeros at both ends and inside
    draws = sample_codes(probs.expand(1, 200_000, -1).contiguous(), generator)  # [1, N]
    frequencies = torch.bincount(draws.flatten(), minlength=6).double() / draws.numel()
    assert frequencies[[0, 2, 5]].sum() == 0
    torch.testing.assert_close(frequencies, probs.double(), atol=5e-3, rtol=0)


def test_guidance_per_level_doubles_only_the_guided_levels_batches() -> None:
    model = tiny_model()
    recorder = Recorder(model)
    B, T = 2, 10
    semantic = torch.randint(10, (B, T // 2), generator=torch.Generator().manual_seed(0))
    steps = [3, 2, 1]
    per_level = model.generate(semantic, steps=steps, guidance_scale=[2.5, 1.0, 1.0],
                               generator=torch.Generator().manual_seed(1))
    assert [seen.shape[0] for seen in recorder.inputs] == [2 * B] * 3 + [B] * 3  # level 0 guided only
    # One scale for every level is the same as that scale listed per level.
    everywhere = model.generate(semantic, steps=steps, guidance_scale=2.5, generator=torch.Generator().manual_seed(1))
    listed = model.generate(semantic, steps=steps, guidance_scale=[2.5] * 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(everywhere, listed)
    assert per_level.shape == (B, T, Q)
    for bad in ([2.0, 1.0], [2.0, -1.0, 1.0]):
        with pytest.raises(ValueError, match="one per level"):
            model.generate(semantic, steps=steps, guidance_scale=bad)


def test_prompt_guidance_adds_a_batch_with_each_prompt_masked_and_leaves_the_prompt_alone() -> None:
    model = tiny_model()
    recorder = Recorder(model)
    B, T = 2, 12
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(10, (B, T // 2), generator=g)
    prompt = torch.randint(16, (B, 5, Q), generator=g)
    prompt_lengths = torch.tensor([5, 2])  # the second example's frames 2..4 are generated
    steps = [3, 1, 1]
    out = model.generate(semantic, prompt_codes=prompt, prompt_lengths=prompt_lengths, steps=steps,
                         guidance_scale=[2.0, 1.0, 1.0], prompt_guidance=1.5, generator=torch.Generator().manual_seed(1))
    assert [seen.shape[0] for seen in recorder.inputs] == [3 * B] * 3 + [2 * B] * 2  # cond, null, bare; then cond, bare
    for seen in recorder.inputs:
        cond, bare = seen[:B], seen[-B:]
        for b in range(B):
            P = int(prompt_lengths[b])
            assert bool((bare[b, :P] == MASK).all())  # the prompt's frames masked at every level
            assert torch.equal(bare[b, P:], cond[b, P:])  # the rest, generated frames included, as the conditional grid
            assert torch.equal(cond[b, :P], prompt[b, :P])
    for b in range(B):
        assert torch.equal(out[b, : int(prompt_lengths[b])], prompt[b, : int(prompt_lengths[b])])


def test_prompt_guidance_is_cond_plus_g_times_what_the_prompt_changes() -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    T, P = 10, 4
    semantic = torch.randint(10, (1, T // 2), generator=g)
    prompt = torch.randint(16, (1, P, Q), generator=g)
    # One pass of one level: the logits returned are the guided logits of that pass.
    _, cond = model.generate(semantic, prompt_codes=prompt, steps=[1], temperature=0, return_logits_from=0)
    _, bare = model.generate(semantic, steps=[1], temperature=0, return_logits_from=0)  # every frame masked
    _, guided = model.generate(semantic, prompt_codes=prompt, steps=[1], temperature=0, return_logits_from=0,
                               prompt_guidance=1.5)
    torch.testing.assert_close(guided[0, P:], cond[0, P:] + 1.5 * (cond[0, P:] - bare[0, P:]))


def test_prompt_guidance_without_a_prompt_changes_nothing_and_bad_values_are_refused() -> None:
    model = tiny_model()
    recorder = Recorder(model)
    semantic = torch.randint(10, (2, 6), generator=torch.Generator().manual_seed(0))
    plain = model.generate(semantic, steps=[2, 1, 1], temperature=0)
    guided = model.generate(semantic, steps=[2, 1, 1], temperature=0, prompt_guidance=2.0)
    assert torch.equal(plain, guided)
    assert {seen.shape[0] for seen in recorder.inputs} == {2}  # no extra batch: there is nothing to mask
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="prompt_guidance must be a number >= 0"):
            model.generate(semantic, prompt_guidance=bad)
