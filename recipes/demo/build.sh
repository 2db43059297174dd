#!/usr/bin/env bash
# Builds the bundled models (models/demo) from nothing, offline, on this machine:
#   corpus (Debian voices) -> SoundStream codec (+ a Vocos-style decoder, + random equalization)
#   -> content encoder + k-means (semantic tokens) -> token cache -> SoundStorm (then on new voices
#   made from the corpus's own) and the text-to-semantic model -> models/demo (fp16)
#
#   recipes/demo/build.sh                 # run every step; each resumes where it stopped
#   MINUTES=50 recipes/demo/build.sh      # stop each training step after 50 min; run again to go on
#   CODEC=models/demo/codec SEMANTIC=models/demo/semantic recipes/demo/build.sh
#                                         # keep the bundled codec and tokenizer; train the rest
#
# Every step is resumable and skipped once done, so the script can be run again after an
# interruption, or across sessions with data/ and runs/ kept. A training step stopped early by
# MINUTES ends the script (exit 0) with a note; the next run continues it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SOUNDSTORM=${SOUNDSTORM:-.venv/bin/soundstorm}
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-0}
LIMIT=()
[ -n "${MINUTES:-}" ] && LIMIT=(--max-minutes "$MINUTES")

finished() {  # has the training run in $1 reached its max_steps?
    [ -f "$1/summary.json" ] && python3 -c "import json,sys; sys.exit(json.load(open('$1/summary.json'))['stopped_early'])"
}

train() {  # train RUN_DIR RECIPE [--set ...]
    local out=$1 recipe=$2
    shift 2
    if finished "$out"; then echo "== $out: done"; return; fi
    echo "== training $out ($recipe)"
    "$SOUNDSTORM" train "$recipe" --out "$out" --threads "$THREADS" --quiet "${LIMIT[@]}" "$@"
    if ! finished "$out"; then
        echo "== $out stopped early; run recipes/demo/build.sh again to continue"
        exit 0
    fi
}

# Every data set the steps below train on, first: the corpus (data/synth), its augmented copies,
# the festival voices of other languages and the MBROLA voices (10 minutes; skipped once made).
SOUNDSTORM="$SOUNDSTORM" DATA="$DATA" recipes/demo/every-speaker-data.sh
MANIFEST="$DATA/synth/manifest.jsonl"

if [ -z "${CODEC:-}" ]; then
    train "$RUNS/codec" recipes/soundstream-small.toml --set "data.cache=\"$MANIFEST\""
    # A Vocos-style decoder behind its encoder and codebooks (same tokens, better and faster
    # audio), then the whole codec on randomly equalized crops, for the voices it never heard
    # (docs/codec.md; the bundled one ran these 5000 steps as two rounds of 2500).
    train "$RUNS/codec-vocos" recipes/demo/codec-vocos.toml --set "data.cache=\"$MANIFEST\"" \
        --set "options.encoder_from=\"$RUNS/codec/model\""
    train "$RUNS/codec-eq" recipes/demo/codec-eq.toml --set "data.cache=\"$MANIFEST\"" \
        --set optimizer.max_steps=5000 --init-from "$RUNS/codec-vocos/model"
    CODEC="$RUNS/codec-eq/model"
fi
if [ -z "${SEMANTIC:-}" ]; then
    train "$RUNS/semantic" recipes/semantic-small.toml --set "data.cache=\"$MANIFEST\""
    [ -d "$RUNS/semantic-km512" ] || "$SOUNDSTORM" semantic kmeans --features "content:$RUNS/semantic/model?output=posteriors" \
        --manifest "$MANIFEST" --clusters 512 --out "$RUNS/semantic-km512" --quiet
    SEMANTIC="$RUNS/semantic-km512"
fi

