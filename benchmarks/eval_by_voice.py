"""`soundstorm eval` runs A and B side by side by voice group: WER, CER and similarity of each
system, and the paired similarity difference (B - A, mean +- standard error) over the utterances
both scored.

    .venv/bin/python benchmarks/eval_by_voice.py docs/eval-demo/2026-12-05-plain/eval.json docs/eval-demo/2026-12-05-enrol60/eval.json
"""
import json, sys
import numpy as np
from soundstorm.eval.asr import error_rates
A = json.load(open(sys.argv[1])); B = json.load(open(sys.argv[2]))
ua = {u["id"]: u for u in A["utterances"]}; ub = {u["id"]: u for u in B["utterances"]}
ids = [i for i in ua if i in ub]
def group(u):
    if u["speaker"] == "flite-rms": return "flite-rms (held out)"
    if u["speaker"] == "espeak-en+f4": return "espeak-en+f4 (held out)"
    if u["speaker"].startswith(("flite", "festival")): return "flite and festival training voices"
    return "espeak training voices"
print("| voices | n | system | WER A / B | CER A / B | similarity A / B | similarity B - A |")
print("|---|---:|---|---|---|---|---|")
for g in ["flite-rms (held out)", "espeak-en+f4 (held out)", "flite and festival training voices", "espeak training voices"]:
    members = [i for i in ids if group(ua[i]) == g]
    if not members: continue
    for system in ["original", "codec resynthesis", "SoundStorm"]:
        cells = []
        for run in (ua, ub):
            r = error_rates([run[i]["text"] for i in members], [run[i]["hypotheses"][system] for i in members])
            cells.append(r)
        sa = np.array([ua[i]["similarity"].get(system, np.nan) for i in members], float)
        sb = np.array([ub[i]["similarity"].get(system, np.nan) for i in members], float)
        ok = ~np.isnan(sa) & ~np.isnan(sb); d = sb[ok] - sa[ok]
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        print(f"| {g} | {len(members)} | {system} | {cells[0].wer:.2f} / {cells[1].wer:.2f} | {cells[0].cer:.2f} / {cells[1].cer:.2f} | "
              f"{np.nanmean(sa):.3f} / {np.nanmean(sb):.3f} | {d.mean():+.3f} +- {se:.3f} |")
