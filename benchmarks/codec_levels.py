"""What each residual level of a SoundStream codec adds: latent error, code usage, audio.

    .venv/bin/python benchmarks/codec_levels.py --codec models/demo/codec --manifest data/synth/manifest.jsonl \
        --split test --max-items 100 --json docs/codec-levels.json

For clips of one split, taken in turn from each speaker (as `soundstorm codec eval` takes them),
and for every prefix of q levels:

- latent error: ||z - sum of the first q levels' codes||^2 / ||z||^2 over all frames, z the
  encoder's latents, and the factor by which level q shrank it. A residual quantizer of K codes
  in D dimensions can at best shrink a Gaussian residual by 2^(-2 log2(K) / D) a level (the
  rate-distortion bound): 0.81 for K = 1024, D = 64, so the bound is printed beside it;
- code usage of level q over the clips: codes used at least once, and the perplexity
  exp(entropy) of the code histogram (K if all codes were used evenly);
- mel distance of the audio decoded from the first q levels (L1 of log10 mels, the codec
  eval's), so the audio gain of each level can be set beside its bits, and of the audio
  decoded from the unquantized latents: what the encoder and decoder lose with no quantizer.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from soundstorm.codecs.soundstream import SoundStream
from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import read_manifest
from soundstorm.eval.codec_eval import spread_over_speakers
from soundstorm.eval.codec_metrics import mel_distance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", type=Path, required=True, help="a SoundStream folder (config.json + model.safetensors)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--speakers", help="comma-separated speakers to keep (default: every speaker of the split)")
    parser.add_argument("--max-items", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = SoundStream.from_pretrained(args.codec).float().eval()
    config = model.config
    speakers = set(args.speakers.split(",")) if args.speakers else None
    entries = [entry for entry in read_manifest(args.manifest)
               if entry.split == args.split and (speakers is None or entry.speaker in speakers)]
    if not entries:
        raise SystemExit(f"no entries of split {args.split!r} (speakers {args.speakers or 'any'}) in {args.manifest}")
    entries = spread_over_speakers(entries, args.max_items)
    root = args.manifest.parent

    Q, K = config.num_quantizers, config.codebook_size
    error = np.zeros(Q + 1)  # squared latent error after 0..Q levels, summed over frames
    histograms = np.zeros((Q, K))
    mel = np.zeros(Q)
    mel_unquantized = 0.0  # the decoder on the encoder's latents themselves: the autoencoder's own limit
    with torch.inference_mode():
        for entry in entries:
            audio, _ = load_audio(entry.audio_path(root), sample_rate=config.sample_rate, resample=True)
            wav = torch.from_numpy(audio).float()[None, None]  # [1, 1, N]
            latents = model.encoder(wav)  # [1, D, T]
            codes = model.quantizer.encode(latents)  # [1, T, Q]
            z = latents[0].T.double()  # [T, D]
            unquantized = model.decoder(latents)[0, 0, : wav.shape[-1]].numpy()
            mel_unquantized += mel_distance(audio, unquantized, config.sample_rate)
            residual = z.clone()
            error[0] += float(residual.pow(2).sum())
            for q in range(Q):
                residual -= model.quantizer.levels[q].decode(codes[0, :, q]).double()
                error[q + 1] += float(residual.pow(2).sum())
                histograms[q] += np.bincount(codes[0, :, q].numpy(), minlength=K)
                decoded = model.decode(codes[..., : q + 1])[0, 0, : wav.shape[-1]].numpy()
                mel[q] += mel_distance(audio, decoded, config.sample_rate)

    bound = 2.0 ** (-2.0 * math.log2(K) / config.latent_dim)
    rows = []
    for q in range(Q):
        probs = histograms[q] / histograms[q].sum()
        nonzero = probs[probs > 0]
        rows.append({
            "levels": q + 1,
            "latent_error": error[q + 1] / error[0],
            "shrink": error[q + 1] / error[q],
            "codes_used": int((histograms[q] > 0).sum()),
            "perplexity": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
            "mel_distance": mel[q] / len(entries),
        })
    frames = int(histograms[0].sum())
    print(f"codec {args.codec}: D={config.latent_dim}, K={K}, Q={Q}; split {args.split}, speakers "
          f"{args.speakers or 'all'}, {len(entries)} clips, {frames} frames")
    print(f"rate-distortion bound on a Gaussian residual's shrink per level: {bound:.3f}")
    print("| levels | latent error | shrink by this level | codes used | perplexity | mel distance |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['levels']} | {row['latent_error']:.3f} | {row['shrink']:.3f} | {row['codes_used']} | "
              f"{row['perplexity']:.0f} | {row['mel_distance']:.4f} |")
    print(f"| unquantized latents | 0 | | | | {mel_unquantized / len(entries):.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"codec": str(args.codec), "split": args.split, "speakers": args.speakers,
                                         "clips": len(entries),
                                         "frames": frames, "bound": bound, "levels": rows,
                                         "mel_distance_unquantized": mel_unquantized / len(entries)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
