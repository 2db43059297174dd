"""Training the content encoder on phone timings (`task = "semantic"` in a recipe).

[model] holds ContentEncoderConfig fields (all but `phones`: the inventory is read from the
training split of the manifest). [data] cache is the manifest (soundstorm corpus synth / scan,
with phone timings); crops are max_frames output frames long (100 = 4 s at 25 Hz); utterances
without phone timings are skipped. [options]: min_phone_count, the fewest training frames a
phone needs to get a class of its own (default 1).

The exported model is the encoder alone; `soundstorm semantic kmeans` turns it into a tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from soundstorm.data.audio_dataset import AudioCropDataset
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig, phone_loss
from soundstorm.semantic.phones import build_inventory, frame_targets
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import Task, register_task, sharded_loader

OPTIONS = {"min_phone_count": 1}


@dataclass
class PhoneBatch:
    wav: Tensor  # float32 [B, 1, N]
    lengths: Tensor  # int64 [B], real samples
    targets: Tensor  # int64 [B, S], phone index per output frame, IGNORE where unknown

    def to(self, device: torch.device | str) -> PhoneBatch:
        return PhoneBatch(self.wav.to(device), self.lengths.to(device), self.targets.to(device))


class PhoneCropDataset(Dataset[tuple[Tensor, int, Tensor]]):
    """Audio crops (AudioCropDataset) with the phone target of every output frame."""

    def __init__(self, audio: AudioCropDataset, config: ContentEncoderConfig) -> None:
        self.audio = audio
        self.config = config
        self.frames = -(-audio.crop_samples // config.hop_length)  # S per crop

    def set_epoch(self, epoch: int) -> None:
        self.audio.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, position: int) -> tuple[Tensor, int, Tensor]:
        crop = self.audio[position]
        frame_seconds = self.config.hop_length / self.config.sample_rate
        targets = frame_targets(self.audio.entries[position].phones, self.config.phones, self.frames,
                                frame_seconds, offset_seconds=crop.start / self.config.sample_rate)
        return crop.wav, crop.length, targets


def collate_phones(items: Sequence[tuple[Tensor, int, Tensor]]) -> PhoneBatch:
    return PhoneBatch(torch.stack([wav for wav, _, _ in items]),
                      torch.tensor([length for _, length, _ in items], dtype=torch.long),
                      torch.stack([targets for _, _, targets in items]))


def _has_phones(entry: ManifestEntry) -> bool:
    return bool(entry.phones)


@register_task("semantic")
class SemanticTask(Task):
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        super().__init__(recipe, context)
        unknown = sorted(set(recipe.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown [options] for task semantic: {unknown}; known: {sorted(OPTIONS)}")
        options = {**OPTIONS, **recipe.options}
        data = recipe.data
        if not data.cache:
            raise ValueError("the recipe needs data.cache: a manifest with phone timings (soundstorm corpus synth)")
        train_entries = [e for e in read_manifest(data.cache) if e.split == data.train_split]
        phones = build_inventory((e.phones for e in train_entries), options["min_phone_count"])
        if len(phones) < 2:
            raise ValueError(f"{data.cache}: the {data.train_split!r} split has no phone timings to train on "
                             "(soundstorm corpus synth stores them; corpus scan --align adds them)")
        if "phones" in recipe.model:
            raise ValueError("[model] phones is read from the manifest; remove it from the recipe")
        try:
            self.config = ContentEncoderConfig(phones=phones, **recipe.model)
        except TypeError as error:
            raise ValueError(f"[model] in the semantic recipe: {error}") from error
        crop_seconds = data.max_frames * self.config.hop_length / self.config.sample_rate
        self.train_set = PhoneCropDataset(AudioCropDataset(
            data.cache, sample_rate=self.config.sample_rate, crop_seconds=crop_seconds, split=data.train_split,
            seed=recipe.seed, where=_has_phones), self.config)
        self.valid_set = PhoneCropDataset(AudioCropDataset(
            data.cache, sample_rate=self.config.sample_rate, crop_seconds=crop_seconds, split=data.valid_split,
            random_crop=False, where=_has_phones), self.config) if data.valid_split else None

    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": ContentEncoder(self.config)}

    def train_batches(self, epoch: int, start_batch: int) -> Iterable[PhoneBatch]:
        self.train_set.set_epoch(epoch)
        return sharded_loader(self.train_set, collate_phones, self.recipe, self.context, epoch, shuffle=True,
                              start_batch=start_batch)

    def valid_batches(self) -> Iterator[PhoneBatch]:
        if self.valid_set is None:
            return iter(())
        loader = sharded_loader(self.valid_set, collate_phones, self.recipe, self.context, 0, shuffle=False,
                                whole=False)
        return (batch for batch, _ in zip(loader, range(self.recipe.schedule.valid_batches)))

    def loss(self, phase: str, modules: dict[str, nn.Module], batch: PhoneBatch, step: int) -> tuple[Tensor, dict[str, float]]:
        loss, correct, counted = phone_loss(modules["model"](batch.wav, batch.lengths), batch.targets)
        return loss, {"phone_accuracy": float(correct) / max(1, int(counted))}

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[PhoneBatch]) -> dict[str, float]:
        totals = torch.zeros(3, dtype=torch.float64)  # loss * frames, correct, frames
        for batch in batches:
            batch = self.move(batch)
            with self.autocast():
                loss, correct, counted = phone_loss(modules["model"](batch.wav, batch.lengths), batch.targets)
            totals += torch.tensor([float(loss) * int(counted), int(correct), int(counted)], dtype=torch.float64)
        totals = self.context.all_reduce_sum(totals)
        frames = max(1.0, float(totals[2]))
        return {"loss": float(totals[0]) / frames, "phone_accuracy": float(totals[1]) / frames}

    def export(self, module: nn.Module, path: Path) -> None:
        module.save_pretrained(path)  # type: ignore[operator]

    def batch_size_tokens(self, batch: PhoneBatch) -> int:
        return int((batch.lengths + self.config.hop_length - 1).div(self.config.hop_length, rounding_mode="floor").sum())
