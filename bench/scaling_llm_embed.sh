#!/usr/bin/env bash
# Fill the embedding cache for the real-LLM scaling study: every base model of the ladder on
# every survey of the study, smallest surveys and models first, so that whatever has finished
# when the run is stopped is usable. Each `gpo embed` resumes from the cache's finished shards;
# rerunning the script recomputes nothing. Hours on a 2-core CPU (BENCHMARKS.md).
#
#   THREADS=1 bash bench/scaling_llm_embed.sh          # one core, leaving the other for work
#   bash bench/scaling_llm_embed.sh configs/demo.yaml   # one survey only
set -uo pipefail
cd "$(dirname "$0")/.."
GPO=${GPO:-.venv/bin/gpo}
export OMP_NUM_THREADS=${THREADS:-2}
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(configs/individual.yaml configs/demo.yaml configs/globalopinionqa.yaml)
# name:layers (0 = every layer); Qwen-1.5B's first 4, 7 and 14 layers are the ladder inside one
# model, before the whole of it (the slowest: about 0.5 s per OpinionQA point on one core)
MODELS=(smollm2-135m:0 gemma3-270m:0 embeddinggemma-300m:0 qwen2.5-coder-0.5b:0 qwen2.5-coder-1.5b:4
        qwen2.5-coder-1.5b:7 qwen2.5-coder-1.5b:14 qwen2.5-coder-1.5b:0 mpnet:0)
for config in "${CONFIGS[@]}"; do
  for entry in "${MODELS[@]}"; do
    model=${entry%%:*} layers=${entry##*:}
    echo "== $(date -u +%FT%TZ) $config $model layers=$layers"
    "$GPO" embed "$config" --model "$model" --set embed.workers=0 "embed.layers=$layers" \
      || echo "!! $config $model layers=$layers failed (exit $?)"
  done
done
echo "== $(date -u +%FT%TZ) done"
