"""A Vocos-style decoder (Siuzdak, 2023): latents -> ConvNeXt at the frame rate -> STFT -> iSTFT.

The SEANet decoder upsamples 320x through transposed convolutions and spends most of its
compute at the audio rate on a few channels. This one stays at the codec's frame rate: a stack
of ConvNeXt blocks (depthwise convolution, LayerNorm, a pointwise MLP) turns each frame's
latent into one STFT frame (log magnitude and phase of n_fft / 2 + 1 bins), and an inverse STFT
with hop = the codec's hop makes the waveform. Wide matrix products over 50 frames a second are
what a CPU does fastest, and the spectral losses meet the spectrum it predicts almost directly.

Lengths: T frames -> exactly T * hop samples ("same" padding: the overlap-added frames are
trimmed by (n_fft - hop) / 2 on each side), as the SEANet decoder gives, so the two are
interchangeable behind the same encoder and codebooks (SoundStreamConfig.decoder).

With SoundStreamConfig.semantic_vocab_size > 0 the decoder also reads semantic tokens, one per
semantic_rate_ratio frames: their embedding is added to the ConvNeXt stack's input. In text to
speech SoundStorm is unsure of the finer levels (their tokens are right 8-15% of the time) while
the semantic tokens it was given spell the phones; the codec's own tokens carry no such thing.
The embedding starts at zero, so a decoder given no semantic tokens, or not yet trained with
them, decodes as one without (the null token, index V, is trained to mean "none given").

A table of V free rows learns slowly: each token is a few of a batch's 200, and their gradients
disagree (after 14,500 steps the rows' norm was under 2% of the stream's). With
SoundStreamConfig.semantic_feature_dim each token is also described by a fixed vector, its
tokenizer's k-means centroid (for the bundled tokens, the phone posteriors it stands for,
`set_semantic_features`), read through one projection that every frame of every batch trains:
tokens that mean the same phones get the same push from the start, and only what sets them apart
is left to their own rows. The projection starts at zero too.

With SoundStreamConfig.reference_mels the decoder also reads a voice reference: the long-term
spectrum of a few seconds of the speaker (`reference_spectrum`: mean log-mel over the frames of
speech, its overall level removed), one vector per clip through one projection (zero at the
start) added to every frame. The codec's tokens, learned on ten voices, carry an unseen voice's
spectral envelope poorly (flite-rms: its resynthesis loses the spectrum above 2 kHz by 4-7 dB,
docs/codec.md), while a text-to-speech request always brings a recording of the voice, its
prompt. Trained on crops whose target is equalized but whose tokens are not (the soundstream
task's options.reference), the decoder learns to take the envelope from the reference. With
SoundStreamConfig.reference_in_blocks every ConvNeXt block also adds a projection of its own.

Notation: B batch, D latent width, C ConvNeXt width, T frames, F = n_fft / 2 + 1 bins, N samples,
S semantic tokens (S * semantic_rate_ratio >= T), V semantic vocabulary, E semantic feature width,
M reference mel bands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm.codecs.soundstream.config import SoundStreamConfig
from soundstorm.codecs.soundstream.losses import mel_filterbank

# The voice reference's spectrum: 64 ms windows (a long-term spectrum wants frequency resolution,
# not time), and frames more than REFERENCE_FLOOR_DB below the clip's loudest left out (pauses).
REFERENCE_N_FFT = 1024
REFERENCE_FLOOR_DB = 40.0


class ConvNeXtBlock(nn.Module):
    """x + scale * MLP(LayerNorm(DepthwiseConv(x))) over [B, C, T]."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        # Small residual branches at the start keep the deep stack close to identity (ConvNeXt).
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T] -> [B, C, T]."""
        y = self.depthwise(x).transpose(1, 2)  # [B, T, C]
        y = self.down(F.gelu(self.up(self.norm(y))))  # [B, T, C]
        return x + (self.scale * y).transpose(1, 2)


class InverseSTFT(nn.Module):
    """Complex spectra [B, F, T] -> waveform [B, T * hop], "same" padding.

    torch.istft with center=True would give (T - 1) * hop samples; here the overlap-add of all
    T frames is trimmed by (n_fft - hop) / 2 on both sides, so each frame owns hop samples,
    centred on it, and the output lines up with the encoder's frames.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        # Windows must overlap: a Hann window is 0 at its ends, and without a neighbour there the
        # overlap-add would divide by 0.
        if n_fft < 2 * hop_length or (n_fft - hop_length) % 2:
            raise ValueError(f"n_fft ({n_fft}) must be >= 2 * hop ({hop_length}) with n_fft - hop even")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, spectra: Tensor) -> Tensor:
        B, _, T = spectra.shape
        frames = torch.fft.irfft(spectra, self.n_fft, dim=1) * self.window[None, :, None]  # [B, n_fft, T]
        total = (T - 1) * self.hop_length + self.n_fft
        fold = dict(output_size=(1, total), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        wav = F.fold(frames, **fold)[:, 0, 0]  # [B, total]
        envelope = F.fold(self.window.square()[None, :, None].expand(1, -1, T), **fold)[0, 0, 0]  # [total]
        pad = (self.n_fft - self.hop_length) // 2
        # Every kept sample lies under at least one window away from its zero ends: no division by 0.
        return wav[:, pad : total - pad] / envelope[pad : total - pad]


class VocosDecoder(nn.Module):
    """Latents [B, D, T] -> waveform [B, 1, T * hop]."""

    def __init__(self, config: SoundStreamConfig) -> None:
        super().__init__()
        dim, depth = config.vocos_dim, config.vocos_depth
        self.embed = nn.Conv1d(config.latent_dim, dim, config.kernel_size, padding=config.kernel_size // 2)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, 3 * dim, config.kernel_size, layer_scale=1.0 / depth) for _ in range(depth)
        )
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.bins = config.vocos_n_fft // 2 + 1
        self.head = nn.Linear(dim, 2 * self.bins)  # log magnitude and phase of every bin
        self.istft = InverseSTFT(config.vocos_n_fft, config.hop_length)
        self.semantic_rate_ratio = config.semantic_rate_ratio
        # Index V: no semantic token given (a plain codec's use, and the training's dropout).
        self.semantic = nn.Embedding(config.semantic_vocab_size + 1, dim) if config.semantic_vocab_size else None
        self.semantic_projection: nn.Linear | None = None
        if config.semantic_feature_dim:
            # Saved with the weights: the decoder must read the tokens as it was trained to, whatever
            # tokenizer folder is at hand when it is loaded. All zero until set_semantic_features.
            self.register_buffer("semantic_features", torch.zeros(config.semantic_vocab_size + 1, config.semantic_feature_dim))
            self.semantic_projection = nn.Linear(config.semantic_feature_dim, dim, bias=False)
        self.reference_projection: nn.Linear | None = None
        if config.reference_mels:
            bank = mel_filterbank(REFERENCE_N_FFT, config.reference_mels, config.sample_rate, f_min=50.0)
            self.register_buffer("reference_bank", bank, persistent=False)  # [M, n_fft / 2 + 1]
            self.register_buffer("reference_window", torch.hann_window(REFERENCE_N_FFT), persistent=False)
            self.reference_hop = config.hop_length
            self.reference_projection = nn.Linear(config.reference_mels, dim, bias=False)
        # reference_in_blocks: one more projection per block, added to that block's input.
        self.reference_block_projections = nn.ModuleList(
            nn.Linear(config.reference_mels, dim, bias=False) for _ in range(depth)) if config.reference_in_blocks else None
        self.apply(_init_weights)
        if self.semantic is not None:
            nn.init.zeros_(self.semantic.weight)
        if self.semantic_projection is not None:
            nn.init.zeros_(self.semantic_projection.weight)
        if self.reference_projection is not None:
            nn.init.zeros_(self.reference_projection.weight)
        for projection in self.reference_block_projections or ():
            nn.init.zeros_(projection.weight)

    @torch.no_grad()
    def set_semantic_features(self, centroids: Tensor) -> None:
        """Describe each semantic token by its tokenizer's centroid, centroids float [V, E]:
        centred over the vocabulary and scaled to unit variance, so that the projection sees the
        same scale whatever the features are (phone posteriors, HuBERT activations). The null token
        (index V) gets zeros: no token, no push."""
        if self.semantic_projection is None:
            raise ValueError("this decoder has no semantic features (SoundStreamConfig.semantic_feature_dim = 0)")
        expected = (self.semantic_features.shape[0] - 1, self.semantic_features.shape[1])
        if tuple(centroids.shape) != expected:
            raise ValueError(f"semantic features must be [V, E] = {list(expected)} (the decoder's semantic_vocab_size "
                             f"and semantic_feature_dim), got {list(centroids.shape)}")
        self.semantic_features.zero_()
        self.semantic_features[:-1] = standardized_features(centroids).to(self.semantic_features)

    def semantic_embedding(self, semantic: Tensor) -> Tensor:
        """Semantic tokens int64 [B, T] (V: none) -> what is added to the ConvNeXt input, [B, T, C]."""
        assert self.semantic is not None
        embedding = self.semantic(semantic)
        if self.semantic_projection is not None:
            embedding = embedding + self.semantic_projection(self.semantic_features[semantic])
        return embedding

    @torch.no_grad()
    def reference_spectrum(self, wav: Tensor) -> Tensor:
        """A voice reference wav float [B, 1, N] -> float32 [B, M]: what `forward` reads of it."""
        if self.reference_projection is None:
            raise ValueError("this decoder reads no voice reference (SoundStreamConfig.reference_mels = 0)")
        return reference_spectrum(wav, self.reference_bank, self.reference_window, self.reference_hop)

    def forward(self, latents: Tensor, semantic: Tensor | None = None, reference: Tensor | None = None) -> Tensor:
        """latents [B, D, T] (and semantic tokens int64 [B, S], a decoder that reads them; and a
        voice reference's spectrum float [B, M], `reference_spectrum`, one that reads it: None
        reads as zeros, "none given") -> [B, 1, T * hop]."""
        x = self.norm_in(self.embed(latents).transpose(1, 2)).transpose(1, 2)  # [B, C, T]
        if self.reference_projection is not None:
            if reference is not None:
                M = self.reference_projection.in_features
                if reference.shape != (latents.shape[0], M):
                    raise ValueError(f"the voice reference must be float [B, M] = [{latents.shape[0]}, {M}] "
                                     f"(reference_spectrum), got {tuple(reference.shape)}")
                x = x + self.reference_projection(reference.to(x.dtype))[:, :, None]  # [B, C, 1]: every frame
        elif reference is not None:
            raise ValueError("this decoder reads no voice reference (SoundStreamConfig.reference_mels = 0)")
        if self.semantic is not None:
            B, _, T = latents.shape
            if semantic is None:
                semantic = torch.full((B, 1), self.semantic.num_embeddings - 1, dtype=torch.long, device=latents.device)
            frames = torch.arange(T, device=latents.device) // self.semantic_rate_ratio  # [T]
            frames = frames.clamp(max=semantic.shape[1] - 1)  # none given: one null token for every frame
            x = x + self.semantic_embedding(semantic[:, frames]).transpose(1, 2)  # [B, C, T]
        elif semantic is not None:
            raise ValueError("this decoder reads no semantic tokens (SoundStreamConfig.semantic_vocab_size = 0)")
        for index, block in enumerate(self.blocks):
            if self.reference_block_projections is not None and reference is not None:
                x = x + self.reference_block_projections[index](reference.to(x.dtype))[:, :, None]
            x = block(x)
        # The inverse FFT runs in float32 whatever the autocast: bf16 has no FFT and too few bits.
        out = self.head(self.norm_out(x.transpose(1, 2))).float().transpose(1, 2)  # [B, 2F, T]
        log_magnitude, phase = out.split(self.bins, dim=1)  # [B, F, T] each
        # exp keeps magnitudes positive; the cap (Vocos: 100) stops one bad frame from exploding.
        magnitude = log_magnitude.exp().clamp(max=100.0)
        spectra = torch.polar(magnitude, phase)  # [B, F, T] complex
        return self.istft(spectra)[:, None]  # [B, 1, T * hop]


def reference_spectrum(wav: Tensor, bank: Tensor, window: Tensor, hop_length: int) -> Tensor:
    """wav float [B, 1, N] -> its long-term spectrum float32 [B, M]: the mean natural-log mel
    power (bank [M, n_fft / 2 + 1]) over the frames within REFERENCE_FLOOR_DB of the loudest,
    minus its mean over the bands, so that how loud the reference is does not count, only
    the shape of its spectrum. All zeros for a silent clip."""
    n_fft = window.shape[0]
    signal = wav[:, 0].float()  # [B, N]
    if signal.shape[-1] < n_fft:  # a window's worth at least
        signal = F.pad(signal, (0, n_fft - signal.shape[-1]))
    with torch.autocast(device_type=signal.device.type, enabled=False):
        power = torch.stft(signal, n_fft, hop_length, window=window, center=True, return_complex=True).abs().square()
        mel = torch.einsum("mf,bft->bmt", bank, power)  # [B, M, T]
        energy_db = 10.0 * torch.log10(power.sum(dim=1) + 1e-10)  # [B, T]
        loud = energy_db > energy_db.amax(dim=1, keepdim=True) - REFERENCE_FLOOR_DB  # [B, T]
        loud &= power.sum(dim=1) > 1e-8  # digital silence is never speech
        weight = loud.float()[:, None]  # [B, 1, T]
        spectrum = (mel.clamp_min(1e-10).log() * weight).sum(dim=2) / weight.sum(dim=2).clamp_min(1.0)  # [B, M]
        spectrum = spectrum - spectrum.mean(dim=1, keepdim=True)
        return spectrum * loud.any(dim=1, keepdim=True)


def standardized_features(centroids: Tensor) -> Tensor:
    """A tokenizer's centroids float [V, E] as a decoder describes its tokens by them: centred over
    the vocabulary and scaled to unit variance, float32 [V, E]."""
    features = centroids.float() - centroids.float().mean(dim=0)
    return features / features.std().clamp_min(1e-8)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
