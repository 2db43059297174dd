"""SoundStorm's level-wise, confidence-based parallel decoding (shared/DESIGN.md section 4).

Every non-prompt token starts as MASK. Levels are decoded coarse to fine; level q runs
steps[q] iterations. At iteration i of n: the model predicts level q, the still-masked
tokens of level q are sampled, and the most confident are kept so that exactly
floor(n_b * cos(pi/2 * i/n)) stay masked, where n_b counts the frames that example b
decodes (its non-prompt, non-padding frames). While level q is decoded every level above it
stays MASK, as in training. The last iteration of a level is greedy.

This loop avoids the known bugs of public implementations: the budget is per example and
per level (not T spent over T*Q tokens), finer levels are never left holding sampled tokens,
and prompt frames never compete and never change.

Notation: B batch, T frames, Q levels, K codes per level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from soundstorm import masking
from soundstorm.model.inputs import check_codes, check_lengths, check_semantic, check_token_range
from soundstorm.model.prompt_states import PromptStates

if TYPE_CHECKING:
    from soundstorm.model.soundstorm import SoundStorm


@dataclass
class DecodeStep:
    """Handed to the callback after every forward pass (e.g. to draw the grid filling)."""

    level: int  # level decoded, 0-based
    iteration: int  # iteration within the level, 0-based
    num_iterations: int  # iterations of this level
    forward_pass: int  # forward passes so far, 1-based
    codes: Tensor  # [B, T, Q] int64, the grid after this iteration (MASK = codebook_size)


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Keep the top_k most likely codes and/or the smallest set with probability >= top_p;
    others get -inf. logits [..., K] -> [..., K]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # [..., 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a code once the codes before it already reach top_p; the first always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


Generators = torch.Generator | Sequence[torch.Generator] | None
# How often generate() runs the voice prompt's frames through the Conformer (its prompt_refresh).
PROMPT_REFRESH = ("pass", "level", "once")


def draw_uniform(shape: tuple[int, int], generator: Generators, device: torch.device,
                 dtype: torch.dtype = torch.float32, lengths: Sequence[int] | None = None) -> Tensor:
    """Uniform noise [B, T] in [0, 1).

    With one generator per example, example b draws exactly lengths[b] numbers from its own
    generator (the rest is zero): its samples then do not depend on the batch it is decoded
    in, so a server that batches requests returns what each request alone would have.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    B, T = shape
    if len(generator) != B:
        raise ValueError(f"got {len(generator)} generators for a batch of {B}")
    counts = [T] * B if lengths is None else [int(n) for n in lengths]
    noise = torch.zeros(shape, device=device, dtype=dtype)
    for b, (g, n) in enumerate(zip(generator, counts)):
        noise[b, :n] = torch.rand(n, generator=g, device=g.device, dtype=dtype).to(device)
    return noise


def sample_codes(probs: Tensor, generator: Generators, lengths: Sequence[int] | None = None) -> Tensor:
    """One code per position from probs [B, T, K] -> [B, T], by inverting the CDF.

    One uniform per position instead of torch.multinomial's K exponentials: 7% of a bf16
    decoding run at 750 frames. A code of probability 0 has an empty CDF interval and is
    never drawn; a uniform that rounds onto the total falls back to the most likely code.
    `generator` may be one per example (see draw_uniform; `lengths` [B] then bounds each
    example's draws).
    """
    uniform = draw_uniform(probs.shape[:2], generator, probs.device, probs.dtype, lengths)  # [B, T]
    return invert_cdf(probs, uniform)


def invert_cdf(probs: Tensor, uniform: Tensor) -> Tensor:
    """The code whose CDF interval holds each uniform: probs [..., K], uniform [...] in [0, 1)
    -> codes [...] int64 (see sample_codes)."""
    cdf = probs.cumsum(dim=-1)  # [..., K]
    total = cdf[..., -1:]  # [..., 1]
    codes = torch.searchsorted(cdf, uniform[..., None] * total, right=True).squeeze(-1)  # [...]
    return torch.where(codes < probs.shape[-1], codes, probs.argmax(dim=-1))


