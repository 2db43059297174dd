"""HuBERT (or wav2vec 2.0 / WavLM) features through transformers: the standard semantic path.

    soundstorm semantic kmeans --features hubert:facebook/hubert-base-ls960?layer=6 \
        --manifest data/synth/manifest.jsonl --clusters 500 --out models/hubert-km500

loads the model from a local folder or a hub id (nothing is downloaded here: use a folder),
takes the hidden states of one transformer layer (HuBERT's 6th for base models, as in
AudioLM's and SPEAR-TTS's ablations) at 50 Hz, and fits k-means on them. The tokenizer folder
keeps a copy of the model in `encoder/`, so it is self-contained.

Utterances are encoded one at a time at their own length: HuBERT-base's group-normalised
convolutions mix padding into valid frames, so a batch with padding would change the tokens.

Notation: N samples, S frames at 50 Hz, F hidden width.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from soundstorm.semantic.features import frame_mask

ENCODER_FOLDER = "encoder"


class HubertFeatures:
    kind = "hubert"

    def __init__(self, model: Any, layer: int, normalize: bool, source: str) -> None:
        config = model.config
        if not 0 <= layer <= config.num_hidden_layers:
            raise ValueError(f"layer must be in [0, {config.num_hidden_layers}] for {source}, got {layer}")
        self.model = model.eval()
        self.layer = layer
        self.normalize = normalize
        self.source = source
        self.hop_length = math.prod(config.conv_stride)  # 320 for every HuBERT / wav2vec 2.0 / WavLM
        self.sample_rate = 16000  # what every such model is trained on
        self.rate = self.sample_rate / self.hop_length
        self.feature_dim = config.hidden_size

    @classmethod
    def from_pretrained(cls, path_or_id: str, layer: int = 6) -> HubertFeatures:
        """A local transformers folder or a hub id (resolved by transformers, offline here)."""
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(path_or_id)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot load a HuBERT-style model from {path_or_id!r}: {error}") from error
        if not hasattr(model.config, "conv_stride"):
            raise ValueError(f"{path_or_id!r} is a {type(model).__name__}, not a HuBERT / wav2vec 2.0 / WavLM model")
        normalize = False
        preprocessor = Path(path_or_id) / "preprocessor_config.json"
        if preprocessor.is_file():
            normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False))
        return cls(model, layer, normalize, path_or_id)

    @classmethod
    def from_tokenizer_folder(cls, folder: Path, document: dict[str, Any]) -> HubertFeatures:
        settings = document["hubert"]
        features = cls.from_pretrained(str(folder / ENCODER_FOLDER), settings["layer"])
        features.normalize = settings["normalize"]
        features.source = settings["source"]
        return features

    @torch.inference_mode()
    def features(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        B, _, N = wav.shape
        S = math.ceil(N / self.hop_length)
        out = wav.new_zeros(B, S, self.feature_dim)
        for b in range(B):
            x = wav[b : b + 1, 0, : int(lengths[b])]  # [1, n]
            if self.normalize:
                x = (x - x.mean()) / (x.std(unbiased=False) + 1e-7)
            n_frames = math.ceil(x.shape[1] / self.hop_length)
            # The convolutions need at least one receptive field (400 samples); pad short inputs.
            x = F.pad(x, (0, max(0, 400 - x.shape[1])))
            hidden = self.model(x, output_hidden_states=True).hidden_states[self.layer][0]  # [s, F]
            if hidden.shape[0] < n_frames:  # the last partial frame: repeat the last state
                hidden = torch.cat([hidden, hidden[-1:].expand(n_frames - hidden.shape[0], -1)])
            out[b, :n_frames] = hidden[:n_frames]
        return out, frame_mask(lengths, self.hop_length, S)

    def save(self, folder: Path) -> dict[str, Any]:
        self.model.save_pretrained(folder / ENCODER_FOLDER)
        return {"hubert": {"layer": self.layer, "normalize": self.normalize, "source": self.source}}


def parse_hubert_spec(argument: str) -> HubertFeatures:
    """`PATH_OR_ID` or `PATH_OR_ID?layer=6`."""
    path, _, query = argument.partition("?")
    layer = 6
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "layer" or not value.isdigit():
            raise ValueError(f"hubert options are ?layer=L, got {query!r}")
        layer = int(value)
    return HubertFeatures.from_pretrained(path, layer)
