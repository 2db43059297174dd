"""Probe: fine-tune a copy of SoundStorm on 60 s of a held-out voice's tokens (speaker enrolment
of the acoustic model), and measure its masked-token loss on that voice's utterances that
`soundstorm eval --max-utterances 40` scores (never trained on); saves runs/ss-SPEAKER-STEPS.

    .venv/bin/python benchmarks/soundstorm_enrol_probe.py flite-rms 60 25,50,100,200 1e-4

Written before soundstorm/model/adapt.py, which does the same (its defaults are this probe's)."""
import copy, sys, time
from pathlib import Path
import numpy as np, torch
from soundstorm import SoundStorm
from soundstorm.codecs import load_codec
from soundstorm.semantic import load_semantic_tokenizer
from soundstorm.semantic.rate import match_rate
from soundstorm.data.manifest import read_manifest
from soundstorm.data.audio import load_audio
torch.set_num_threads(2)
speaker, seconds, steps_list, lr = sys.argv[1], float(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")], float(sys.argv[4])
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
print(f"{speaker}: enrol {len(pool)} utterances {total:.1f} s; test {len(test)}", flush=True)
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
print("base: test loss", round(loss_on(base, test), 4), "enrol loss", round(loss_on(base, pool), 4), flush=True)
model = copy.deepcopy(base).train()
opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
rng = np.random.default_rng(0); g = torch.Generator().manual_seed(0)
start = time.perf_counter(); done = 0
for target in steps_list:
    model.train()
    while done < target:
        items = [pool[i] for i in rng.integers(0, len(pool), 8)]
        codes, sem, lengths = batch(items)
        out = model(codes, sem, lengths, generator=g, cond_drop_prob=0.1, train_levels=4)
        opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        done += 1
    print(f"step {done} ({time.perf_counter() - start:.0f} s): test loss {loss_on(model, test):.4f}, enrol loss {loss_on(model, pool):.4f}", flush=True)
    model.eval(); model.save_pretrained(f"runs/ss-{speaker}-{done}")
