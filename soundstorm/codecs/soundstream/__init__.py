"""Our SoundStream codec (Zeghidour et al., 2021): trainable here, loadable as `soundstream:PATH`.

    config.py         SoundStreamConfig (architecture + quantizer update rules), DiscriminatorConfig, presets
    seanet.py         the SEANet convolutional encoder and decoder
    quantizer.py      residual VQ: EMA codebooks, k-means init, dead-code restarts, quantizer dropout
    model.py          SoundStream: encoder + quantizer + decoder, save_pretrained / from_pretrained
    losses.py         multi-resolution STFT, multi-scale mel, adversarial and feature-matching losses
    discriminator.py  EnCodec's multi-scale complex-STFT discriminator
    training.py       SoundStreamLossConfig and the per-step losses the training loop calls
    codec.py          SoundStreamCodec, the Codec interface over a saved model
"""

from soundstorm.codecs.soundstream.codec import SoundStreamCodec, load_soundstream_codec
from soundstorm.codecs.soundstream.config import PRESETS, DiscriminatorConfig, SoundStreamConfig
from soundstorm.codecs.soundstream.discriminator import DiscriminatorOutput, MultiScaleSTFTDiscriminator
from soundstorm.codecs.soundstream.model import SoundStream, SoundStreamOutput
from soundstorm.codecs.soundstream.training import (
    GeneratorLosses,
    SoundStreamLossConfig,
    SoundStreamObjective,
    fit,
)

__all__ = [
    "PRESETS",
    "DiscriminatorConfig",
    "DiscriminatorOutput",
    "GeneratorLosses",
    "MultiScaleSTFTDiscriminator",
    "SoundStream",
    "SoundStreamCodec",
    "SoundStreamConfig",
    "SoundStreamLossConfig",
    "SoundStreamObjective",
    "SoundStreamOutput",
    "fit",
    "load_soundstream_codec",
]
