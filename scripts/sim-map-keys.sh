#!/usr/bin/env bash
# Runs `peerlane sim` with std's HashMap keys fixed by a number of our own, to check that a
# run does not depend on a map's iteration order (docs/simulator.md, "What is seeded").
#
# std draws the keys of `RandomState` once per thread, in a 16-byte `getrandom` request. A
# small LD_PRELOAD library answers 16-byte requests from MAP_KEY (and passes every other
# request to the kernel), so each MAP_KEY gives its own fixed map orders: two runs with
# different MAP_KEYs differ the way two processes can. If the trace hashes differ, some
# decision follows a map's order; `--events` on both and `diff` shows where they part.
#
#   cargo build --release -p peerlane-node
#   MAP_KEY=1 scripts/sim-map-keys.sh docs/scenarios/slow-link.toml --seed 1
#   MAP_KEY=2 scripts/sim-map-keys.sh docs/scenarios/slow-link.toml --seed 1
#
# Environment: MAP_KEY (0), PEERLANE (target/release/peerlane), CC (cc). Linux only.
set -euo pipefail

peerlane=${PEERLANE:-target/release/peerlane}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

cat > "$build/map_keys.c" <<'EOF'
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static uint64_t state;
static int started;

/* splitmix64: a different, fixed pair of keys on every 16-byte request. */
static uint64_t next(void) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    if (len == 16) {
        if (!started) {
            const char *key = getenv("MAP_KEY");
            state = key ? strtoull(key, NULL, 10) : 0;
            started = 1;
        }
        uint64_t k0 = next(), k1 = next();
        memcpy(buf, &k0, 8);
        memcpy((char *)buf + 8, &k1, 8);
        return 16;
    }
    return syscall(SYS_getrandom, buf, len, flags);
}
EOF
"${CC:-cc}" -O2 -shared -fPIC -o "$build/map_keys.so" "$build/map_keys.c"
MAP_KEY=${MAP_KEY:-0} LD_PRELOAD="$build/map_keys.so" "$peerlane" sim "$@"
