#!/usr/bin/env bash
# Resident memory of `peerlane node` processes over a long run, with every application on:
# three validators (mempool with the load generator, consensus, state sync) and a full node
# (state sync only) on the validator network over loopback, each a process of its own.
# Samples every INTERVAL seconds each process's VmRSS and the bytes its state-sync store
# retains in memory (`state_sync_retained_bytes`, bounded by `state_sync::Retention`), then
# prints each node's committed height, its mempool and store figures (memory and the on-disk
# archive under its data dir), and the growth of RSS after WARMUP seconds.
#
#   cargo build --release -p peerlane-node
#   scripts/node-rss.sh [target/release/peerlane]
#
# Environment: DURATION (600 s), INTERVAL (30 s), WARMUP (120 s), TPS (2000: transactions/s
# each validator's load generator submits), LOAD_ON (all: every validator runs a load
# generator; one: only v1), BASE_PORT (16180: validators listen on BASE_PORT+1..3, the full
# node on BASE_PORT+4, admin APIs on BASE_PORT+101..104), WORKDIR (a fresh temporary
# directory; keys, configs, each node's log and data dir stay there).
set -euo pipefail

BIN=${1:-target/release/peerlane}
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-30}
WARMUP=${WARMUP:-120}
TPS=${TPS:-2000}
LOAD_ON=${LOAD_ON:-all}
BASE_PORT=${BASE_PORT:-16180}
WORKDIR=${WORKDIR:-$(mktemp -d -t peerlane-rss.XXXXXX)}
BIN=$(realpath "$BIN")
cd "$WORKDIR"

names=(v1 v2 v3 f1)
for i in 1 2 3 4; do
  name=${names[$((i - 1))]}
  "$BIN" keygen --out "$name.key" >/dev/null
  "$BIN" key show --key-file "$name.key" --address "/ip4/127.0.0.1/tcp/$((BASE_PORT + i))" >"$name.show"
done

# A validator's seeds: the other two validators, and the full node as a `validator_full_node`
# (trusted on the mutually authenticated network, never dialed, not in the consensus set).
# The full node's seeds: the three validators.
seeds_of() {
  local me=$1 other
  for other in v1 v2 v3; do
    [ "$other" = "$me" ] || { sed -n '/^\[seeds/,$p' "$other.show"; echo; }
  done
  if [ "$me" != f1 ]; then
    sed -n '/^\[seeds/,$p' f1.show | sed 's/^role = .*/role = "validator_full_node"/'
    echo
  fi
}

for i in 1 2 3 4; do
  name=${names[$((i - 1))]}
  {
    printf 'network_id = "validator"\nlisten_address = "/ip4/127.0.0.1/tcp/%s"\n' $((BASE_PORT + i))
    printf 'chain_id = 4\nidentity = { key_file = "%s.key" }\n\n' "$name"
    seeds_of "$name"
    if [ "$name" = f1 ]; then
      printf '[apps]\nstate_sync = true\n\n'
    else
      load=$TPS
      [ "$LOAD_ON" = all ] || [ "$name" = v1 ] || load=0
      printf '[apps]\nmempool = true\nconsensus = true\nstate_sync = true\nmempool_load_tps = %s\n\n' "$load"
    fi
    printf '[node]\ndata_dir = "%s.data"\n\n' "$name"
    printf '[admin]\naddress = "127.0.0.1:%s"\n' $((BASE_PORT + 100 + i))
  } >"$name.toml"
done

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
for name in "${names[@]}"; do
  "$BIN" node --config "$name.toml" >"$name.out" 2>"$name.log" &
  pids+=($!)
done

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo dead; }
admin() { curl -s --max-time 5 "http://127.0.0.1:$((BASE_PORT + 100 + $1))$2" || true; }
metric() { admin "$1" /metrics | awk -v m="$2" '$1 == m { printf "%d", $2 }'; }

echo "# workdir $WORKDIR, $TPS txn/s on $LOAD_ON, every $INTERVAL s: RSS in MB / store in MiB"
printf '%6s' s
printf ' %9s' "${names[@]}"
echo
declare -A at_warmup
for ((t = INTERVAL; t <= DURATION; t += INTERVAL)); do
  sleep "$INTERVAL"
  printf '%6s' "$t"
  for i in "${!names[@]}"; do
    mb=$(rss_mb "${pids[$i]}")
    store=$(metric $((i + 1)) state_sync_retained_bytes)
    printf ' %9s' "$mb/$(( ${store:-0} / 1048576 ))"
    [ "$t" -ne "$WARMUP" ] || at_warmup[$i]=$mb
    last[$i]=$mb
  done
  echo
done

echo "# after $DURATION s"
for i in 1 2 3 4; do
  name=${names[$((i - 1))]}
  status=$(admin "$i" /status)
  height=$(printf '%s' "$status" | sed -n 's/.*"height":\([0-9]*\).*/\1/p')
  growth=n/a
  if [ -n "${at_warmup[$((i - 1))]:-}" ] && [ "${last[$((i - 1))]}" != dead ]; then
    growth=$(awk -v a="${at_warmup[$((i - 1))]}" -v b="${last[$((i - 1))]}" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }')
  fi
  printf '%s: height %s, commits %s, mempool pending %s rejected_full %s, store blocks %s (%s bytes), archive blocks %s (%s bytes, lowest height %s), RSS growth after %s s %s\n' \
    "$name" "${height:-?}" "$(metric "$i" consensus_commits_total)" \
    "$(metric "$i" mempool_pending)" "$(metric "$i" mempool_rejected_full_total)" \
    "$(metric "$i" state_sync_retained_blocks)" "$(metric "$i" state_sync_retained_bytes)" \
    "$(metric "$i" state_sync_archived_blocks)" "$(metric "$i" state_sync_archived_bytes)" \
    "$(metric "$i" state_sync_lowest_height)" \
    "$WARMUP" "$growth"
done