def _check_options(
    steps: Sequence[int],
    num_quantizers: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    gumbel_scale: float,
    guidance_scale: float | Sequence[float],
) -> tuple[list[int], list[float]]:
    steps = list(steps)
    if not 1 <= len(steps) <= num_quantizers or any(not isinstance(n, int) or isinstance(n, bool) or n < 1
                                                    for n in steps):
        raise ValueError(
            f"steps must list one positive iteration count per level decoded, for the first 1 to "
            f"{num_quantizers} levels, e.g. {masking.default_steps(num_quantizers)}; got {steps}"
        )
    levels = len(steps)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if gumbel_scale < 0:
        raise ValueError(f"gumbel_scale must be >= 0, got {gumbel_scale}")
    scales = [float(guidance_scale)] * levels if isinstance(guidance_scale, (int, float)) else list(guidance_scale)
    if len(scales) != levels or any(not isinstance(g, (int, float)) or g < 0 for g in scales):
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance): one number, or one per level decoded "
                         f"({levels} levels); got {guidance_scale}")
    return steps, [float(g) for g in scales]


def check_prompt_refresh(value: object, name: str = "prompt_refresh") -> str:
    """One of PROMPT_REFRESH (how often the voice prompt's frames are run), or a clear error naming `name`."""
    if value not in PROMPT_REFRESH:
        raise ValueError(f"{name} must be one of {', '.join(PROMPT_REFRESH)} (how often the voice prompt's frames are "
                         f"run: every pass, each level's first, or once), got {value!r}")
    return str(value)


