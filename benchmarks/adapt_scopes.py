"""Probe (2026-12-05): which part of the Vocos-style decoder to adapt to a 3 s prompt.
Run: .venv/bin/python benchmarks/adapt_scopes.py (one thread; about 4 minutes)."""
import sys, time, torch, numpy as np
from pathlib import Path
from soundstorm.codecs import load_codec
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
from soundstorm.data.manifest import read_manifest
from soundstorm.data.audio import load_audio
from soundstorm.eval.codec_metrics import mel_distance, pesq_wb
torch.set_num_threads(1)
codec = load_codec("soundstream:models/demo/codec")
m = Path("data/synth/manifest.jsonl"); entries = read_manifest(m)
def clips(spk, split, n):
    es = [e for e in entries if e.speaker == spk and e.split == split]
    return es[0], es[1:1+n]
variants = [("all", 3e-4, 20), ("head", 1e-3, 50), ("head", 3e-3, 50), ("magnitude", 1e-3, 50), ("magnitude", 3e-3, 50), ("gain", 1e-2, 50), ("gain", 3e-2, 50)]
for spk, split in [("flite-rms", "test-unseen-speaker"), ("flite-slt", "test"), ("festival-kal_diphone", "test")]:
    p, ev = clips(spk, split, 5)
    wav, _ = load_audio(p.audio_path(m.parent), sample_rate=16000)
    prompt = torch.from_numpy(wav[:48000])[None, None]
    data = [load_audio(e.audio_path(m.parent), sample_rate=16000)[0] for e in ev]
    with torch.inference_mode():
        codes = [codec.encode(torch.from_numpy(w)[None, None]) for w in data]
    def score(c):
        r = []
        with torch.inference_mode():
            for w, k in zip(data, codes):
                out = c.decode(k)[0, 0].numpy()[: len(w)]
                r.append((pesq_wb(w, out, 16000), mel_distance(w, out, 16000)))
        return np.mean(r, axis=0)
    print(spk, "none", score(codec), flush=True)
    for scope, lr, steps in variants:
        t = time.perf_counter()
        a = codec.adapted_to(prompt, DecoderAdaptation(steps=steps, lr=lr, scope=scope))
        dt = time.perf_counter() - t
        print(spk, scope, lr, steps, f"{dt:.1f}s", score(a), flush=True)
