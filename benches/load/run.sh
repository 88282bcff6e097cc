#!/usr/bin/env bash
# The benchmarks of login-manager in one command (docs/benchmarks.md):
#
#   benches/load/run.sh
#
# 1. criterion micro-benchmarks of the library (`cargo bench --features __private --bench micro`),
#    pinned to the server core;
# 2. the load benchmark: login-manager vs axum-login 0.18 vs bare tower-sessions (the floor),
#    servers pinned to core $BENCH_SERVER_CPU (1), wrk to core $BENCH_CLIENT_CPU (0), on
#    127.0.0.1 only; then the remember-me restore, the login storm, the argon2 memory
#    experiment, and sessions plus remember-me tokens per backend (memory, SQLite, and the
#    PostgreSQL and Redis on 127.0.0.1; needs psql and redis-cli).
#
# Writes target/bench-results.json, target/bench-results.md, docs/benchmarks.svg and
# docs/benchmarks-backends.svg.
# Waits for a quiet machine first (1-minute load average < $BENCH_MAX_LOAD, default 0.5).
# Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_CONNECTIONS (64), BENCH_SKIP_MICRO=1,
# BENCH_REMEMBER_TOKENS (600000), BENCH_STORM_LOGINS (200), BENCH_STORM_SECONDS (10),
# BENCH_PHASES (throughput,remember,storm,argon2,backends; `scale` too when named), BENCH_BACKENDS
# (memory,sqlite,postgres,redis; also postgres-no-ping), BENCH_PG_ADMIN_URL, BENCH_PG_DATABASE,
# BENCH_REDIS_URL (docs/benchmarks.md), BENCH_CHART_DIR (docs: where the SVG charts go).
# The backends phase ends with a counting run per backend (`lm-server --count-ops`, never in a
# timed run): the store operations, round trips to the database and the database's own counts
# per logged-in request and per restore, BENCH_OPS_REQUESTS (200) of each, one at a time.
# The scale phase (#16 target 4; BENCH_PHASES=scale): logged-in requests and restores in
# Postgres and Redis (BENCH_SCALE_BACKENDS, default postgres,redis) with stores pre-filled by
# `lm-server --fill N` with N more live sessions, remember-me tokens of other users and
# throttle keys, N from BENCH_SCALE_SIZES (1000,1000000), sizes interleaved in each round;
# reports each size against the smallest. Alone:
#   BENCH_SKIP_MICRO=1 BENCH_PHASES=scale benches/load/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
for tool in wrk taskset cargo; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (wrk: apt-get install -y wrk)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "run.sh: needs 2 cores (server and load generator pinned apart)" >&2
  exit 1
fi

echo "== building (release)" >&2
(cd "$root" && cargo bench --features __private --bench micro --no-run)
CARGO_TARGET_DIR="$root/target/load" cargo build --release --locked --manifest-path "$here/Cargo.toml"
driver="$root/target/load/release/loadbench"

export BENCH_ROOT="$root"
export BENCH_RUN_START="$(date +%s)"
server_cpu="${BENCH_SERVER_CPU:-1}"

if [ -z "${BENCH_SKIP_MICRO:-}" ]; then
  # Wait for a quiet machine before the micro-benchmarks too (the driver checks again).
  BENCH_ROUNDS=0 "$driver" --wait-only
  echo "== criterion micro-benchmarks (pinned to core $server_cpu)" >&2
  (cd "$root" && taskset -c "$server_cpu" cargo bench --features __private --bench micro)
fi

echo "== load benchmark" >&2
"$driver"
