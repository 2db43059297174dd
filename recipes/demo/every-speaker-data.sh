#!/usr/bin/env bash
# The training data of recipes/demo/codec-scratch-voices.toml from nothing: every speaker this
# project has (12.2 h; docs/voices.md, docs/codec.md). The corpus's ten training voices
# (data/synth), their speed- and equalization-augmented copies (data/synth-voices), nine festival
# voices of other languages (data/synth-extra) and the 57 MBROLA voices (data/synth-mbrola-all),
# merged into data/synth-plus-extra-mball/manifest.jsonl. The same commands and seeds as
# recipes/demo/build.sh, so the folders are the ones it makes. 10 minutes on 2 cores (2026-12-07).
#
#   make install system-deps extra-voices mbrola-voices
#   recipes/demo/every-speaker-data.sh
#
# Each step is skipped once done (corpus synth resumes a folder it started).
set -euo pipefail
cd "$(dirname "$0")/../.."
SOUNDSTORM=${SOUNDSTORM:-.venv/bin/soundstorm}
DATA=${DATA:-data}

"$SOUNDSTORM" corpus synth "$DATA/synth" --hours 5 --quiet
MANIFEST="$DATA/synth/manifest.jsonl"
[ -f "$DATA/synth-voices/manifest.jsonl" ] || "$SOUNDSTORM" corpus augment "$MANIFEST" "$DATA/synth-voices" --quiet
[ -f "$DATA/synth-plus/manifest.jsonl" ] || "$SOUNDSTORM" corpus merge "$MANIFEST" "$DATA/synth-voices/manifest.jsonl" \
    --out "$DATA/synth-plus/manifest.jsonl"
EXTRA_VOICES=festival-upc_ca_ona_hts,festival-czech_dita,festival-czech_krb,festival-czech_machac,festival-hy_fi_mv_diphone
EXTRA_VOICES+=,festival-suo_fi_lj_diphone,festival-lp_diphone,festival-pc_diphone,festival-msu_ru_nsh_clunits
"$SOUNDSTORM" corpus synth "$DATA/synth-extra" --hours 2.25 --held-out '' --seed 1 --voices "$EXTRA_VOICES" --quiet
[ -f "$DATA/synth-plus-extra/manifest.jsonl" ] || "$SOUNDSTORM" corpus merge "$DATA/synth-plus/manifest.jsonl" \
    "$DATA/synth-extra/manifest.jsonl" --train-only --out "$DATA/synth-plus-extra/manifest.jsonl"
MBROLA_VOICES=$(printf 'espeak-mb-%s,' af1-en br1 br2 br3 br4 ca1 ca2 cr1 cz2 de1-en de2-en de3-en de4-en de5-en \
    de6-en de7 de8 ee1 en1 es1 es2 es3 es4 fr1-en fr2 fr3 fr4-en fr5 fr6 fr7 gr1 gr2-en hu1-en ic1 id1 ir1 it1 it2 it3 \
    it4 la1 lt1 lt2 mx1 mx2 nl2-en nl3 pl1-en pt1 ro1-en sw1-en sw2-en tr1 tr2 us1 us2 us3)
"$SOUNDSTORM" corpus synth "$DATA/synth-mbrola-all" --hours 2.25 --held-out '' --seed 2 --no-align \
    --voices "${MBROLA_VOICES%,}" --quiet
[ -f "$DATA/synth-plus-extra-mball/manifest.jsonl" ] || "$SOUNDSTORM" corpus merge "$DATA/synth-plus-extra/manifest.jsonl" \
    "$DATA/synth-mbrola-all/manifest.jsonl" --train-only --out "$DATA/synth-plus-extra-mball/manifest.jsonl"
echo "== $DATA/synth-plus-extra-mball/manifest.jsonl is ready"
