"""soundstorm-pytorch (lucidrains), built at our dims for the side-by-side decoding benchmark.

It is installed with --no-deps (benchmarks/requirements-peers.txt) so that torch stays as it is;
its codec, text-to-semantic and trainer dependencies (audiolm-pytorch, spear-tts-pytorch,
accelerate) would pull torchaudio and another torch. The benchmark needs none of them, so the
names it imports from them are stood in by empty classes before it is imported.
"""

from __future__ import annotations

import sys
import types
import warnings

import torch
from torch import Tensor, nn

SEMANTIC_HZ = 25  # semantic tokens per second
CODEC_HZ = 50  # acoustic frames per second


def _stand_in(module_name: str, *names: str) -> None:
    if module_name in sys.modules:
        return
    module = types.ModuleType(module_name)
    for name in names:
        setattr(module, name, type(name, (), {}) if name[0].isupper() else (lambda *a, **k: None))
    sys.modules[module_name] = module


def import_peer() -> types.ModuleType:
    """Import soundstorm_pytorch.soundstorm; raise ImportError with the install command if absent."""
    _stand_in("audiolm_pytorch", "SoundStream", "HubertWithKmeans", "FairseqVQWav2Vec")
    _stand_in("audiolm_pytorch.data", "get_dataloader")
    _stand_in("audiolm_pytorch.optimizer", "get_optimizer")
    _stand_in("spear_tts_pytorch", "TextToSemantic")
    _stand_in("accelerate", "Accelerator", "DistributedType")
    try:
        from soundstorm_pytorch import soundstorm
    except ImportError as error:
        raise ImportError(
            "soundstorm-pytorch is not installed; run `make bench-deps` "
            "(pip install --no-deps -r benchmarks/requirements-peers.txt)"
        ) from error
    soundstorm.tqdm = lambda iterable, **kwargs: iterable  # no progress bar per level
    return soundstorm


def build_peer(
    *,
    codebook_size: int,
    num_quantizers: int,
    semantic_vocab_size: int,
    dim: int,
    depth: int,
    heads: int,
    conv_kernel_size: int,
    first_level_steps: int,
) -> nn.Module:
    """The peer at our dims. Its per-level loop runs `first_level_steps` passes on level 1 and one
    on each finer level (num_full_sampling_levels=1), the paper's schedule. Everything else is
    its default (hyper-connections with 4 residual streams included)."""
    peer = import_peer()
    net = peer.ConformerWrapper(
        codebook_size=codebook_size,
        num_quantizers=num_quantizers,
        conformer=dict(dim=dim, depth=depth, heads=heads, dim_head=dim // heads, conv_kernel_size=conv_kernel_size),
    )
    model = peer.SoundStorm(
        net,
        steps=first_level_steps,
        schedule="cosine",
        num_semantic_token_ids=semantic_vocab_size,
        wav2vec_target_sample_hz=SEMANTIC_HZ,
        wav2vec_downsample_factor=1,
        codec_target_sample_hz=CODEC_HZ,
        codec_downsample_factor=1,
    )
    return model.eval()


def peer_generate(model: nn.Module, semantic_tokens: Tensor) -> Tensor:
    """semantic_tokens [B, S] -> flat codes [B, T * Q] (its own layout)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its torch.backends.cuda.sdp_kernel()
        return model.generate(cond_semantic_token_ids=semantic_tokens, num_full_sampling_levels=1)