# One token cache per codec encoder: a retrained codec gets a new cache instead of a refusal,
# and a decoder-only fine-tune (recipes/demo/codec-gan.toml), which makes the same tokens, keeps it.
DIGEST=$("$PYTHON" -c "import sys; from soundstorm.codecs import load_codec
print(load_codec('soundstream:' + sys.argv[1]).describe()['encoder_weights'][:12])" "$CODEC")
TOKENS="$DATA/synth-tokens-$DIGEST"
"$SOUNDSTORM" corpus tokenize "$MANIFEST" "$TOKENS" --codec "soundstream:$CODEC" --semantic "content:$SEMANTIC" --quiet
train "$RUNS/demo-soundstorm" recipes/demo/soundstorm.toml --set "data.cache=\"$TOKENS\""
# Then SoundStorm on the corpus and a copy of its training utterances, each at its own random speed
# and equalization (`corpus augment`: thousands of voices it has not heard), so that it carries a
# prompt's voice rather than recognising one of ten (docs/voices.md); and nine festival voices of
# other languages reading English (`make extra-voices` installs them), added for training only: no
# sentence the corpus holds out, no change to its validation set. Both made by every-speaker-data.sh.
PLUS_TOKENS="$DATA/synth-plus-extra-tokens-$DIGEST"
"$SOUNDSTORM" corpus tokenize "$DATA/synth-plus-extra/manifest.jsonl" "$PLUS_TOKENS" --codec "soundstream:$CODEC" \
    --semantic "content:$SEMANTIC" --quiet
# What the bundle speaks with: 2000 steps on all three.
train "$RUNS/demo-soundstorm-voices" recipes/demo/soundstorm.toml --set "data.cache=\"$PLUS_TOKENS\"" \
    --init-from "$RUNS/demo-soundstorm/model" --set optimizer.lr=3e-4 --set optimizer.min_lr_ratio=0.05 \
    --set optimizer.max_steps=2000 --set optimizer.warmup_steps=100 --set options.train_levels=4
train "$RUNS/t2s" recipes/t2s-small.toml --set "data.cache=\"$TOKENS\""
# The decoder makes no token: a Vocos-style one trained behind the codec's encoder and codebooks
# decodes the same tokens better and faster (docs/codec.md). Skipped for a codec that has one
# (every codec trained above has).
KIND=$("$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))['config'].get('decoder', 'seanet'))" "$CODEC/config.json")
if [ "$KIND" != "vocos" ]; then
    train "$RUNS/codec-vocos" recipes/demo/codec-vocos.toml --set "data.cache=\"$MANIFEST\"" \
        --set "options.encoder_from=\"$CODEC\""
    CODEC="$RUNS/codec-vocos/model"
fi

# The decoder of SoundStorm's output (models/demo/decoder): the codec's decoder continued on SoundStorm's
# soft finer levels and the semantic tokens (docs/intelligibility.md), in stages, each from the one
# before with a fresh warm-up and cosine and its own seed, as the bundled one was trained.
SEM_INIT=()
for stage in "codec-sem 5 4000" "codec-sem2 6 2500" "codec-sem3 7 4000"; do
    read -r SEM_RUN SEM_SEED SEM_STEPS <<< "$stage"
    train "$RUNS/$SEM_RUN" recipes/demo/codec-semantic.toml --set "data.cache=\"$MANIFEST\"" \
        --set "options.encoder_from=\"$CODEC\"" --set "options.decoder_from=\"$CODEC\"" \
        --set "options.soundstorm_inputs.soundstorm=\"$RUNS/demo-soundstorm/model\"" \
        --set "options.soundstorm_inputs.semantic=\"$SEMANTIC\"" \
        --set "seed=$SEM_SEED" --set "optimizer.max_steps=$SEM_STEPS" "${SEM_INIT[@]}"
    SEM_INIT=(--init-from "$RUNS/$SEM_RUN/model")
done
# Then each semantic token read through its tokenizer's centroid too (model.semantic_feature_dim: a
# projection from zero, so it starts as the decoder above; docs/intelligibility.md), in two stages.
FEATURES_FROM=$SEM_RUN
SEM_INIT=()
for stage in "codec-semf 9" "codec-semf2 10"; do
    read -r SEM_RUN SEM_SEED <<< "$stage"
    train "$RUNS/$SEM_RUN" recipes/demo/codec-semantic-features.toml --set "data.cache=\"$MANIFEST\"" \
        --set "options.encoder_from=\"$CODEC\"" --set "options.decoder_from=\"$RUNS/$FEATURES_FROM/model\"" \
        --set "options.soundstorm_inputs.soundstorm=\"$RUNS/demo-soundstorm/model\"" \
        --set "options.soundstorm_inputs.semantic=\"$SEMANTIC\"" --set "seed=$SEM_SEED" "${SEM_INIT[@]}"
    SEM_INIT=(--init-from "$RUNS/$SEM_RUN/model")
done
# Then a voice reference too (model.reference_mels: the prompt's long-term spectrum through a projection
# from zero; equalized targets whose codes are not; docs/intelligibility.md), one stage, bundled at its
# best validation loss.
train "$RUNS/codec-ref" recipes/demo/codec-reference.toml --set "data.cache=\"$MANIFEST\"" \
    --set "options.encoder_from=\"$CODEC\"" --set "options.decoder_from=\"$RUNS/$SEM_RUN/model\"" \
    --set "options.soundstorm_inputs.soundstorm=\"$RUNS/demo-soundstorm/model\"" \
    --set "options.soundstorm_inputs.semantic=\"$SEMANTIC\""
# Then 1500 steps with 57 MBROLA voices in its crops too (`make mbrola-voices`; each a real speaker's
# diphones, for training only): with many voices a decoder can no longer tell the voice from the
# tokens and learns to take it from the reference (held-out similarity +0.031 +- 0.003, docs/voices.md).
# data/synth-mbrola-all: made by every-speaker-data.sh.
[ -f "$DATA/synth-mball/manifest.jsonl" ] || "$SOUNDSTORM" corpus merge "$MANIFEST" \
    "$DATA/synth-mbrola-all/manifest.jsonl" --train-only --out "$DATA/synth-mball/manifest.jsonl"
train "$RUNS/codec-ref-voices" recipes/demo/codec-reference.toml --set "data.cache=\"$DATA/synth-mball/manifest.jsonl\"" \
    --set "options.encoder_from=\"$CODEC\"" --set "options.decoder_from=\"$RUNS/codec-ref/best\"" \
    --set "options.soundstorm_inputs.soundstorm=\"$RUNS/demo-soundstorm/model\"" \
    --set "options.soundstorm_inputs.semantic=\"$SEMANTIC\"" --set seed=14 --set optimizer.max_steps=1500 \
    --set optimizer.warmup_steps=100 --set schedule.valid_every=500
"$SOUNDSTORM" bundle --codec "$CODEC" --semantic "$SEMANTIC" \
    --soundstorm "$RUNS/demo-soundstorm-voices/best" --t2s "$RUNS/t2s/model" --voices "$MANIFEST" \
    --decoder "$RUNS/codec-ref-voices/best" --out models/demo
echo "== models/demo is ready: make demo"
