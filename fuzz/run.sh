#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, one
# process at a time. Exits non-zero as soon as a target crashes; the reproducer is then in
# fuzz/artifacts/<target>/ (replay it with `cargo fuzz run <target> <file>`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 30 seconds, every target
#
# Works on stable Rust: cargo-fuzz needs `-Zsanitizer`, allowed there by RUSTC_BOOTSTRAP=1.
# The committed corpus (fuzz/corpus/<target>/) and the reproducers of past findings
# (fuzz/regressions/<target>/) are only read; what a run discovers goes to fuzz/work/<target>/
# (ignored by git). FUZZ_MINIMIZE=1 merges that back into the committed corpus and minimizes
# it with `cargo fuzz cmin`, keeping one input per covered edge (for maintainers, see
# docs/fuzzing.md). FUZZ_SANITIZER (default: address) is passed to `cargo fuzz -s`.
set -euo pipefail

seconds="${1:-30}"
if [ "$#" -gt 0 ]; then shift; fi
case "$seconds" in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# Longest input per target: a little past what each parser can accept, so that the fuzzer
# spends its time where the decisions are (safe_next caps `next` at 2048 bytes).
max_len() {
  case "$1" in
    remember_cookie) echo 256 ;;
    safe_next) echo 4200 ;;
    auth_record) echo 1024 ;;
    werkzeug_hash) echo 512 ;;
    *) echo 4096 ;;
  esac
}

echo "==> building ${targets[*]} (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
  cargo fuzz build -s "$sanitizer" "$target"
done

status=0
for target in "${targets[@]}"; do
  corpus="$fuzz_dir/corpus/$target"
  work="$fuzz_dir/work/$target"
  mkdir -p "$corpus" "$work"
  inputs=("$work" "$corpus")
  if [ -d "$fuzz_dir/regressions/$target" ]; then
    inputs+=("$fuzz_dir/regressions/$target")
  fi
  args=(
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10
    -rss_limit_mb=2048 -print_final_stats=1 -jobs=1 -workers=1
  )
  if [ -f "$fuzz_dir/dict/$target.dict" ]; then
    args+=(-dict="$fuzz_dir/dict/$target.dict")
  fi
  echo "==> $target: ${seconds}s"
  # With -jobs, libFuzzer runs the fuzzer in a child process that logs to fuzz-0.log in the
  # current directory: keep that log with the work corpus and show it afterwards.
  log="$work/fuzz-0.log"
  rm -f "$log" fuzz-0.log
  set +e
  cargo fuzz run -s "$sanitizer" "$target" "${inputs[@]}" -- "${args[@]}"
  code=$?
  set -e
  if [ -f fuzz-0.log ]; then mv fuzz-0.log "$log"; fi
  if [ -f "$log" ]; then
    # libFuzzer has printed the log already; repeat its statistics.
    echo "==> $target: summary"
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::' "$log" || true
  fi
  if [ "$code" -ne 0 ]; then
    echo "==> $target FAILED (exit $code); reproducers in fuzz/artifacts/$target/" >&2
    status=1
    break
  fi
  if [ "${FUZZ_MINIMIZE:-0}" = 1 ]; then
    echo "==> $target: minimizing the corpus"
    find "$work" -maxdepth 1 -type f ! -name 'fuzz-*.log' -exec cp -n {} "$corpus/" \;
    cargo fuzz cmin -s "$sanitizer" "$target" "$corpus" -- \
      -max_len="$(max_len "$target")" -use_counters=0
  fi
done

exit "$status"
