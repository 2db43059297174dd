"""What one training step of the codec computes: the generator's and the discriminator's losses.

The shared training loop (soundstorm/train) owns optimizers, schedules, DDP and checkpoints;
it calls, per step:

    objective = SoundStreamObjective(SoundStreamLossConfig(), sample_rate=16000)
    gen = objective.generator_losses(model, discriminator, wav, step)   # phase "generator"
    gen.losses["total"].backward()   # (also reaches the discriminator: zero its grads before its step)
    if objective.adversarial_active(step):                              # phase "discriminator"
        disc = objective.discriminator_losses(discriminator, wav, gen.reconstruction.detach())
        disc["total"].backward()

Both calls run the discriminator once per call, on real and generated audio concatenated,
so that a DDP-wrapped discriminator sees one forward per backward.

`fit` is a minimal Adam loop for tests and quick experiments, not the project's trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from soundstorm.codecs.soundstream.discriminator import DiscriminatorOutput, MultiScaleSTFTDiscriminator
from soundstorm.codecs.soundstream.losses import (
    ADVERSARIAL_LOSSES,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from soundstorm.codecs.soundstream.model import SoundStream, SoundStreamOutput


@dataclass(frozen=True)
class SoundStreamLossConfig:
    """Loss weights and training-time behaviour of the codec. Weights follow DAC (Kumar et al.,
    2023): the log-mel loss dominates, the GAN terms refine."""

    mel_weight: float = 15.0  # multi-scale log-mel L1
    stft_weight: float = 1.0  # multi-resolution STFT: spectral convergence + log magnitude
    waveform_weight: float = 0.0  # L1 on samples (EnCodec: 0.1); 0 = off
    commitment_weight: float = 0.25  # pulls the encoder's output towards its codes
    quantizer_dropout: float = 0.5  # fraction of examples that keep a random prefix of levels (SoundStream: 1.0)
    adversarial: bool = False  # train against the multi-scale STFT discriminator
    adversarial_loss: str = "hinge"  # "hinge" (EnCodec) or "lsgan" (HiFi-GAN, DAC)
    adversarial_weight: float = 1.0
    feature_weight: float = 2.0  # relative feature matching
    adversarial_start_step: int = 0  # steps of reconstruction-only training before the GAN starts
    # Train the decoder only: the encoder and the codebooks, and so every token a cache or a
    # SoundStorm model was made from, stay as they are (a vocoder-style fine-tune, e.g. the
    # adversarial phase on top of a codec that SoundStorm is already trained on).
    decoder_only: bool = False
    stft_n_ffts: tuple[int, ...] = (256, 512, 1024)
    mel_n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)

    def __post_init__(self) -> None:
        weights = ("mel_weight", "stft_weight", "waveform_weight", "commitment_weight", "adversarial_weight",
                   "feature_weight")
        for name in weights:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"SoundStreamLossConfig.{name} must be a number >= 0, got {value!r}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"SoundStreamLossConfig.quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        if self.adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"SoundStreamLossConfig.adversarial_loss must be one of {ADVERSARIAL_LOSSES}, "
                f"got {self.adversarial_loss!r}"
            )
        if not isinstance(self.adversarial_start_step, int) or self.adversarial_start_step < 0:
            raise ValueError(
                f"SoundStreamLossConfig.adversarial_start_step must be an integer >= 0, "
                f"got {self.adversarial_start_step!r}"
            )
        for name in ("stft_n_ffts", "mel_n_ffts", "mel_n_mels"):
            value = tuple(getattr(self, name))
            if not value or any(not isinstance(v, int) or v < 1 for v in value):
                raise ValueError(
                    f"SoundStreamLossConfig.{name} must be a non-empty list of positive integers, got {value!r}"
                )
            object.__setattr__(self, name, value)
        if len(self.mel_n_ffts) != len(self.mel_n_mels):
            raise ValueError(
                f"SoundStreamLossConfig.mel_n_ffts {self.mel_n_ffts} and mel_n_mels {self.mel_n_mels} "
                "must be equally long"
            )
        if self.mel_weight + self.stft_weight + self.waveform_weight == 0:
            raise ValueError("SoundStreamLossConfig: at least one reconstruction loss weight must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoundStreamLossConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SoundStreamLossConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)


@dataclass
class GeneratorLosses:
    losses: dict[str, Tensor]  # "total" (what to minimise) and every term, each []; weighted terms sum to "total"
    reconstruction: Tensor  # [B, 1, N] the decoded audio; detach it for the discriminator's step
    output: SoundStreamOutput  # codes, commitment loss, per-level perplexity


class SoundStreamObjective(nn.Module):
    """The codec's losses. An nn.Module only so that its mel filterbanks and windows follow
    `.to(device)`; it has no parameters."""

    def __init__(self, config: SoundStreamLossConfig, sample_rate: int) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = sample_rate
        self.stft_loss = MultiResolutionSTFTLoss(config.stft_n_ffts)
        self.mel_loss = MultiScaleMelLoss(sample_rate, config.mel_n_ffts, config.mel_n_mels)

    def adversarial_active(self, step: int) -> bool:
        """Whether the GAN losses (and the discriminator's updates) run at this step."""
        return self.config.adversarial and step >= self.config.adversarial_start_step

    def sample_levels(self, batch_size: int, num_quantizers: int, device: torch.device | str = "cpu") -> Tensor:
        """Quantizer dropout: int64 [B], Q for most examples, and for a `quantizer_dropout`
        fraction of them a level count drawn uniformly from 1..Q (SoundStream, section 3.3)."""
        levels = torch.full((batch_size,), num_quantizers, dtype=torch.int64, device=device)
        dropped = torch.rand(batch_size, device=device) < self.config.quantizer_dropout
        random_levels = torch.randint(1, num_quantizers + 1, (batch_size,), device=device)
        return torch.where(dropped, random_levels, levels)

    def reconstruction_losses(self, fake: Tensor, real: Tensor) -> dict[str, Tensor]:
        """Unweighted reconstruction terms of fake and real [B, 1, N]; each [] and 0 for fake == real."""
        convergence, log_magnitude = self.stft_loss(fake, real)
        return {
            "mel": self.mel_loss(fake, real),
            "stft_convergence": convergence,
            "stft_log_magnitude": log_magnitude,
            "waveform": (fake.float() - real.float()).abs().mean(),
        }

    def weighted_reconstruction(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted sum [] of reconstruction_losses' terms."""
        config = self.config
        return (config.mel_weight * terms["mel"]
                + config.stft_weight * (terms["stft_convergence"] + terms["stft_log_magnitude"])
                + config.waveform_weight * terms["waveform"])

    def generator_losses(
        self, model: nn.Module, discriminator: nn.Module | None, wav: Tensor, step: int
    ) -> GeneratorLosses:
        """Run the codec on wav [B, 1, N] with quantizer dropout and weigh its losses.

        Args:
            model: a SoundStream in training mode (or a DDP wrapper of one).
            discriminator: a MultiScaleSTFTDiscriminator (or DDP wrapper); may be None when
                config.adversarial is False.
            step: the optimizer step, for the adversarial warm-up.
        """
        core = model.module if hasattr(model, "module") else model
        if not isinstance(core, SoundStream):
            raise ValueError(f"generator_losses expects a SoundStream model, got {type(core).__name__}")
        if core.sample_rate != self.sample_rate:
            raise ValueError(
                f"the model codes {core.sample_rate} Hz audio but these losses were built for "
                f"{self.sample_rate} Hz: build SoundStreamObjective with sample_rate={core.sample_rate}"
            )
        config = self.config
        levels = self.sample_levels(wav.shape[0], core.config.num_quantizers, wav.device)
        output: SoundStreamOutput = model(wav, levels=levels)
        fake = output.reconstruction  # [B, 1, N]
        terms = self.reconstruction_losses(fake, wav)
        terms["commitment"] = output.commitment_loss
        total = self.weighted_reconstruction(terms) + config.commitment_weight * terms["commitment"]
        if self.adversarial_active(step):
            if discriminator is None:
                raise ValueError("the adversarial loss is on (config.adversarial) but no discriminator was given")
            B = wav.shape[0]
            # Real audio is a fixed target: detached, so only `fake` carries gradient.
            real_out, fake_out = _discriminate(discriminator, wav.detach(), fake).split(B)
            real_features = [[f.detach() for f in scale] for scale in real_out.features]
            terms["adversarial"] = generator_adversarial_loss(fake_out.logits, config.adversarial_loss)
            terms["feature_matching"] = feature_matching_loss(real_features, fake_out.features)
            total = (
                total
                + config.adversarial_weight * terms["adversarial"]
                + config.feature_weight * terms["feature_matching"]
            )
        terms["total"] = total
        return GeneratorLosses(losses=terms, reconstruction=fake, output=output)

    def discriminator_losses(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """The discriminator's loss on real and generated audio [B, 1, N] (pass fake detached):
        {"total": [], "real_score": [], "fake_score": []}, the scores being mean logits."""
        B = real.shape[0]
        if fake.shape != real.shape:
            raise ValueError(
                f"real and fake audio must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}"
            )
        real_out, fake_out = _discriminate(discriminator, real, fake.detach()).split(B)
        total = discriminator_adversarial_loss(real_out.logits, fake_out.logits, self.config.adversarial_loss)
        return {
            "total": total,
            "real_score": torch.stack([x.float().mean() for x in real_out.logits]).mean().detach(),
            "fake_score": torch.stack([x.float().mean() for x in fake_out.logits]).mean().detach(),
        }


def _discriminate(discriminator: nn.Module, real: Tensor, fake: Tensor) -> DiscriminatorOutput:
    """One discriminator pass over real and fake [B, 1, N] together -> outputs of [2B, ...]."""
    output = discriminator(torch.cat([real, fake], dim=0))
    if not isinstance(output, DiscriminatorOutput):
        raise ValueError(f"the discriminator must return a DiscriminatorOutput, got {type(output).__name__}")
    return output


def fit(
    model: SoundStream,
    batches: Iterable[Tensor],
    *,
    objective: SoundStreamObjective | None = None,
    discriminator: MultiScaleSTFTDiscriminator | None = None,
    lr: float = 1e-3,
) -> list[dict[str, float]]:
    """Train on each batch of float wav [B, 1, N] once, with Adam; returns each step's losses.

    For tests and quick experiments only: no schedule, clipping, DDP or checkpoints.
    """
    objective = objective or SoundStreamObjective(SoundStreamLossConfig(), model.sample_rate)
    generator_optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.8, 0.99))
    discriminator_optimizer = (
        torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.8, 0.99)) if discriminator is not None else None
    )
    model.train()
    history = []
    for step, wav in enumerate(batches):
        generator = objective.generator_losses(model, discriminator, wav, step)
        generator_optimizer.zero_grad(set_to_none=True)
        generator.losses["total"].backward()
        generator_optimizer.step()
        record = {name: float(value.detach()) for name, value in generator.losses.items()}
        if discriminator_optimizer is not None and discriminator is not None and objective.adversarial_active(step):
            discriminator_optimizer.zero_grad(set_to_none=True)  # drops what the generator's loss left
            losses = objective.discriminator_losses(discriminator, wav, generator.reconstruction.detach())
            losses["total"].backward()
            discriminator_optimizer.step()
            record.update({f"discriminator_{name}": float(value.detach()) for name, value in losses.items()})
        history.append(record)
    return history
