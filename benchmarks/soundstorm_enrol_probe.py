"""Probe: adapt a copy of SoundStorm to 60 s of a held-out voice's tokens (speaker enrolment of
the acoustic model, soundstorm/model/adapt.py) in several ways, and measure its masked-token loss
(first four levels) on that voice's utterances that `soundstorm eval --max-utterances 40` scores
(never trained on: what it learned of the voice) and on the other voices' evaluated utterances
(what it forgot of the rest). Each setting is SoundStormAdaptation's fields, comma-separated.

    .venv/bin/python benchmarks/soundstorm_enrol_probe.py flite-rms 60 steps=100,lr=1e-4 steps=100,lr=1e-3,rank=16

First written before soundstorm/model/adapt.py, whose defaults are its first findings."""
import copy, sys, time
from pathlib import Path
import numpy as np, torch
from soundstorm import SoundStorm
from soundstorm.model.adapt import SoundStormAdaptation, adapt_soundstorm
from soundstorm.codecs import load_codec
from soundstorm.semantic import load_semantic_tokenizer
from soundstorm.semantic.rate import match_rate
from soundstorm.data.manifest import read_manifest
from soundstorm.data.audio import load_audio
torch.set_num_threads(2)
speaker, seconds, settings = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
m = Path("data/synth/manifest.jsonl"); root = m.parent
entries = read_manifest(m)
# The evaluated 40 of `soundstorm eval --max-utterances 40` (its selection, replicated).
cands = [e for e in entries if e.split in ["test", "test-unseen-speaker"] and e.text and e.duration >= 4.0]
order = np.random.default_rng(0).permutation(len(cands))[:40]
evaluated = [cands[i] for i in sorted(order)]
skip = {e.id for e in evaluated}
codec = load_codec("soundstream:models/demo/codec"); tok = load_semantic_tokenizer("content:models/demo/semantic")
base = SoundStorm.from_pretrained("models/demo/soundstorm").float().eval()
def tokens(e):
    wav, _ = load_audio(e.audio_path(root), sample_rate=16000, resample=True, downmix=True)
    t = torch.from_numpy(wav)[None, None]
    with torch.inference_mode():
        codes = codec.encode(t)[0]
        s, n = tok.tokenize(t)
    sem = torch.from_numpy(match_rate(s[0, : int(n[0])].numpy(), tok.rate, codec.frame_rate, codes.shape[0])).long()
    return codes.long(), sem
pool, total = [], 0.0
for e in entries:
    if e.speaker == speaker and e.id not in skip and total < seconds:
        pool.append(tokens(e)); total += e.duration
test = [tokens(e) for e in evaluated if e.speaker == speaker]
others = [tokens(e) for e in evaluated if e.speaker != speaker and not e.speaker.startswith('espeak')]
print(f"{speaker}: enrol {len(pool)} utterances {total:.1f} s; test {len(test)}, other voices {len(others)}", flush=True)
def batch(items):
    T = max(c.shape[0] for c, _ in items); S = (T + 1) // 2
    codes = torch.zeros(len(items), T, items[0][0].shape[1], dtype=torch.long)
    sem = torch.zeros(len(items), S, dtype=torch.long)
    for i, (c, s) in enumerate(items):
        codes[i, : c.shape[0]] = c; sem[i, : s.shape[0]] = s
    return codes, sem, torch.tensor([c.shape[0] for c, _ in items])
def loss_on(model, items, draws=8):
    model.eval(); codes, sem, lengths = batch(items); losses = []
    with torch.no_grad():
        for d in range(draws):
            g = torch.Generator().manual_seed(100 + d)
            losses.append(float(model(codes, sem, lengths, generator=g, train_levels=4).loss))
    return np.mean(losses)
print(f"base: voice {loss_on(base, test):.4f}, other voices {loss_on(base, others):.4f}", flush=True)
for setting in settings:
    fields = {k: v for k, v in (item.split("=") for item in setting.split(","))}
    kinds = {"steps": int, "rank": int, "batch_size": int, "crop_frames": int}
    options = SoundStormAdaptation(train_levels=4, **{k: kinds.get(k, float)(v) for k, v in fields.items()})
    start = time.perf_counter()
    model = adapt_soundstorm(base, pool, options)
    print(f"{setting} ({time.perf_counter() - start:.0f} s): voice {loss_on(model, test):.4f}, "
          f"other voices {loss_on(model, others):.4f}", flush=True)
