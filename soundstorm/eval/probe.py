"""How much a token sequence says about its speaker and about its phones.

- `speaker_probe`: a linear classifier (multinomial logistic regression) from an utterance's
  token histogram to its speaker, cross-validated over utterances. Semantic tokens should make
  it fail (near chance); codec tokens, which must carry the voice, make it succeed.
- `phone_mutual_information`: phone-normalised mutual information (PNMI, HuBERT's measure),
  I(phone; token) / H(phone) over aligned frames: 1 when tokens determine the phone, 0 when
  they say nothing about it. With it, `phone_purity`: the fraction of frames whose phone is
  the most common one of their token.

Notation: U utterances, V vocabulary (histogram bins), C classes (speakers or phones), M frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def token_histograms(sequences: Sequence[Tensor], vocab_size: int) -> Tensor:
    """Relative frequency of each token in each sequence: float [U, V], rows sum to 1."""
    rows = [torch.bincount(s.long().flatten(), minlength=vocab_size).double() for s in sequences]
    histograms = torch.stack(rows)  # [U, V]
    return (histograms / histograms.sum(dim=1, keepdim=True).clamp(min=1)).float()


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # held-out accuracy, averaged over folds
    chance: float  # accuracy of always answering the most common training speaker
    num_classes: int
    num_utterances: int


def _fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, steps: int) -> tuple[Tensor, Tensor]:
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def speaker_probe(features: Tensor, labels: Sequence[str], folds: int = 2, seed: int = 0,
                  weight_decay: float = 1e-3, steps: int = 200) -> ProbeResult:
    """Cross-validated accuracy of a linear classifier from features [U, V] to labels [U].

    Utterances are dealt into `folds` folds at random (seeded), stratified by label so every
    speaker is in every fold; each fold is predicted by a classifier fitted on the others.
    Features are standardised with the training folds' statistics."""
    if features.dim() != 2 or features.shape[0] != len(labels):
        raise ValueError(f"features must be [U, V] with U = {len(labels)} labels, got {tuple(features.shape)}")
    names = sorted(set(labels))
    y = torch.tensor([names.index(label) for label in labels])
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(labels), dtype=torch.long)
    for c in range(len(names)):  # stratified: each speaker's utterances spread over the folds
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold[members] = torch.arange(len(members)) % folds
    correct = baseline = total = 0
    with torch.enable_grad():
        for k in range(folds):
            train, test = fold != k, fold == k
            if not bool(test.any()) or not bool(train.any()):
                continue
            mean, std = features[train].mean(dim=0), features[train].std(dim=0, unbiased=False) + 1e-4
            x_train, x_test = (features[train] - mean) / std, (features[test] - mean) / std
            weight, bias = _fit_logistic(x_train, y[train], len(names), weight_decay, steps)
            correct += int(((x_test @ weight + bias).argmax(dim=1) == y[test]).sum())
            majority = int(torch.bincount(y[train], minlength=len(names)).argmax())
            baseline += int((y[test] == majority).sum())
            total += int(test.sum())
    return ProbeResult(correct / max(1, total), baseline / max(1, total), len(names), len(labels))


def _joint_counts(tokens: Tensor, phones: Tensor, vocab_size: int, num_phones: int) -> Tensor:
    """Counts [V, C] of aligned (token, phone) frame pairs, tokens and phones int64 [M]."""
    joint = torch.zeros(vocab_size * num_phones, dtype=torch.float64)
    joint.index_add_(0, tokens * num_phones + phones, torch.ones(len(tokens), dtype=torch.float64))
    return joint.view(vocab_size, num_phones)


def phone_mutual_information(tokens: Tensor, phones: Tensor, vocab_size: int, num_phones: int) -> float:
    """PNMI = I(phone; token) / H(phone) of aligned frames, tokens and phones int64 [M]."""
    joint = _joint_counts(tokens, phones, vocab_size, num_phones)
    p = joint / joint.sum()  # [V, C]
    p_token, p_phone = p.sum(dim=1, keepdim=True), p.sum(dim=0, keepdim=True)
    nonzero = p > 0
    mutual = (p[nonzero] * (p[nonzero] / (p_token @ p_phone)[nonzero]).log()).sum()
    entropy = -(p_phone[p_phone > 0] * p_phone[p_phone > 0].log()).sum()
    return float(mutual / entropy) if entropy > 0 else 0.0


def phone_purity(tokens: Tensor, phones: Tensor, vocab_size: int, num_phones: int) -> float:
    """Fraction of frames whose phone is their token's most frequent phone."""
    joint = _joint_counts(tokens, phones, vocab_size, num_phones)
    return float(joint.max(dim=1).values.sum() / joint.sum().clamp(min=1))
