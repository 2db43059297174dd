"""The token cache: a corpus's codec and semantic tokens, on disk, versioned and memory-mapped.

    cache/
      cache.json              format version, codec and semantic tokenizer metadata, shard list
      shards/00000/codes.npy     uint16 [F, Q]  every utterance's frames, one after another
      shards/00000/semantic.npy  uint16/int32 [Fs]  semantic tokens (absent: unconditional)
      shards/00000/index.npy     int64 [n, 4]  per utterance: frame offset, T, token offset, S
      shards/00000/items.jsonl   per utterance: id, speaker, text, split, duration

A shard is written into a staging folder and renamed into place, so it is either complete or
absent; `cache.json` is written last, once every shard exists. An interrupted build resumes
by skipping the shards that exist. Semantic tokens are stored at S = ceil(T / r) per
utterance, r = codec frame rate / semantic token rate when that is whole (else r = 1, tokens
resampled to the frame rate: soundstorm.semantic.rate), exactly what SoundStorm takes.

Notation: T frames, Q levels, S semantic tokens, n utterances in a shard.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundstorm.atomic import atomic_write_text
from soundstorm.semantic.rate import conditioning_ratio, match_rate

FORMAT_VERSION = 1
META_NAME = "cache.json"
BUILD_NAME = "build.json"  # present while a build is in progress: its settings
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class CacheItem:
    id: str
    speaker: str
    text: str | None
    split: str | None
    duration: float  # seconds of audio


def shard_name(index: int) -> str:
    return f"{index:05d}"


def semantic_rate_ratio(codec: dict[str, Any], semantic: dict[str, Any]) -> int:
    """Codec frames per stored semantic token (soundstorm.semantic.rate: a whole frame_rate /
    rate, else 1 with tokens resampled to the frame rate)."""
    return conditioning_ratio(codec["frame_rate"], semantic["rate"])


def fit_semantic(tokens: np.ndarray, num_frames: int, codec: dict[str, Any], semantic: dict[str, Any]) -> np.ndarray:
    """An utterance's semantic tokens [S'] -> the S = ceil(T / ratio) the cache stores."""
    return match_rate(tokens, semantic["rate"], codec["frame_rate"], num_frames)


def write_shard(
    root: Path,
    index: int,
    items: list[CacheItem],
    codes: list[np.ndarray],
    semantic: list[np.ndarray] | None,
    semantic_dtype: np.dtype | None,
) -> Path:
    """Write one shard atomically. codes: per utterance int [T, Q] in [0, 65536); semantic: per
    utterance int [S]. Returns the shard folder."""
    shards = root / SHARDS_DIR
    shards.mkdir(parents=True, exist_ok=True)
    final = shards / shard_name(index)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=shards))
    try:
        frames = np.array([len(c) for c in codes], dtype=np.int64)
        tokens = np.array([len(s) for s in semantic], dtype=np.int64) if semantic is not None else np.zeros_like(frames)
        index_table = np.stack(
            [np.cumsum(frames) - frames, frames, np.cumsum(tokens) - tokens, tokens], axis=1
        )  # [n, 4]
        np.save(staging / "codes.npy", np.concatenate(codes).astype(np.uint16))
        if semantic is not None:
            np.save(staging / "semantic.npy", np.concatenate(semantic).astype(semantic_dtype))
        np.save(staging / "index.npy", index_table)
        (staging / "items.jsonl").write_text("".join(json.dumps(asdict(i), ensure_ascii=False) + "\n" for i in items))
        if final.exists():  # another process finished the same shard first: keep theirs
            shutil.rmtree(staging)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_meta(root: Path, settings: dict[str, Any], num_shards: int) -> None:
    """Finish a build: check every shard and write cache.json."""
    total_items, total_frames = 0, 0
    shards = []
    for index in range(num_shards):
        folder = root / SHARDS_DIR / shard_name(index)
        if not folder.is_dir():
            raise RuntimeError(f"shard {folder} is missing; rerun the build to resume it")
        table = np.load(folder / "index.npy")
        shards.append({"name": shard_name(index), "num_items": len(table), "num_frames": int(table[:, 1].sum())})
        total_items += len(table)
        total_frames += int(table[:, 1].sum())
    meta = dict(settings, num_items=total_items, num_frames=total_frames, shards=shards)
    atomic_write_text(root / META_NAME, json.dumps(meta, indent=2) + "\n")
    (root / BUILD_NAME).unlink(missing_ok=True)


class TokenCache:
    """A finished token cache, memory-mapped. Item i's tokens: `codes(i)`, `semantic(i)`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_file = self.root / META_NAME
        if not meta_file.is_file():
            hint = " (a build is in progress or was interrupted: rerun it to finish)" if (self.root / BUILD_NAME).exists() else ""
            raise FileNotFoundError(f"no token cache at {self.root}: {META_NAME} is missing{hint}")
        try:
            self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{meta_file} is not valid JSON ({error}): the cache is corrupt") from error
        version = self.meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{meta_file} has format_version {version!r}; this version of soundstorm reads "
                f"token caches of format_version {FORMAT_VERSION}: rebuild it with `soundstorm corpus tokenize`"
            )
        self.codec: dict[str, Any] = self.meta["codec"]
        self.semantic_info: dict[str, Any] | None = self.meta.get("semantic")
        self.ratio = semantic_rate_ratio(self.codec, self.semantic_info) if self.semantic_info else None

        self._codes: list[np.ndarray] = []
        self._semantic: list[np.ndarray | None] = []
        tables, self.items = [], []
        for number, shard in enumerate(self.meta["shards"]):
            folder = self.root / SHARDS_DIR / shard["name"]
            try:
                codes = np.load(folder / "codes.npy", mmap_mode="r")
                table = np.load(folder / "index.npy")
                semantic = np.load(folder / "semantic.npy", mmap_mode="r") if self.semantic_info else None
                items = [CacheItem(**json.loads(line)) for line in (folder / "items.jsonl").read_text().splitlines()]
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(f"shard {folder} cannot be read ({error}): rebuild the cache") from error
            if len(table) != shard["num_items"] or len(items) != len(table) or codes.shape[0] != table[:, 1].sum():
                raise ValueError(f"shard {folder} does not match {META_NAME}: the cache is corrupt, rebuild it")
            if codes.ndim != 2 or codes.shape[1] != self.codec["num_quantizers"]:
                raise ValueError(f"shard {folder} holds codes of shape {codes.shape}, expected [F, {self.codec['num_quantizers']}]")
            self._codes.append(codes)
            self._semantic.append(semantic)
            tables.append(np.concatenate([np.full((len(table), 1), number), table], axis=1))
            self.items += items
        self._index = np.concatenate(tables) if tables else np.zeros((0, 5), dtype=np.int64)  # [N, 5]

    def __len__(self) -> int:
        return len(self._index)

    @property
    def num_frames(self) -> np.ndarray:
        """int64 [N]: T of every utterance."""
        return self._index[:, 2]

    def codes(self, i: int) -> np.ndarray:
        """uint16 [T, Q] (a read-only memory map)."""
        shard, offset, frames = self._index[i, :3]
        return self._codes[shard][offset : offset + frames]

    def semantic(self, i: int) -> np.ndarray | None:
        """[S] semantic tokens, S = ceil(T / ratio); None for a cache without them."""
        shard, _, _, offset, tokens = self._index[i]
        array = self._semantic[shard]
        return None if array is None else array[offset : offset + tokens]

    def indices(self, split: str | None = None) -> list[int]:
        """Items of one split (all items when None)."""
        return [i for i, item in enumerate(self.items) if split is None or item.split == split]

    def check_compatible(self, model_config: Any = None, codec: Any = None) -> None:
        """Refuse, naming the field, a model config or codec that disagrees with this cache."""
        if codec is not None:
            for field, value in codec.describe().items():
                if field == "name":
                    continue
                if self.codec.get(field) != value:
                    raise ValueError(
                        f"the token cache at {self.root} was made with a codec of {field} "
                        f"{self.codec.get(field)!r}, but the codec in use has {field} {value!r}"
                    )
        if model_config is not None:
            cache = self.codec
            if model_config.codebook_size != cache["codebook_size"]:
                raise ValueError(
                    f"the model has codebook_size {model_config.codebook_size}, the token cache at "
                    f"{self.root} has codebook_size {cache['codebook_size']} (codec {cache['name']})"
                )
            if model_config.num_quantizers > cache["num_quantizers"]:
                raise ValueError(
                    f"the model generates {model_config.num_quantizers} levels, the token cache at "
                    f"{self.root} has only {cache['num_quantizers']} (num_quantizers)"
                )
            if model_config.semantic_vocab_size:
                if self.semantic_info is None:
                    raise ValueError(f"the model is conditional but the token cache at {self.root} has no semantic tokens")
                if model_config.semantic_vocab_size != self.semantic_info["vocab_size"]:
                    raise ValueError(
                        f"the model has semantic_vocab_size {model_config.semantic_vocab_size}, the token "
                        f"cache's tokenizer has vocab_size {self.semantic_info['vocab_size']}"
                    )
                if model_config.semantic_rate_ratio != self.ratio:
                    raise ValueError(
                        f"the model has semantic_rate_ratio {model_config.semantic_rate_ratio}, the token "
                        f"cache has {self.ratio} codec frames per semantic token"
                    )
