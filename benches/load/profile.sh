#!/usr/bin/env bash
# Instruction-count profiles (valgrind callgrind) of the three servers on a fixed number of
# requests: independent of machine load, so they can be compared across runs.
#
#   benches/load/profile.sh [REQUESTS]        (default 20000)
#   SERVERS="lm-server lm-indexed" benches/load/profile.sh 5000
#
# `lm-indexed` is lm-server with `--login-index` (a logged-in request with a LoginIndex, #17);
# `lm-separate` is lm-server with the session and login layers in two `.layer` calls.
#
# For each server and path: start it under callgrind with instrumentation off, log in, warm
# up, switch instrumentation on, send REQUESTS sequential requests, dump. Prints instructions
# per request and writes target/profiles/<server>-<path>.callgrind (read them with
# `callgrind_annotate --inclusive=yes FILE`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
n="${1:-20000}"
export CARGO_TARGET_DIR="$root/target/load"
cargo build --release --manifest-path "$here/Cargo.toml" >&2
bin="$CARGO_TARGET_DIR/release"
out="$root/target/profiles"
mkdir -p "$out"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT

for server in ${SERVERS:-lm-server lm-indexed axum-login-server floor-server}; do
  case "$server" in
    lm-indexed) command=("$bin/lm-server" --login-index) ;;
    lm-separate) command=("$bin/lm-server" --separate-layers) ;;
    *) command=("$bin/$server") ;;
  esac
  for path in /protected /public; do
    name="$server-${path#/}"
    log="$out/$name.log"
    rm -f "$out/$name.callgrind"*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/$name.callgrind" \
      "${command[@]}" >"$out/$name.stdout" 2>"$log" &
    pid=$!
    for _ in $(seq 1 600); do
      grep -q "listening on" "$out/$name.stdout" 2>/dev/null && break
      sleep 0.1
    done
    addr="$(sed -n 's/^listening on //p' "$out/$name.stdout")"
    [ -n "$addr" ] || { echo "$name: the server did not start (see $log)" >&2; exit 1; }
    cookie="$(curl -s -D - -o /dev/null -X POST -A login-manager-bench "http://$addr/bench/login" |
      tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(id=[^;]*\).*/\1/p')"
    "$bin/storm" fixed "$addr" "$cookie" "$path" 200 >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "$bin/storm" fixed "$addr" "$cookie" "$path" "$n" >/dev/null
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    # The dump asked for by -d (the file without a suffix is the empty one written at exit).
    dump="$out/$name.callgrind.1"
    total="$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)"
    echo "$name: $((total / n)) instructions/request ($dump)"
  done
done
