"""Training our SoundStream codec on a manifest (`task = "soundstream"` in a recipe).

[model] holds SoundStreamConfig fields, or `preset = "small"` plus overrides. [data] cache is
the manifest (soundstorm corpus synth / scan); crops are max_frames codec frames long.
[options] holds SoundStreamLossConfig fields (loss weights, quantizer dropout, `adversarial`
and its start step, `decoder_only` to keep the tokens), `discriminator`, a table of DiscriminatorConfig
fields, and `speed_perturbation = [low, high]`, speed factors for the training crops
(AudioCropDataset's speed_range; validation crops stay as recorded), `random_eq_db`, the
largest gain of the training crops' random equalization (AudioCropDataset's eq_db),
`random_formant = [low, high]`, formant factors at a constant pitch for the training crops
(AudioCropDataset's formant_range), and `encoder_from`, a
SoundStream folder whose encoder and codebooks a new decoder is trained behind (with
`decoder_only = true`): a new decoder, even of another kind ([model] decoder = "vocos"), for a
codec whose tokens a token cache and SoundStorm models already hold. `decoder_from`, a
SoundStream folder whose decoder weights this one starts from (all but the semantic embedding
of a decoder that reads semantic tokens: [model] semantic_vocab_size, which needs
[options.soundstorm_inputs] for its tokenizer), and `semantic_dropout`, the share of crops whose
decoder is given no semantic tokens (so that it still decodes codes alone). `[options.reference]`
trains a decoder that reads a voice reference ([model] reference_mels; decoder_only): each crop
comes with a window of another utterance of its speaker, equalized as the crop (random_eq_db),
and on a `share` of the crops the tokens are the crop's before its equalization, so that the
envelope the target has is in the reference alone (ReferenceOptions).

Two phases per step: the codec (generator) on reconstruction (+ adversarial and feature
matching) losses, then, once the GAN is on, the discriminator on the same step's audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from soundstorm.codecs.soundstream.config import DECODER_FIELDS, DiscriminatorConfig, SoundStreamConfig
from soundstorm.codecs.soundstream.discriminator import MultiScaleSTFTDiscriminator
from soundstorm.codecs.soundstream.model import SoundStream
from soundstorm.codecs.soundstream.soundstorm_inputs import FinerLevelPredictor, SoundStormInputs
from soundstorm.codecs.soundstream.training import SoundStreamLossConfig, SoundStreamObjective
from soundstorm.data.audio_dataset import AudioBatch, AudioCropDataset, collate_crops
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import Phase, Task, register_task, sharded_loader


@dataclass(frozen=True)
class ReferenceOptions:
    """[options.reference]: how a decoder that reads a voice reference is trained."""

    seconds: float = 3.0  # the reference's length, as a text-to-speech prompt's
    share: float = 0.5  # crops whose tokens are the crop's before its equalization: the envelope only in the reference
    dropout: float = 0.1  # crops given no reference (zeros), so that the decoder still decodes without one

    @classmethod
    def from_dict(cls, values: Any) -> ReferenceOptions:
        if not isinstance(values, dict):
            raise ValueError("the soundstream recipe: options.reference must be a table ([options.reference] seconds = 3.0)")
        try:
            options = cls(**values)
        except TypeError as error:
            raise ValueError(f"the soundstream recipe: options.reference: {error}; fields: seconds, share, dropout") from error
        if not options.seconds > 0:
            raise ValueError(f"the soundstream recipe: options.reference.seconds must be > 0, got {options.seconds!r}")
        for name in ("share", "dropout"):
            if not 0.0 <= getattr(options, name) <= 1.0:
                raise ValueError(f"the soundstream recipe: options.reference.{name} must be in [0, 1], "
                                 f"got {getattr(options, name)!r}")
        return options


@register_task("soundstream")
class SoundStreamTask(Task):
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        super().__init__(recipe, context)
        model = dict(recipe.model)
        preset = model.pop("preset", None)
        try:
            self.config = SoundStreamConfig.preset(preset, **model) if preset else SoundStreamConfig.from_dict(model)
            options = dict(recipe.options)
            self.discriminator_config = DiscriminatorConfig(**options.pop("discriminator", {}))
            speed_range = options.pop("speed_perturbation", None)
            eq_db = options.pop("random_eq_db", None)
            formant_range = options.pop("random_formant", None)
            encoder_from = options.pop("encoder_from", None)
            decoder_from = options.pop("decoder_from", None)
            self.semantic_dropout = float(options.pop("semantic_dropout", 0.2))
            soundstorm_inputs = options.pop("soundstorm_inputs", None)
            reference = options.pop("reference", None)
            self.loss_config = SoundStreamLossConfig.from_dict(options)
        except TypeError as error:
            raise ValueError(f"the soundstream recipe: {error}") from error
        data = recipe.data
        if not data.cache:
            raise ValueError("the recipe needs data.cache: the corpus manifest (soundstorm corpus synth / scan)")
        if encoder_from is not None and not self.loss_config.decoder_only:
            raise ValueError("the soundstream recipe: options.encoder_from keeps another codec's encoder and codebooks, "
                             "so it needs options.decoder_only = true")
        self.encoder_from = Path(encoder_from) if encoder_from is not None else None
        self.decoder_from = Path(decoder_from) if decoder_from is not None else None
        if not 0.0 <= self.semantic_dropout <= 1.0:
            raise ValueError(f"the soundstream recipe: options.semantic_dropout must be in [0, 1], got {self.semantic_dropout}")
        self.predictor: FinerLevelPredictor | None = None
        if soundstorm_inputs is not None:
            if not isinstance(soundstorm_inputs, dict):
                raise ValueError("the soundstream recipe: options.soundstorm_inputs must be a table "
                                 "([options.soundstorm_inputs] soundstorm = ..., semantic = ...)")
            if not self.loss_config.decoder_only or self.loss_config.adversarial:
                raise ValueError("the soundstream recipe: options.soundstorm_inputs trains the decoder on SoundStorm's "
                                 "codes, so it needs options.decoder_only = true (the tokens must not move) and no "
                                 "adversarial phase")
            self.predictor = FinerLevelPredictor(SoundStormInputs.from_dict(soundstorm_inputs), self.config, context.device)
        if self.config.semantic_vocab_size:
            if self.predictor is None:
                raise ValueError("the soundstream recipe: a decoder that reads semantic tokens (model.semantic_vocab_size) "
                                 "is trained with [options.soundstorm_inputs], whose tokenizer gives them")
            theirs = (self.predictor.semantic.vocab_size, self.predictor.model.config.semantic_rate_ratio)
            if (self.config.semantic_vocab_size, self.config.semantic_rate_ratio) != theirs:
                raise ValueError(f"the soundstream recipe: model.semantic_vocab_size / semantic_rate_ratio are "
                                 f"{self.config.semantic_vocab_size} / {self.config.semantic_rate_ratio}; the tokenizer and "
                                 f"SoundStorm of options.soundstorm_inputs make {theirs[0]} / {theirs[1]}")
        self.reference = None if reference is None else ReferenceOptions.from_dict(reference)
        if (self.reference is not None) != bool(self.config.reference_mels):
            raise ValueError("the soundstream recipe: a decoder that reads a voice reference (model.reference_mels > 0) "
                             "is trained with [options.reference], and only such a decoder is")
        if self.reference is not None and not self.loss_config.decoder_only:
            raise ValueError("the soundstream recipe: options.reference trains the decoder alone: it needs "
                             "options.decoder_only = true")
        reference_seconds = None if self.reference is None else self.reference.seconds
        crop_seconds = data.max_frames / self.config.frame_rate
        for name, value in (("speed_perturbation", speed_range), ("random_formant", formant_range)):
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) != 2):
                raise ValueError(f"the soundstream recipe: options.{name} must be [low, high], got {value!r}")
        self.train_set = AudioCropDataset(data.cache, sample_rate=self.config.sample_rate, crop_seconds=crop_seconds,
                                          split=data.train_split, seed=recipe.seed,
                                          speed_range=tuple(speed_range) if speed_range is not None else None,
                                          eq_db=eq_db, reference_seconds=reference_seconds,
                                          formant_range=tuple(formant_range) if formant_range is not None else None)
        self.valid_set = AudioCropDataset(data.cache, sample_rate=self.config.sample_rate, crop_seconds=crop_seconds,
                                          split=data.valid_split, random_crop=False,
                                          reference_seconds=reference_seconds) if data.valid_split else None
        self.objective = SoundStreamObjective(self.loss_config, self.config.sample_rate).to(context.device)
        self._pending: list[Tensor] = []  # this step's reconstructions, for the discriminator phase

    def build_modules(self) -> dict[str, nn.Module]:
        model = SoundStream(self.config)
        if self.encoder_from is not None:
            load_encoder(model, self.encoder_from)
        if self.decoder_from is not None:
            load_decoder(model, self.decoder_from)
        if self.config.semantic_feature_dim:
            assert self.predictor is not None  # checked in __init__: semantic tokens come with soundstorm_inputs
            # The tokens' descriptions are the tokenizer's centroids; a resumed checkpoint brings the same ones.
            model.decoder.set_semantic_features(self.predictor.semantic.centroids)
        if self.loss_config.decoder_only:
            for parameter in [*model.encoder.parameters(), *model.quantizer.parameters()]:
                parameter.requires_grad_(False)  # the trainer's optimizer takes only the decoder
        modules: dict[str, nn.Module] = {"model": model}
        if self.loss_config.adversarial:
            modules["discriminator"] = MultiScaleSTFTDiscriminator(self.discriminator_config)
        return modules

    def phases(self) -> list[Phase]:
        phases = [Phase("generator", ("model",))]
        if self.loss_config.adversarial:
            phases.append(Phase("discriminator", ("discriminator",)))
        return phases

    def train_batches(self, epoch: int, start_batch: int) -> Iterable[AudioBatch]:
        self.train_set.set_epoch(epoch)
        return sharded_loader(self.train_set, collate_crops, self.recipe, self.context, epoch, shuffle=True, start_batch=start_batch)

    def valid_batches(self) -> Iterator[AudioBatch]:
        if self.valid_set is None:
            return iter(())
        loader = sharded_loader(self.valid_set, collate_crops, self.recipe, self.context, 0, shuffle=False,
                                whole=False)
        return (batch for batch, _ in zip(loader, range(self.recipe.schedule.valid_batches)))

    def loss(self, phase: str, modules: dict[str, nn.Module], batch: AudioBatch, step: int) -> tuple[Tensor | None, dict[str, float]]:
        if phase == "generator":
            if self.loss_config.decoder_only:
                # Eval mode stops the EMA codebook updates and dead-code restarts (the trainer
                # puts every module back in training mode after each validation).
                model = modules["model"]
                codec = model.module if isinstance(model, DistributedDataParallel) else model
                codec.encoder.eval()
                codec.quantizer.eval()
            if self.predictor is not None or self.reference is not None:
                return self._decoder_loss(modules["model"], batch)
            result = self.objective.generator_losses(modules["model"], modules.get("discriminator"), batch.wav, step)
            if "discriminator" in modules:
                self._pending.append(result.reconstruction.detach())
            metrics = {k: float(v.detach()) for k, v in result.losses.items() if k != "total"}
            return result.losses["total"], metrics
        fake = self._pending.pop(0)  # the same micro-batch's reconstruction, in order
        if not self.objective.adversarial_active(step):
            return None, {}
        losses = self.objective.discriminator_losses(modules["discriminator"], batch.wav, fake)
        return losses["total"], {k: float(v) for k, v in losses.items() if k != "total"}

    def _decoder_loss(self, model: nn.Module, batch: AudioBatch) -> tuple[Tensor, dict[str, float]]:
        """The decoder's reconstruction of the crops wav [B, 1, N] from their true codes (quantizer
        dropout as configured) or, for a `share` of the crops, from their true level 1 and
        SoundStorm's finer levels, as codes or as expected vectors (soundstorm_inputs.py); with a
        voice reference, on its `share` of the crops from the codes of the crop before its
        equalization (the envelope of the target then only in the reference)."""
        codec = model.module if isinstance(model, DistributedDataParallel) else model
        wav = batch.wav
        B = wav.shape[0]
        metrics: dict[str, float] = {}
        with torch.no_grad():
            source, reference = wav, None
            if self.reference is not None:
                assert batch.clean is not None and batch.reference is not None  # the dataset's reference_seconds
                clean = torch.rand(B, device=wav.device) < self.reference.share  # [B]
                source = torch.where(clean[:, None, None], batch.clean, wav)
                dropped = torch.rand(B, device=wav.device) < self.reference.dropout  # [B]
                reference = codec.reference_spectrum(batch.reference).masked_fill(dropped[:, None], 0.0)  # [B, M]
                metrics["clean_share"] = float(clean.float().mean())
            codes = codec.encode(source)  # [B, T, Q]
            levels = self.objective.sample_levels(B, self.config.num_quantizers, wav.device)  # [B]
            latents = codec.quantizer.decode(codes, levels)  # [B, D, T]
            semantic = None
            if self.predictor is not None:
                semantic = self.predictor.semantic_tokens(source, codes.shape[1])  # [B, S]
                generated = torch.rand(B, device=wav.device) < self.predictor.inputs.share  # [B]
                if bool(generated.any()):
                    latents[generated] = self.predictor.decoder_inputs(semantic[generated], codes[generated],
                                                                       codec.quantizer)
                metrics["generated_share"] = float(generated.float().mean())
        given = None if semantic is None else self._decoder_semantic(semantic)
        fake = model(wav, latents=latents, semantic=given, reference=reference).reconstruction  # through DDP
        terms = self.objective.reconstruction_losses(fake, wav)
        total = self.objective.weighted_reconstruction(terms)
        return total, {**{k: float(v.detach()) for k, v in terms.items()}, **metrics}

    def _decoder_semantic(self, semantic: Tensor) -> Tensor | None:
        """The semantic tokens [B, S] a decoder that reads them is given: the null token (V) on a
        semantic_dropout share of the crops. None for a decoder that reads none."""
        V = self.config.semantic_vocab_size
        if not V:
            return None
        dropped = torch.rand(semantic.shape[0], device=semantic.device) < self.semantic_dropout  # [B]
        return semantic.masked_fill(dropped[:, None], V)

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[AudioBatch]) -> dict[str, float]:
        model = modules["model"]
        codec = model.module if isinstance(model, DistributedDataParallel) else model
        totals = torch.zeros(4, dtype=torch.float64)  # mel sum, stft sum, batches, mel sum from SoundStorm's codes
        for batch in batches:
            batch = self.move(batch)
            wav = batch.wav
            reference = None
            if self.reference is not None:
                assert batch.reference is not None
                reference = codec.reference_spectrum(batch.reference)  # [B, M]
            semantic = None
            if self.predictor is not None:
                codes = codec.encode(wav)  # [B, T, Q]
                semantic = self.predictor.semantic_tokens(wav, codes.shape[1])  # [B, S]
            # A decoder that reads semantic tokens is validated with them (as text to speech uses it).
            given = semantic if self.config.semantic_vocab_size else None
            terms = self.objective.reconstruction_losses(model(wav, semantic=given, reference=reference).reconstruction, wav)
            generated = 0.0
            if self.predictor is not None:
                latents = self.predictor.decoder_inputs(semantic, codes, codec.quantizer)
                generated = float(self.objective.reconstruction_losses(
                    model(wav, latents=latents, semantic=given, reference=reference).reconstruction, wav)["mel"])
            totals += torch.tensor([float(terms["mel"]), float(terms["stft_convergence"] + terms["stft_log_magnitude"]),
                                    1.0, generated], dtype=torch.float64)
        totals = self.context.all_reduce_sum(totals)
        count = max(1.0, float(totals[2]))
        metrics = {"loss": float(totals[0]) / count, "mel": float(totals[0]) / count, "stft": float(totals[1]) / count}
        if self.predictor is not None:
            # What the run trains for: the true codes and SoundStorm's, in its share.
            share = self.predictor.inputs.share
            metrics["mel_soundstorm_inputs"] = float(totals[3]) / count
            metrics["loss"] = (1 - share) * metrics["mel"] + share * metrics["mel_soundstorm_inputs"]
        return metrics

    def export(self, module: nn.Module, path: Path) -> None:
        module.save_pretrained(path)  # type: ignore[operator]

    def batch_size_tokens(self, batch: AudioBatch) -> int:
        return int(batch.lengths.sum()) // self.config.hop_length * self.config.num_quantizers

    def samples(self, module: nn.Module, step: int) -> dict[str, tuple[Tensor, int]]:
        if self.valid_set is None:
            return {}
        wav = self.valid_set[0].wav[None].to(self.context.device)  # [1, 1, N]
        with torch.inference_mode():
            reconstruction = module(wav).reconstruction
        return {"original": (wav[0, 0], self.config.sample_rate), "reconstruction": (reconstruction[0, 0], self.config.sample_rate)}


def load_decoder(model: SoundStream, path: Path) -> None:
    """Copy the decoder of the SoundStream folder at `path` into model, whose decoder is the same
    but for a semantic embedding or projection or a reference projection the folder's lacks (they
    stay at zero: it decodes as before)."""
    source = SoundStream.from_pretrained(path)
    shape = ("decoder", "vocos_dim", "vocos_depth", "vocos_n_fft", "hop_length")
    ours, theirs = model.config, source.config
    differing = [k for k in shape if getattr(ours, k) != getattr(theirs, k)]
    if differing:
        raise ValueError(f"options.decoder_from {path}: its decoder differs from this recipe's in {differing}")
    state = {k: v for k, v in source.state_dict().items() if k.startswith("decoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # decoder.semantic, .semantic_projection, .semantic_features: what reads semantic tokens;
    # decoder.reference_projection: what reads a voice reference.
    new = ("decoder.semantic", "decoder.reference")
    if unexpected or any(k.startswith("decoder.") and not k.startswith(new) for k in missing):
        raise ValueError(f"options.decoder_from {path}: weights do not fit ({missing=}, {unexpected=})")


def load_encoder(model: SoundStream, path: Path) -> None:
    """Copy the encoder and codebooks of the SoundStream folder at `path` into model, whose
    decoder may differ from that folder's; everything that makes tokens must agree."""
    source = SoundStream.from_pretrained(path)
    ours, theirs = model.config.to_dict(), source.config.to_dict()
    differing = sorted(k for k in ours if k not in DECODER_FIELDS and ours[k] != theirs[k])
    if differing:
        raise ValueError(f"options.encoder_from {path}: its encoder or quantizer differs from this recipe's in {differing}")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("decoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("decoder.") for k in missing):
        raise ValueError(f"options.encoder_from {path}: weights do not fit ({missing=}, {unexpected=})")
