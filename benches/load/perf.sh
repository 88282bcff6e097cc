#!/usr/bin/env bash
# A native CPU profile (perf, cpu-clock sampling with DWARF call graphs) of a server under
# wrk load: where /protected spends its time on real hardware (SHA-NI and all).
#
#   benches/load/perf.sh [SERVER] [PATH]     (default lm-server /protected)
#
# Writes target/profiles/perf-<server>-<path>.data and prints the top of `perf report`
# (self time by symbol, then the library's functions with their children).
# Run it on a quiet machine: the server is pinned to core 1, wrk to core 0.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
server="${1:-lm-server}"
path="${2:-/protected}"
export CARGO_TARGET_DIR="$root/target/load"
cargo build --release --manifest-path "$here/Cargo.toml" >&2
bin="$CARGO_TARGET_DIR/release"
out="$root/target/profiles"
mkdir -p "$out"
name="perf-$server-${path#/}"

taskset -c 1 "$bin/$server" >"$out/$name.stdout" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$out/$name.stdout" 2>/dev/null && break
  sleep 0.1
done
addr="$(sed -n 's/^listening on //p' "$out/$name.stdout")"
cookie="$(curl -s -D - -o /dev/null -X POST -A login-manager-bench "http://$addr/bench/login" |
  tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(id=[^;]*\).*/\1/p')"
taskset -c 0 wrk -t1 -c64 -d12s -H "Cookie: $cookie" -H "Accept: application/json" \
  -H "User-Agent: login-manager-bench" "http://$addr$path" >"$out/$name.wrk" &
wrk_pid=$!
sleep 2
perf record -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$pid" -o "$out/$name.data" -- sleep 8 \
  2>"$out/$name.perf-record.log"
wait "$wrk_pid"
grep -E "Requests/sec" "$out/$name.wrk"
echo "== self time by symbol (top 40)"
perf report -i "$out/$name.data" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | head -40
echo "== login_manager / tower_sessions functions, with children"
perf report -i "$out/$name.data" --children --sort symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | grep -E 'login_manager|tower_sessions|sha2|serde_json|axum_login' | head -40