def check_prompt_guidance(value: object, name: str = "prompt_guidance") -> float:
    """A voice guidance weight as a float >= 0 (0 = off), or a clear error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0 (0 = off), got {value!r}")
    return float(value)


@torch.inference_mode()
def generate(
    model: SoundStorm,
    *,
    semantic_tokens: Tensor | None = None,
    num_frames: int | None = None,
    lengths: Tensor | None = None,
    prompt_codes: Tensor | None = None,
    prompt_lengths: Tensor | None = None,
    steps: Sequence[int] | None = None,
    temperature: float = 1.0,
    anneal_temperature: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    gumbel_scale: float = 0.0,
    guidance_scale: float | Sequence[float] = 1.0,
    prompt_guidance: float = 0.0,
    greedy_last: bool = True,
    generator: Generators = None,
    callback: Callable[[DecodeStep], None] | None = None,
    return_logits_from: int | None = None,
    prompt_refresh: str = "pass",
) -> Tensor | tuple[Tensor, Tensor]:
    """Generate acoustic tokens with SoundStorm's iterative parallel decoding.

    Args:
        semantic_tokens: int64 [B, S] conditioning (conditional models). They cover the whole
            output, prompt included, S = ceil(T / semantic_rate_ratio).
        num_frames: T. Default: S * semantic_rate_ratio with semantic tokens, else max(lengths);
            an unconditional model needs one of num_frames and lengths.
        lengths: int64 [B] frames to produce per example, each <= T (default: all T).
        prompt_codes: int64 [B, P, Q] voice prompt: the first frames of the output, kept as
            they are at every level. Levels past the len(steps) decoded may hold MASK (= K):
            a prompt of generated frames (the pipeline's long-form windows) knows only those.
        prompt_lengths: int64 [B] prompt frames per example (default: all P), each < lengths.
        steps: iterations per level, default [16, 1, ..., 1] (the paper's). A list shorter than
            Q decodes only that many levels, coarse first: the result is the codec's bitrate
            prefix of len(steps) levels, the same tokens as the first len(steps) levels of a
            full decoding with the same random streams (later levels never influence earlier
            ones), for fewer passes. Useful where a codec's fine levels add little audio
            (benchmarks/codec_levels.py measures what each level adds).
        temperature: sampling temperature; 0 = argmax everywhere (deterministic decoding).
        anneal_temperature: lower the temperature linearly to 0 across a level's iterations.
        top_k, top_p: restrict sampling to the most likely codes.
        gumbel_scale: Gumbel noise added to the log-confidence used for ranking, annealed
            linearly to 0 at a level's last iteration (MaskGIT's choice temperature).
        guidance_scale: classifier-free guidance, logits = null + scale * (cond - null);
            1 = off. One scale, or one per level (a level at 1 runs unguided, at the
            unguided cost). Needs a model trained with condition dropout; a guided level's
            passes run a doubled batch.
        prompt_guidance: voice guidance g >= 0: logits += g * (cond - bare), where bare are the
            conditional logits with the prompt's frames masked at every level, so that what the
            prompt changes is pushed further (0 = off). Every pass then runs one more copy of
            the batch; without a prompt it does nothing. On the bundled models g = 1 raised the
            held-out voice's similarity to its prompt by about 0.02 (docs/voices.md).
        greedy_last: take the argmax at the last iteration of every level (the paper does).
        generator: random source for sampling and Gumbel noise: one for the batch, or one per
            example (then each example's result is the same in any batch, as alone).
        callback: called with a DecodeStep after every forward pass.
        return_logits_from: a level s (0-based, < L): also return, for every token of levels
            s..L-1, the logits it was chosen from (guided, before temperature and top-k / top-p:
            the model's distribution at the pass that revealed it). With one greedy pass per
            level, the distribution whose argmax the token is; soft decoding reads them
            (codecs' decode_expected: the expected codebook vector instead of the argmax's).
        prompt_refresh: how often the voice prompt's frames are run through the Conformer:
            every "pass" (exact: the paper's decoding), at the first pass of each "level", or
            "once", at the first pass. Between refreshes the passes run over the frames after
            the prompt alone, over the prompt's keys, values and convolution context recorded
            at the last refresh (soundstorm/model/prompt_states.py): a 3 s prompt is half of a
            dialogue turn's frames. The prompt's own codes never change; what goes stale is
            only what its frames had attended to after it (docs/prompt_reuse.md).

    Returns:
        int64 [B, T, L] codes in [0, K), L = len(steps) (Q by default); frames past an
        example's length hold 0. With return_logits_from, also float32 [B, T, L - s, K]:
        those logits; at frames not decoded (the prompt, padding) 0 at the code held and -inf
        elsewhere, so that their softmax at any temperature is that code.
    """
    config = model.config
    K, Q, mask_id = config.codebook_size, config.num_quantizers, config.mask_id
    device = next(model.parameters()).device
    steps, scales = _check_options(
        masking.default_steps(Q) if steps is None else steps,
        Q, temperature, top_k, top_p, gumbel_scale, guidance_scale,
    )

    # ---- shapes and validation (once, outside the loop) ------------------------------------
    if semantic_tokens is not None and (not isinstance(semantic_tokens, Tensor) or semantic_tokens.dim() != 2):
        raise ValueError("semantic_tokens must be an int64 tensor [B, S]")
    if prompt_codes is not None:
        prompt_codes = check_codes(prompt_codes, config, "prompt_codes").to(device)
    batch_size = next(
        (t.shape[0] for t in (semantic_tokens, lengths, prompt_codes) if isinstance(t, Tensor)), None
    )
    if batch_size is None:
        if num_frames is None:
            raise ValueError("give semantic_tokens, or num_frames / lengths for an unconditional model")
        batch_size = 1
    if num_frames is None:
        if semantic_tokens is not None:
            num_frames = semantic_tokens.shape[1] * config.semantic_rate_ratio
        elif isinstance(lengths, Tensor) and lengths.numel():
            num_frames = int(lengths.max())
        else:
            raise ValueError("an unconditional model needs num_frames or lengths")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    B, T = batch_size, num_frames
    lengths = check_lengths(lengths, B, T).to(device)
    semantic_tokens = check_semantic(semantic_tokens, config, B, T, lengths)
    if any(g != 1.0 for g in scales) and semantic_tokens is None:
        raise ValueError("classifier-free guidance needs a conditional model and semantic_tokens")
    check_prompt_guidance(prompt_guidance)
    check_prompt_refresh(prompt_refresh)

    per_example = generator is not None and not isinstance(generator, torch.Generator)
    if per_example and len(generator) != B:  # type: ignore[arg-type]
        raise ValueError(f"got {len(generator)} generators for a batch of {B}: give one, or one per example")  # type: ignore[arg-type]
    draw_lengths = lengths.tolist() if per_example else None  # once: no device sync in the loop

    frames = torch.arange(T, device=device)  # [T]
    valid = frames < lengths[:, None]  # [B, T]
    codes = torch.full((B, T, Q), mask_id, dtype=torch.long, device=device)  # [B, T, Q]
    prompt_lengths_ = torch.zeros(B, dtype=torch.long, device=device)
    if prompt_codes is not None:
        P = prompt_codes.shape[1]
        if prompt_codes.shape[0] != B:
            raise ValueError(f"prompt_codes has batch size {prompt_codes.shape[0]}, expected {B}")
        if P >= T:
            raise ValueError(
                f"the prompt ({P} frames) must be shorter than the output ({T} frames): the "
                "output includes the prompt, so give num_frames / lengths / semantic tokens "
                "for prompt plus continuation"
            )
        prompt_lengths_ = check_lengths(prompt_lengths, B, P, "prompt_lengths", minimum=0).to(device)
        if bool((prompt_lengths_ >= lengths).any()):
            raise ValueError(
                f"every prompt must be shorter than its output: prompt lengths "
                f"{prompt_lengths_.tolist()} frames, output lengths {lengths.tolist()}"
            )
        in_prompt = torch.arange(P, device=device) < prompt_lengths_[:, None]  # [B, P]
        levels = len(steps)
        check_token_range(prompt_codes[..., :levels], in_prompt, K, "prompt_codes")
        # MASK is K: a frame known at the decoded levels and masked above them is what training
        # shows the model at every frame a level's pass has revealed.
        check_token_range(prompt_codes[..., levels:], in_prompt, K + 1, f"prompt_codes past the {levels} decoded levels")
        codes[:, :P] = prompt_codes.masked_fill(~in_prompt[:, :, None], mask_id)
    elif prompt_lengths is not None:
        raise ValueError("prompt_lengths given without prompt_codes")

    to_decode = valid & (frames >= prompt_lengths_[:, None])  # [B, T] frames that get generated
    # Voice guidance's second opinion: the same grid with each example's prompt frames masked.
    bare_frames = (frames < prompt_lengths_[:, None])[:, :, None] if prompt_guidance > 0 and prompt_codes is not None else None
    num_to_decode = to_decode.sum(dim=1)  # [B]
    kept = None  # float32 [B, T, L - s, K]: return_logits_from's logits
    if return_logits_from is not None:
        s = return_logits_from
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(steps):
            raise ValueError(f"return_logits_from must be a level in [0, {len(steps)}) of the {len(steps)} "
                             f"decoded, got {s!r}")
        kept = torch.full((B, T, len(steps) - s, K), float("-inf"), device=device)

    # ---- conditioning, embedded once ------------------------------------------------------
    condition = None
    if semantic_tokens is not None:
        ratio = config.semantic_rate_ratio
        semantic_valid = torch.arange(semantic_tokens.shape[1], device=device) < (
            (lengths + ratio - 1) // ratio
        )[:, None]
        semantic_tokens = semantic_tokens.to(device).masked_fill(~semantic_valid, config.null_semantic_id)
        condition = model.embed_condition(semantic_tokens, T)  # [B, T, D]
    backbone_valid = None if not bool((lengths < T).any()) else valid
    # A guided level, and voice guidance, run their grids beside the conditional one as one batch:
    # its conditions and masks are the same at every pass, so they are stacked once, per kind of level.
    null_condition = model.null_condition(B, T) if any(g != 1.0 for g in scales) else None  # [B, T, D]
    batched: dict[bool, tuple[int, Tensor | None, Tensor | None]] = {}  # guided -> (n, [n B, T, D], [n B, T])
    for guided in {g != 1.0 for g in scales}:
        conditions = [condition] + [null_condition] * guided + [condition] * (bare_frames is not None)
        n = len(conditions)
        batched[guided] = (n, None if condition is None else torch.cat(conditions),  # type: ignore[arg-type]
                           None if backbone_valid is None else backbone_valid.repeat(n, 1))

    # Prompt reuse (prompt_refresh): the frames after each prompt, left-aligned [B, G], where a
    # pass between refreshes runs; per kind of level, the prompt states of its last refresh and
    # the batch's condition and validity at those frames (the same at every pass).
    reuse = prompt_refresh != "pass" and bool((prompt_lengths_ > 0).any())
    after_index = after_valid = None
    states: dict[bool, tuple[PromptStates, Tensor | None, Tensor]] = {}
    if reuse:
        G = int((lengths - prompt_lengths_).max())
        after_index = (prompt_lengths_[:, None] + torch.arange(G, device=device)).clamp(max=T - 1)  # [B, G]
        after_valid = torch.arange(G, device=device) < (lengths - prompt_lengths_)[:, None]  # [B, G]

    def after_prompt(x: Tensor) -> Tensor:
        """x [n B, T, ...] -> its frames after each prompt [n B, G, ...]."""
        index = after_index.repeat(x.shape[0] // B, 1)  # type: ignore[union-attr]  # [n B, G]
        return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))

    def level_logits(level: int, where: Tensor, refresh: bool) -> Tensor:
        """Logits [M, K] of level `level` at the M positions where `where` [B, T] is True, in
        row-major order. Only the tokens still to be decided need the output head, the softmax
        and the sampling: at most half the grid on average over a level's iterations, less with
        a prompt (a third of a dialogue turn's frames) or padding. (Boolean indexing costs one
        host sync per pass on a GPU: microseconds against a pass's milliseconds.) With prompt
        reuse, a pass that is no refresh runs over the frames after the prompts alone."""
        guided = scales[level] != 1.0
        n, batch_condition, batch_valid = batched[guided]
        grids = [codes] * (1 + guided) + ([codes.masked_fill(bare_frames, mask_id)] if bare_frames is not None else [])
        grid = grids[0] if n == 1 else torch.cat(grids)  # [n B, T, Q]
        if reuse and not refresh and guided in states:
            prompt, after_condition, batch_after_valid = states[guided]
            hidden = model.hidden_states_after_prompt(after_prompt(grid), after_condition, batch_after_valid,
                                                      prompt)  # [n B, G, D]
            where = where.gather(1, after_index) & after_valid  # type: ignore[arg-type]  # [B, G]
        else:
            record = PromptStates(prompt_lengths_.repeat(n)) if reuse else None
            hidden = model.hidden_states(grid, batch_condition, batch_valid, record)  # [n B, T, D]
            if record is not None:
                states[guided] = (record, None if batch_condition is None else after_prompt(batch_condition),
                                  after_valid.repeat(n, 1))  # type: ignore[union-attr]
        if n == 1:
            return model.level_logits(hidden[where], level)  # [M, K] float32
        logits = model.level_logits(torch.cat([h[where] for h in hidden.chunk(n)]), level)  # [n M, K]
        cond, *others = logits.chunk(n)
        out = cond
        if guided:
            null = others.pop(0)
            out = null + scales[level] * (cond - null)
        if bare_frames is not None:
            out = out + prompt_guidance * (cond - others.pop(0))
        return out

    # ---- level by level, coarse to fine --------------------------------------------------
    forward_pass = 0
    for level, num_iterations in enumerate(steps):
        level_codes = codes[:, :, level]  # [B, T] a view: writes land in `codes`
        for iteration in range(num_iterations):
            still_masked = to_decode & (level_codes == mask_id)  # [B, T]
            refresh = prompt_refresh == "pass" or (iteration == 0 and (prompt_refresh == "level" or level == 0))
            logits = level_logits(level, still_masked, refresh)  # [M, K], M = still-masked tokens
            forward_pass += 1
            is_last = iteration == num_iterations - 1
            tau = temperature * (1.0 - iteration / num_iterations) if anneal_temperature else temperature
            # The random streams are drawn over the whole [B, T] grid, as they always were, and
            # read at the still-masked tokens: an example's draws stay the same in any batch.
            if (is_last and greedy_last) or tau == 0.0:
                probs = logits.softmax(dim=-1)  # [M, K]
                sampled_masked = probs.argmax(dim=-1)  # [M]
            else:
                probs = filter_logits(logits / tau, top_k, top_p).softmax(dim=-1)
                uniform = draw_uniform(still_masked.shape, generator, device, probs.dtype, draw_lengths)  # [B, T]
                sampled_masked = invert_cdf(probs, uniform[still_masked])  # [M]
            # Only still-masked tokens of this level compete for the budget.
            confidence = torch.full(still_masked.shape, float("-inf"), device=device, dtype=probs.dtype)  # [B, T]
            confidence[still_masked] = probs.gather(-1, sampled_masked[:, None]).squeeze(-1).log()
            sampled = torch.zeros_like(level_codes).masked_scatter_(still_masked, sampled_masked)  # [B, T]
            noise_scale = gumbel_scale * (1.0 - (iteration + 1) / num_iterations)
            if noise_scale > 0:
                uniform = draw_uniform(confidence.shape, generator, device, lengths=draw_lengths)  # [B, T]
                gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
                confidence = confidence + noise_scale * gumbel  # -inf stays -inf
            stay_masked = masking.num_masked_after(iteration + 1, num_iterations, num_to_decode)  # [B]
            num_reveal = still_masked.sum(dim=1) - stay_masked  # [B]
            order = confidence.argsort(dim=1, descending=True, stable=True)  # [B, T]
            rank = order.argsort(dim=1)  # [B, T], 0 = most confident
            reveal = still_masked & (rank < num_reveal[:, None])  # [B, T]
            level_codes.copy_(torch.where(reveal, sampled, level_codes))
            if kept is not None and level >= s:
                # logits' rows are the still-masked tokens in row-major order; keep the revealed ones'.
                kept[:, :, level - s][reveal] = logits[reveal[still_masked]].float()
            if callback is not None:
                callback(DecodeStep(level, iteration, num_iterations, forward_pass, codes.clone()))

    codes = codes[:, :, : len(steps)].masked_fill(~valid[:, :, None], 0)
    if kept is None:
        return codes
    held = codes[:, :, s:][~to_decode]  # [F, L - s] the codes of the F frames not decoded
    rows = torch.full((*held.shape, K), float("-inf"), device=device)  # [F, L - s, K]
    kept[~to_decode] = rows.scatter_(-1, held[..., None], 0.0)
    return codes, kept


@torch.no_grad()
def decode_finer_levels(
    model: SoundStorm,
    semantic_tokens: Tensor,
    coarse: Tensor,
    levels: int,
    guidance_scale: float = 1.0,
    prompt_codes: Tensor | None = None,
    return_logits: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The levels after `coarse` by one greedy pass each, as `generate` decodes a level of one
    iteration: what SoundStorm makes of known coarse tokens (e.g. a recording's own level 1).

    Used to train a codec decoder on the finer levels SoundStorm predicts (the soundstream
    task's options.soundstorm_inputs) and to measure what that prediction costs
    (benchmarks/acoustic_probe.py). Given `generate`'s own first c levels, it returns `generate`'s
    levels c..levels-1 with steps [..., 1, ...] and greedy_last (tests/test_decoding.py).

    Args:
        semantic_tokens: int64 [B, S] conditioning, S = ceil(T / semantic_rate_ratio).
        coarse: int64 [B, T, c] the first c levels, 1 <= c < levels.
        levels: how many levels to return, at most Q.
        guidance_scale: classifier-free guidance of the finer levels (1 = off).
        prompt_codes: int64 [B, P, Q], P < T: a voice prompt, the first P frames at every level
            (as generate's prompt_codes); coarse covers them too.
        return_logits: also return the (guided) logits of the predicted levels, as generate's
            return_logits_from does (one-hot on the prompt's codes in its frames).
    Returns:
        int64 [B, T, levels]: coarse, then the predicted levels (the prompt's own in its frames);
        with return_logits also float32 [B, T, levels - c, K].
    """
    config = model.config
    Q, mask_id = config.num_quantizers, config.mask_id
    if coarse.dim() != 3 or not 1 <= coarse.shape[-1] < levels <= Q:
        raise ValueError(f"coarse must be int64 [B, T, c] with 1 <= c < levels <= {Q}; got shape "
                         f"{tuple(coarse.shape)} and levels={levels}")
    B, T, c = coarse.shape
    device = next(model.parameters()).device
    check_token_range(coarse, torch.ones(B, T, dtype=torch.bool, device=coarse.device), config.codebook_size, "coarse")
    semantic_tokens = check_semantic(semantic_tokens, config, B, T, torch.full((B,), T, device=device)).to(device)
    if semantic_tokens is None:
        raise ValueError("decode_finer_levels needs a conditional model and its semantic tokens")
    codes = torch.full((B, T, Q), mask_id, dtype=torch.long, device=device)  # [B, T, Q]
    codes[:, :, :c] = coarse.to(device)
    P = 0
    if prompt_codes is not None:
        prompt_codes = check_codes(prompt_codes, config, "prompt_codes").to(device)
        P = prompt_codes.shape[1]
        if prompt_codes.shape[0] != B or P >= T:
            raise ValueError(f"prompt_codes must be [B, P, Q] with B = {B} and P < T = {T}, got {tuple(prompt_codes.shape)}")
        check_token_range(prompt_codes, torch.ones(B, P, dtype=torch.bool, device=device), config.codebook_size,
                          "prompt_codes")
        codes[:, :P] = prompt_codes
    condition = model.embed_condition(semantic_tokens, T)  # [B, T, D]
    if guidance_scale != 1.0:
        condition = torch.cat([condition, model.null_condition(B, T)], dim=0)  # [2B, T, D]
    kept = torch.full((B, T, levels - c, config.codebook_size), float("-inf"), device=device) if return_logits else None
    for level in range(c, levels):
        # The same products as generate's pass: the frames after the prompt, in row-major order.
        hidden = model.hidden_states(codes.repeat(condition.shape[0] // B, 1, 1), condition, None)  # [B or 2B, T, D]
        logits = model.level_logits(hidden[:, P:].reshape(-1, hidden.shape[-1]), level)  # [B*(T-P) or twice, K]
        if guidance_scale != 1.0:
            cond, null = logits.chunk(2, dim=0)
            logits = null + guidance_scale * (cond - null)
        codes[:, P:, level] = logits.softmax(dim=-1).argmax(dim=-1).view(B, T - P)
        if kept is not None:
            kept[:, P:, level - c] = logits.float().view(B, T - P, -1)
    if kept is None:
        return codes[:, :, :levels]
    kept[:, :P].scatter_(-1, codes[:, :P, c:levels, None], 0.0)  # the prompt's frames: one-hot on its codes
    return codes[:, :, :levels], kept


def total_forward_passes(steps: Sequence[int]) -> int:
    """Backbone passes that decoding with `steps` makes; guidance doubles the batch, not the
    number of passes."""
    return sum(steps)
