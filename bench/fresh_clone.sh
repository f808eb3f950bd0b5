#!/bin/bash
# The two README commands timed on fresh clones of this checkout's HEAD, one clone after another:
# each clone's setup (`make .venv/bin/gpo`) and `make test`, then `make demo` in the last clone,
# fresh and with its embeddings cached. Run on an otherwise idle machine.
#   bash bench/fresh_clone.sh [CLONES]    (default 3; logs stay in the printed folder)
set -u
clones=${1:-3}
repo=$(git rev-parse --show-toplevel)
shared=$(realpath "$repo/../shared")
work=$(mktemp -d /tmp/gpo-fresh-XXXX)
echo "commit $(git -C "$repo" rev-parse --short HEAD), logs in $work"

timed() {  # timed LABEL LOG COMMAND...: one line with the exit status and the wall seconds
  local label=$1 log=$2 start rc
  shift 2
  start=$(date +%s)
  "$@" > "$log" 2>&1
  rc=$?
  echo "$label: rc $rc, $(($(date +%s) - start)) s"
}

for i in $(seq "$clones"); do
  cd "$work" && rm -rf main && git clone -q "$repo" "$work/main" && ln -sfn "$shared" "$work/shared"
  cd "$work/main" || exit 1
  echo "clone $i, $(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
  timed "  setup" "$work/setup$i.log" make .venv/bin/gpo
  timed "  make test" "$work/test$i.log" make test
  echo "  pytest: $(tail -1 "$work/test$i.log")"
done
timed "make demo, fresh" "$work/demo.log" make demo
rm -rf runs/demo
timed "make demo, embeddings cached" "$work/demo-cached.log" make demo
