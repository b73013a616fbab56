#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time (default 30 s)
# on a temporary copy of its seed corpus, so that the repository's corpus
# never grows by itself. Exits non-zero on the first crash, naming the
# input that caused it (kept in fuzz/artifacts/TARGET/). See docs/fuzzing.md.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds < 1 )); then
  echo "error: SECONDS must be a positive whole number, not \"$seconds\"; usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
# cargo-fuzz needs unstable flags (-Zsanitizer); the stable toolchain takes them with this.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if (( ${#targets[@]} == 0 )); then
  mapfile -t targets < <(cargo fuzz list)
fi

# FUZZ_SANITIZER: address (the default, for long runs) or none (CI: the
# build takes a fraction of the time; the code the targets reach has no unsafe).
sanitizer="${FUZZ_SANITIZER:-address}"
started=$(date +%s)
cargo fuzz build -s "$sanitizer"
echo "fuzz: built in $(( $(date +%s) - started )) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "artifacts/$target"
  if [[ -d "corpus/$target" ]]; then
    cp -a "corpus/$target/." "$work/$target/"
  fi
  dict=()
  case "$target" in
    credentials | forward_query) dict=(-dict=dict/request.dict) ;;
    apikey_info) dict=(-dict=dict/apikey_info.dict) ;;
    pgutil_config) dict=(-dict=dict/pgutil_config.dict) ;;
  esac
  log="$work/$target.log"
  if cargo fuzz run -s "$sanitizer" "$target" "$work/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 \
      -artifact_prefix="artifacts/$target/" "${dict[@]}" >"$log" 2>&1; then
    echo "fuzz: $target ok: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n1)" \
      "corpus $(find "$work/$target" -type f | wc -l) inputs"
  else
    tail -n 60 "$log" >&2
    input=$(ls -t "artifacts/$target" | head -n1)
    echo "error: fuzz target $target failed on fuzz/artifacts/$target/$input;" \
      "replay it with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target artifacts/$target/$input" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $(( $(date +%s) - started )) s in all"
