"""How much a token sequence says about its speaker and about its phones.

- `speaker_probe`: a linear classifier (multinomial logistic regression) from an utterance's
  token histogram to its speaker, cross-validated over utterances, classes balanced. Semantic tokens should make
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
    chance: float  # 1 / classes: the probe sees as many utterances of every class
    num_classes: int
    num_utterances: int  # after balancing
    weight_decay: float  # the L2 penalty the inner cross-validation chose most often


def _fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, steps: int) -> tuple[Tensor, Tensor]:
    weight = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _folds(y: Tensor, folds: int, generator: torch.Generator) -> Tensor:
    """A fold index per example, stratified: every class spread evenly over the folds."""
    fold = torch.empty(len(y), dtype=torch.long)
    for c in y.unique():
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold[members] = torch.arange(len(members)) % folds
    return fold


class _Projection:
    """sqrt of the histograms (Hellinger: a token's count varies as its square root), centred
    and projected on the training examples' principal components, then standardised: a few
    dozen well-conditioned inputs instead of V sparse ones, which a linear probe can fit
    without memorising the training utterances."""

    def __init__(self, x: Tensor, dims: int) -> None:
        x = x.sqrt()
        self.mean = x.mean(dim=0)
        _, _, v = torch.linalg.svd(x - self.mean, full_matrices=False)
        self.components = v[: min(dims, v.shape[0])].T  # [V, d]
        projected = (x - self.mean) @ self.components
        self.scale = projected.std(dim=0, unbiased=False) + 1e-6

    def __call__(self, x: Tensor) -> Tensor:
        return (x.sqrt() - self.mean) @ self.components / self.scale


def _accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, num_classes: int, dims: int,
              weight_decay: float, steps: int) -> float:
    projection = _Projection(x_train, dims)
    weight, bias = _fit_logistic(projection(x_train), y_train, num_classes, weight_decay, steps)
    return float(((projection(x_test) @ weight + bias).argmax(dim=1) == y_test).float().mean())


def speaker_probe(features: Tensor, labels: Sequence[str], folds: int = 2, seed: int = 0, dims: int = 64,
                  weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), steps: int = 100) -> ProbeResult:
    """Cross-validated accuracy of a linear classifier from histograms [U, V] to labels [U].

    Classes are balanced first (each keeps as many random utterances as the rarest has), so
    chance is 1 / classes however the corpus is split. The utterances are dealt into `folds`
    stratified folds; each is predicted by a multinomial logistic regression fitted on the
    others, on `dims` principal components of their sqrt-histograms, with the L2 penalty that
    an inner cross-validation on the training folds picks from `weight_decays`."""
    if features.dim() != 2 or features.shape[0] != len(labels):
        raise ValueError(f"features must be [U, V] with U = {len(labels)} labels, got {tuple(features.shape)}")
    names = sorted(set(labels))
    y = torch.tensor([names.index(label) for label in labels])
    generator = torch.Generator().manual_seed(seed)
    per_class = int(torch.bincount(y).min())
    if per_class < folds:
        raise ValueError(f"every speaker needs at least {folds} utterances for {folds}-fold probing, "
                         f"the rarest has {per_class}")
    keep = torch.cat([(y == c).nonzero().flatten()[torch.randperm(int((y == c).sum()), generator=generator)[:per_class]]
                      for c in range(len(names))])
    x, y = features[keep].double().clamp(min=0), y[keep]
    fold = _folds(y, folds, generator)
    accuracies, chosen = [], []
    with torch.enable_grad():
        for k in range(folds):
            train, test = fold != k, fold == k
            inner = _folds(y[train], 2, generator)
            scores = []
            for decay in weight_decays:  # inner 2-fold cross-validation picks the penalty
                scores.append(sum(_accuracy(x[train][inner != j], y[train][inner != j], x[train][inner == j],
                                            y[train][inner == j], len(names), dims, decay, steps) for j in range(2)))
            decay = weight_decays[max(range(len(scores)), key=scores.__getitem__)]
            chosen.append(decay)
            accuracies.append(_accuracy(x[train], y[train], x[test], y[test], len(names), dims, decay, steps))
    return ProbeResult(sum(accuracies) / len(accuracies), 1.0 / len(names), len(names), len(y),
                       max(set(chosen), key=chosen.count))


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
