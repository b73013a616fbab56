#!/usr/bin/env bash
# The benchmark suite of issue 6, in one command:
#
#   bench/run.sh            full run: SQLite (and PostgreSQL when
#                           LATCHKEY_TEST_POSTGRES_URL is set); writes BENCHMARKS.md
#   bench/run.sh --smoke    scenario 1 (log on and off) and scenarios 7 and 8
#                           (64 connections only) for 5 s against their
#                           baselines, SQLite only; prints the table, writes
#                           nothing (for .ci/run)
#
# It installs wrk, hyperfine and jq from Debian's packages when missing,
# builds the release binaries, seeds a database with 100,000 keys
# (crates/latchkey/examples/bench_seed.rs), and drives latchkey and a bare
# axum baseline (crates/latchkey/examples/bench_baseline.rs) over loopback
# with wrk (bench/keys.lua, bench/delete.lua: requests pre-formatted in
# init(), no response() callback, non-2xx counted by wrk itself). The baseline
# is driven by the same script with the same keys. Scenario 1 runs twice: with
# the request log on (RUST_LOG=info, stderr on a pipe, as under systemd or a
# container runtime) and off (RUST_LOG=warn, as every other scenario). Scenario 7
# is forward auth (/api/auth/forward?feed=F, 200 rotating warm feed keys)
# against the baseline driven on the same route with the same keys; scenario
# 8 is nginx (bench/nginx.conf around docs/nginx/latchkey.conf) with
# auth_request to latchkey in front of the baseline, against the same nginx
# in front of the same baseline without auth_request. Every
# figure is also given as a ratio to the baseline of the same run. The exit status is nonzero when
# any scenario errors (a non-2xx response, a socket error, a server that
# does not start, a failed command); a missed target is reported, not an error.
#
# Environment: BENCH_DURATION (wrk seconds, default 10), BENCH_PROFILE=1
# (builds with --profile profiling, i.e. release with line tables, and perf
# records latchkey during scenario 1, log on, at 64 connections on SQLite),
# CARGO_TARGET_DIR, LATCHKEY_TEST_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=full
case "${1:-}" in
  "") ;;
  --smoke) MODE=smoke ;;
  *) echo "usage: bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

KEYS=100000
# Scenario 1 rotates through the personal keys of this many distinct users.
ROTATING_KEYS=200
if [[ $MODE == smoke ]]; then
  USERS=$ROTATING_KEYS
  DURATION=5
  LOG_DURATION=6
else
  USERS=500
  DURATION=${BENCH_DURATION:-10}
  LOG_DURATION=60
fi
# Connection counts and wrk threads (the machine has few cores: wrk gets at most 2).
CONNS_LOW=1 THREADS_LOW=1
CONNS_HIGH=64 THREADS_HIGH=2
# run_paired: rounds per pair (even, so that ABBA order cancels a linear drift).
PAIR_ROUNDS=2
# Scenario 9 measures a difference of a few per cent, below this machine's
# noise between two 10-second runs: more rounds (as many as the others in a
# smoke run).
TRACKING_ROUNDS=6
[[ $MODE == full ]] || TRACKING_ROUNDS=$PAIR_ROUNDS
STARTS=5        # scenario 6: starts per database
CURL_RUNS=5     # scenario 4: admin lists
PGUTIL_RUNS=20  # scenario 5: pgutil deletes
# Scenarios 7 and 8: the feed whose keys the forward-auth requests rotate through.
FORWARD_FEED=feed-0
FORWARD_PATH="/api/auth/forward?feed=$FORWARD_FEED"

WORK=$ROOT/target/bench
if [[ ${BENCH_PROFILE:-0} == 1 ]]; then
  CARGO_PROFILE=profiling
else
  CARGO_PROFILE=release
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$CARGO_PROFILE
RESULTS=$WORK/results.tsv
export LATCHKEY_SECRET=bench-secret-0123456789abcdef0123456789abcdef
export LATCHKEY_ADMIN_PASSWORD=bench-admin-password
export RUST_LOG=warn
export PGUTIL_CONFIG=$WORK/pgutil.config

PIDS=()          # servers started by this script
PG_DATABASES=()  # PostgreSQL databases created by this script
PG_ADMIN_URL=${LATCHKEY_TEST_POSTGRES_URL:-}
FAILED=0

say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; FAILED=1; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local pid db
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for db in "${PG_DATABASES[@]}"; do
    psql "$PG_ADMIN_URL" -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# ---------------------------------------------------------------- tools, build

install_tools() {
  local missing=() tool
  for tool in wrk hyperfine jq curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  nginx_bin >/dev/null || missing+=(nginx)
  if [[ -n $PG_ADMIN_URL && $MODE == full ]] && ! command -v psql >/dev/null; then
    missing+=(postgresql-client)
  fi
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

nginx_bin() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }; }

build() {
  say "building $CARGO_PROFILE binaries"
  cargo build --profile "$CARGO_PROFILE" --bins --examples --quiet
}

# ------------------------------------------------------------------- servers

# start_server NAME COMMAND…: starts a server whose first stdout line is
# `listening on http://ADDR`; sets SERVER_PID, SERVER_ADDR and START_MS (from
# just before the spawn to that line, measured with bash's clock, no fork).
# With LOG_PIPE=1 in its environment, stderr goes through a pipe (to cat,
# appending to the log file) instead of straight to the file.
start_server() {
  local name=$1 fifo=$WORK/$1.stdout.fifo line fd t0 t1
  shift
  rm -f "$fifo"
  mkfifo "$fifo"
  t0=${EPOCHREALTIME//[!0-9]/}
  # "$@" is an external command, so $! is the server itself, not a subshell.
  if [[ ${LOG_PIPE:-0} == 1 ]]; then
    "$@" >"$fifo" 2> >(cat >>"$WORK/$name.log") &
  else
    "$@" >"$fifo" 2>>"$WORK/$name.log" &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  exec {fd}<"$fifo"
  if ! read -r -t 60 -u "$fd" line; then
    exec {fd}<&-
    die "$name did not print 'listening on' within 60 s; see $WORK/$name.log"
  fi
  t1=${EPOCHREALTIME//[!0-9]/}
  [[ $line == "listening on http://"* ]] || die "$name printed '$line' instead of 'listening on http://ADDR'"
  SERVER_ADDR=${line#listening on http://}
  START_MS=$(awk -v us=$((t1 - t0)) 'BEGIN { printf "%.1f", us / 1000 }')
  # Keep draining stdout so that the server never writes to a closed pipe.
  cat <&"$fd" >>"$WORK/$name.log" 2>/dev/null &
  exec {fd}<&-
}

stop_server() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Forget it, so that the exit trap never signals a reused pid.
  local kept=() p
  for p in "${PIDS[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}


# ------------------------------------------------------------------ recording

# record BACKEND SCENARIO CONNS VALUE UNIT P50_MS P99_MS NOTE [BASE]: BASE
# names the baseline of the ratios: `list` (the default) for the list
# baseline, `forward-BACKEND` for the baseline on the forward-auth route
# paired with scenario 7 on BACKEND, `nginx` for
# nginx without auth_request. Stored as column 8, before the note: an empty
# field is lost in the middle of a line that `read` splits on tabs.
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${9:-list}" "$8" >>"$RESULTS"
}

# run_wrk LABEL THREADS CONNS URL SCRIPT ARGS…: runs wrk and sets RPS, P50_MS,
# P99_MS, EXHAUSTED; any non-2xx response or socket error is a failure.
run_wrk() {
  local label=$1 threads=$2 conns=$3 url=$4 script=$5 out
  shift 5
  out=$WORK/wrk-${label// /_}-c$conns.txt
  say "$label: wrk -t$threads -c$conns -d${DURATION}s"
  if ! wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency \
      -s "$script" "$url" -- "$@" >"$out" 2>&1; then
    fail "$label: wrk failed; see $out"
  fi
  local line requests duration_us p50_us p99_us non2xx socket_errors exhausted
  line=$(grep '^BENCH ' "$out" || true)
  if [[ -z $line ]]; then
    fail "$label: no BENCH line from wrk; see $out"
    RPS=0 P50_MS=0 P99_MS=0 EXHAUSTED=0
    return
  fi
  field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
  requests=$(field requests) duration_us=$(field duration_us) p50_us=$(field p50_us)
  p99_us=$(field p99_us) non2xx=$(field non2xx) socket_errors=$(field socket_errors) exhausted=$(field exhausted)
  RPS=$(awk -v n="$requests" -v us="$duration_us" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
  P50_MS=$(awk -v us="$p50_us" 'BEGIN { printf "%.2f", us / 1000 }')
  P99_MS=$(awk -v us="$p99_us" 'BEGIN { printf "%.2f", us / 1000 }')
  EXHAUSTED=$exhausted
  # wrk's own summary, besides the BENCH line: "Non-2xx or 3xx responses: N"
  # and "Socket errors: connect N, read N, write N, timeout N".
  if ((non2xx > 0 || socket_errors > 0)) || grep -qE 'Non-2xx|Socket errors' "$out"; then
    fail "$label at $conns connections: $non2xx non-2xx responses, $socket_errors socket errors; see $out"
  fi
  if ((requests == 0)); then
    fail "$label at $conns connections: no request completed"
  fi
}

median() { # numbers on stdin → median
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_paired THREADS CONNS FILE LABEL_A URL_A LABEL_B URL_B: the two servers
# (both started, only one driven at a time) in PAIR_ROUNDS rounds of one wrk
# run each, in ABBA order (A B, B A, A B, …), so that a drift of the
# machine's speed during the scenario falls on both alike. Sets A_RPS, A_P50,
# A_P99 and B_RPS, B_P50, B_P99 (means over the rounds; the ratio of the means
# is the ratio of the requests served in equal times) and PAIR_NOTE (each
# round's req/s).
run_paired() {
  local threads=$1 conns=$2 file=$3 la=$4 ua=$5 lb=$6 ub=$7 i first
  local a_rps=() a_p50=() a_p99=() b_rps=() b_p50=() b_p99=()
  local order
  for i in $(seq 1 "$PAIR_ROUNDS"); do
    order=(a b)
    ((i % 2)) || order=(b a)
    for first in "${order[@]}"; do
      if [[ $first == a ]]; then
        run_wrk "$la round $i" "$threads" "$conns" "$ua" bench/keys.lua "$file"
        a_rps+=("$RPS") a_p50+=("$P50_MS") a_p99+=("$P99_MS")
      else
        run_wrk "$lb round $i" "$threads" "$conns" "$ub" bench/keys.lua "$file"
        b_rps+=("$RPS") b_p50+=("$P50_MS") b_p99+=("$P99_MS")
      fi
    done
  done
  A_RPS=$(printf '%s\n' "${a_rps[@]}" | mean 0) A_P50=$(printf '%s\n' "${a_p50[@]}" | mean 2)
  A_P99=$(printf '%s\n' "${a_p99[@]}" | mean 2)
  B_RPS=$(printf '%s\n' "${b_rps[@]}" | mean 0) B_P50=$(printf '%s\n' "${b_p50[@]}" | mean 2)
  B_P99=$(printf '%s\n' "${b_p99[@]}" | mean 2)
  PAIR_NOTE="mean of $PAIR_ROUNDS rounds, ABBA order: ${a_rps[*]} vs ${b_rps[*]} req/s"
}

mean() { # DECIMALS; numbers on stdin → their mean
  awk -v d="$1" '{ s += $1; n++ } END { if (n == 0) exit 1; printf "%.*f\n", d, s / n }'
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# ------------------------------------------------------------------ scenarios

# Baseline: the bare axum server, driven exactly like scenario 1.
bench_baseline() { # TAG: start or end
  local tag=$1 conns
  start_server baseline "$BIN/examples/bench_baseline" --listen 127.0.0.1:0
  local pid=$SERVER_PID url="http://$SERVER_ADDR/api/api-keys/list"
  for conns in "${CONN_SET[@]}"; do
    run_wrk "baseline $tag" "$(threads_for "$conns")" "$conns" "$url" bench/keys.lua "$SEED_SQLITE/rotating-keys.txt"
    record baseline "baseline ($tag)" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" ""
    if [[ $tag == start ]]; then
      BASE_RPS[$conns]=$RPS
      BASE_P99[$conns]=$P99_MS
    fi
  done
  stop_server "$pid"
}

threads_for() { if (($1 == CONNS_LOW)); then echo "$THREADS_LOW"; else echo "$THREADS_HIGH"; fi; }

# Scenario 7: forward auth, /api/auth/forward?feed=F with 200 rotating feed
# keys of feed F, warmed first (one request each), paired with the baseline
# on the same route with the same keys (run_paired: alternating rounds).
bench_forward() { # BACKEND ADDR SEED_DIR
  local backend=$1 url="http://$2$FORWARD_PATH" file=$3/feed-keys.txt conns base_pid base_url
  warm_keys "$file" "$url" "scenario 7 ($backend)"
  start_server "baseline-forward-$backend" "$BIN/examples/bench_baseline" --listen 127.0.0.1:0
  base_pid=$SERVER_PID base_url="http://$SERVER_ADDR$FORWARD_PATH"
  for conns in "${NEW_CONN_SET[@]}"; do
    run_paired "$(threads_for "$conns")" "$conns" "$file" "baseline forward ($backend)" "$base_url" "$backend 7. forward" "$url"
    record baseline "baseline, forward-auth route and feed keys, paired with 7 ($backend)" "$conns" "$A_RPS" "req/s" "$A_P50" "$A_P99" "$PAIR_NOTE"
    BASE_RPS[forward-$backend$conns]=$A_RPS
    BASE_P99[forward-$backend$conns]=$A_P99
    record "$backend" "7. forward auth by $ROTATING_KEYS rotating feed keys (warm)" "$conns" "$B_RPS" "req/s" "$B_P50" "$B_P99" "paired with the baseline" "forward-$backend"
  done
  stop_server "$base_pid"
}

# One request per key, in sequence; every one must be allowed.
warm_keys() { # FILE URL LABEL
  local key code bad=0
  while IFS= read -r key; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-ApiKey: $key" "$2")
    [[ $code == 200 ]] || bad=$((bad + 1))
  done <"$1"
  ((bad == 0)) || fail "$3 warm-up: $bad keys were not allowed"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Scenario 8: nginx with auth_request to latchkey in front of the baseline,
# against the same nginx in front of the same baseline without auth_request.
bench_nginx() { # LATCHKEY_ADDR SEED_DIR
  local latchkey=$1 file=$2/feed-keys.txt prefix=$WORK/nginx guarded bare nginx conns upstream_pid nginx_pid _
  nginx=$(nginx_bin) || { fail "scenario 8: nginx is not installed"; return; }
  start_server upstream "$BIN/examples/bench_baseline" --listen 127.0.0.1:0
  upstream_pid=$SERVER_PID
  guarded=127.0.0.1:$(free_port)
  bare=127.0.0.1:$(free_port)
  rm -rf "$prefix"
  mkdir -p "$prefix/tmp"
  # The documented site, its feed changed to the seeded one.
  sed -e "s|@LATCHKEY@|$latchkey|; s|@PACKAGE_INDEX@|$SERVER_ADDR|; s|@LISTEN@|$guarded|" \
    -e "s|forward?feed=pypi-internal|forward?feed=$FORWARD_FEED|" docs/nginx/latchkey.conf >"$prefix/latchkey.conf"
  sed -e "s|@PREFIX@|$prefix|g; s|@BARE@|$bare|" \
    -e "s|@USER@|$([[ $EUID == 0 ]] && echo 'user root;')|" bench/nginx.conf >"$prefix/nginx.conf"
  "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;' 2>>"$WORK/nginx.log" &
  nginx_pid=$!
  PIDS+=("$nginx_pid")
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://$bare/" && curl -s -o /dev/null "http://$guarded/" && break
    sleep 0.1
  done
  if ! kill -0 "$nginx_pid" 2>/dev/null; then
    fail "scenario 8: nginx did not start; see $prefix/error.log and $WORK/nginx.log"
    stop_server "$upstream_pid"
    return
  fi
  warm_keys "$file" "http://$guarded/" "scenario 8"
  for conns in "${NEW_CONN_SET[@]}"; do
    run_wrk "nginx bare" "$(threads_for "$conns")" "$conns" "http://$bare/" bench/keys.lua "$file"
    record nginx "8. nginx → baseline, no auth_request" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" ""
    BASE_RPS[nginx$conns]=$RPS
    BASE_P99[nginx$conns]=$P99_MS
    run_wrk "nginx auth_request" "$(threads_for "$conns")" "$conns" "http://$guarded/" bench/keys.lua "$file"
    record sqlite "8. nginx → latchkey auth_request → baseline, $ROTATING_KEYS rotating feed keys" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" "" nginx
  done
  stop_server "$nginx_pid"
  stop_server "$upstream_pid"
}

# Scenario 9 (issue 12): what last-use tracking costs. Scenario 7's forward
# auth on two servers running side by side, tracking on (the default) and off
# (LATCHKEY_USAGE_TRACKING=off, a benchmark-only switch), each on its own copy
# of the database, paired (run_paired: alternating rounds).
bench_tracking() { # DATA_DIR URL SEED_DIR
  local dir=$1 url=$2 file=$3/feed-keys.txt conns on_pid off_pid on_url off_url off_dir=$1-tracking-off
  rm -rf "$off_dir"
  cp -a "$dir" "$off_dir" || die "scenario 9: cannot copy the database"
  start_server "latchkey-sqlite-tracking-on" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
  on_pid=$SERVER_PID on_url="http://$SERVER_ADDR$FORWARD_PATH"
  LATCHKEY_USAGE_TRACKING=off start_server "latchkey-sqlite-tracking-off" "$BIN/latchkey" serve --listen 127.0.0.1:0 \
    --data-dir "$off_dir" --database-url "sqlite://$off_dir/latchkey.db"
  off_pid=$SERVER_PID off_url="http://$SERVER_ADDR$FORWARD_PATH"
  warm_keys "$file" "$on_url" "scenario 9 (tracking on)"
  warm_keys "$file" "$off_url" "scenario 9 (tracking off)"
  for conns in "${NEW_CONN_SET[@]}"; do
    PAIR_ROUNDS=$TRACKING_ROUNDS run_paired "$(threads_for "$conns")" "$conns" "$file" "sqlite 9. tracking off" "$off_url" "sqlite 9. tracking on" "$on_url"
    record sqlite "9. forward auth as in 7, last-use tracking off" "$conns" "$A_RPS" "req/s" "$A_P50" "$A_P99" "$PAIR_NOTE" forward-sqlite
    BASE_RPS[trackoff$conns]=$A_RPS
    record sqlite "9. forward auth as in 7, last-use tracking on" "$conns" "$B_RPS" "req/s" "$B_P50" "$B_P99" "paired with tracking off" forward-sqlite
  done
  stop_server "$on_pid"
  stop_server "$off_pid"
  rm -rf "$off_dir"
}

# Scenario 10 (issue 12): access logging. GET /api/api-keys/self by 200 feed
# keys of feed-0 with logging `none`, then by 200 feed keys of feed-2 switched
# to `request` (by SQL, server stopped) for LOG_DURATION seconds, with the
# server's resident memory sampled after a sixth of the run and at its end.
bench_logging() { # DATA_DIR URL SEED_DIR
  local dir=$1 url=$2 seed=$3 logged=$3/logged-keys.txt pid u conns=$CONNS_HIGH rss_early rss_end
  awk -v n="$ROTATING_KEYS" '($1 - 1000) % 100 == 2 { print $1 "\t" $2; if (++c == n) exit }' "$seed/delete-pairs.txt" >"$WORK/logged-pairs.txt"
  cut -f2 "$WORK/logged-pairs.txt" >"$logged"
  (($(wc -l <"$logged") == ROTATING_KEYS)) || die "fewer than $ROTATING_KEYS feed keys of feed-2 seeded"
  python3 - "$dir/latchkey.db" "$WORK/logged-pairs.txt" <<'PY' || die "scenario 10: cannot switch the keys' logging"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ids = [int(line.split("\t")[0]) for line in open(sys.argv[2]) if line.strip()]
db.executemany("UPDATE api_keys SET logging = 'request' WHERE id = ?", [(i,) for i in ids])
db.commit()
PY
  start_server "latchkey-sqlite-logging" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
  pid=$SERVER_PID u="http://$SERVER_ADDR/api/api-keys/self"
  warm_keys "$seed/feed-keys.txt" "$u" "scenario 10 (logging none)"
  warm_keys "$logged" "$u" "scenario 10 (logging request)"
  run_wrk "sqlite 10. logging none" "$THREADS_HIGH" "$conns" "$u" bench/keys.lua "$seed/feed-keys.txt"
  record sqlite "10. GET /api/api-keys/self by $ROTATING_KEYS feed keys, logging none" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" ""
  BASE_RPS[lognone$conns]=$RPS
  BASE_P99[lognone$conns]=$P99_MS
  local sampler
  (sleep $((LOG_DURATION / 6)); awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" >"$WORK/rss-early.txt") &
  sampler=$!
  DURATION=$LOG_DURATION run_wrk "sqlite 10. logging request" "$THREADS_HIGH" "$conns" "$u" bench/keys.lua "$logged"
  wait "$sampler"
  rss_early=$(<"$WORK/rss-early.txt")
  rss_end=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  record sqlite "10. the same by $ROTATING_KEYS feed keys with logging request, ${LOG_DURATION} s" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" "" lognone
  record sqlite "10. resident memory growth over the logged run (from 1/6 to the end)" - \
    "$(awk -v a="$rss_early" -v b="$rss_end" 'BEGIN { printf "%.1f", (b - a) / 1024 }')" MiB - - \
    "VmRSS $((rss_early / 1024)) MiB after $((LOG_DURATION / 6)) s, $((rss_end / 1024)) MiB at the end"
  stop_server "$pid"
  # Back to `none`, so that scenario 3's deletes are not logged.
  python3 -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute("UPDATE api_keys SET logging = '"'none'"' WHERE logging = '"'request'"'"); db.commit()' "$dir/latchkey.db" \
    || die "scenario 10: cannot switch the keys' logging back"
}

# Scenario 6: start to `listening on`, on fresh empty databases and on the seeded one.
bench_start() { # BACKEND SEEDED_URL SEEDED_DIR
  local backend=$1 seeded_url=$2 seeded_dir=$3 i url dir times=()
  for i in $(seq 1 "$STARTS"); do
    dir=$WORK/$backend-empty-$i
    mkdir -p "$dir"
    if [[ $backend == sqlite ]]; then
      url="sqlite://$dir/latchkey.db"
    else
      pg_create "empty_$i"
      url=$PG_URL
    fi
    start_server "latchkey-$backend-empty" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
    times+=("$START_MS")
    stop_server "$SERVER_PID"
  done
  record "$backend" "6. start, empty database" - "$(printf '%s\n' "${times[@]}" | median)" ms - - "median of $STARTS (${times[*]})"
  times=()
  for i in $(seq 1 "$STARTS"); do
    start_server "latchkey-$backend" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$seeded_dir" --database-url "$seeded_url"
    times+=("$START_MS")
    stop_server "$SERVER_PID"
  done
  record "$backend" "6. start, $KEYS keys" - "$(printf '%s\n' "${times[@]}" | median)" ms - - "median of $STARTS (${times[*]})"
}

# Scenarios 1 and 2: authenticated list by keys that each see one key.
bench_list() { # BACKEND SCENARIO_NAME KEYS_FILE ADDR
  local backend=$1 name=$2 file=$3 url="http://$4/api/api-keys/list" conns
  for conns in "${CONN_SET[@]}"; do
    if [[ $backend == sqlite && ${BENCH_PROFILE:-0} == 1 && $name == "1. log on"* && $conns == "$CONNS_HIGH" ]]; then
      perf record -F 999 -g -p "$LATCHKEY_PID" -o "$WORK/perf-scenario1.data" -- sleep "$DURATION" \
        >"$WORK/perf-record.log" 2>&1 &
    fi
    run_wrk "$backend $name" "$(threads_for "$conns")" "$conns" "$url" bench/keys.lua "$file"
    record "$backend" "$name" "$conns" "$RPS" "req/s" "$P50_MS" "$P99_MS" ""
  done
  wait_for_perf
}

wait_for_perf() {
  local job
  for job in $(jobs -p); do
    if [[ $(ps -o comm= -p "$job" 2>/dev/null) == perf ]]; then
      wait "$job" || fail "perf record failed; see $WORK/perf-record.log"
      perf report -i "$WORK/perf-scenario1.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
        | head -n 120 >"$WORK/perf-scenario1.txt" || true
      say "profile: $WORK/perf-scenario1.txt"
    fi
  done
}

# Scenario 2 needs one Argon2id verification per user first (the server then
# caches it): a bounded pass over every pseudo-key, two at a time.
warm_pseudo_keys() { # FILE ADDR
  local file=$1 url="http://$2/api/api-keys/list" credential status bad=0 n=0 batch=()
  say "scenario 2 warm-up: one request per user"
  while IFS= read -r credential; do
    curl -s -o /dev/null -w '%{http_code}\n' -H "X-ApiKey: $credential" "$url" >>"$WORK/warm.txt" &
    batch+=($!)
    n=$((n + 1))
    if ((${#batch[@]} == 2)); then
      wait "${batch[@]}" || true
      batch=()
    fi
  done <"$file"
  ((${#batch[@]} == 0)) || wait "${batch[@]}" || true
  while read -r status; do
    [[ $status == 200 ]] || bad=$((bad + 1))
  done <"$WORK/warm.txt"
  rm -f "$WORK/warm.txt"
  ((bad == 0)) || fail "scenario 2 warm-up: $bad of $n logins failed"
}

# Scenario 4: the admin list of every key: time to last byte and peak RSS growth.
bench_admin_list() { # BACKEND ADDR PID SEED_DIR
  local backend=$1 url="http://$2/api/api-keys/list" pid=$3 seed=$4 admin_key before after i code total times=() count
  admin_key=$(<"$seed/admin-key.txt")
  # Reset the peak RSS to the current RSS (earlier scenarios, e.g. Argon2's
  # 19 MiB per verification, leave a high-water mark that would hide growth).
  echo 5 >"/proc/$pid/clear_refs" || fail "scenario 4 ($backend): cannot reset VmHWM"
  before=$(vm_hwm_kib "$pid")
  for i in $(seq 1 "$CURL_RUNS"); do
    read -r code total < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "X-ApiKey: $admin_key" "$url")
    [[ $code == 200 ]] || fail "scenario 4 ($backend): HTTP $code"
    times+=("$(awk -v s="$total" 'BEGIN { printf "%.1f", s * 1000 }')")
  done
  after=$(vm_hwm_kib "$pid")
  count=$(curl -s -H "X-ApiKey: $admin_key" "$url" | jq length)
  [[ $count == "$KEYS" ]] || fail "scenario 4 ($backend): the list held $count keys, not $KEYS"
  record "$backend" "4. admin list of $count keys, time to last byte" 1 \
    "$(printf '%s\n' "${times[@]}" | median)" ms - - "median of $CURL_RUNS (${times[*]})"
  record "$backend" "4. admin list, peak RSS growth" 1 \
    "$(awk -v k=$((after - before)) 'BEGIN { printf "%.1f", k / 1024 }')" MiB - - \
    "VmHWM reset to $((before / 1024)) MiB, then peaked at $((after / 1024)) MiB"
}

# Scenario 5: `pgutil apikeys delete --id=N`, one distinct existing key per run.
bench_pgutil() { # BACKEND ADDR SEED_DIR
  local backend=$1 addr=$2 seed=$3 first last warm json=$WORK/pgutil-$1.json
  rm -f "$PGUTIL_CONFIG"
  "$BIN/pgutil" sources add --name=Default --url="http://$addr/" --api-key="$(<"$seed/admin-key.txt")" >/dev/null
  warm=$(sed -n 1p "$seed/pgutil-ids.txt")
  first=$(sed -n 2p "$seed/pgutil-ids.txt")
  last=$((first + PGUTIL_RUNS - 1))
  grep -qx "$last" "$seed/pgutil-ids.txt" || die "too few pgutil keys seeded"
  # One unmeasured run so that the binary and its libraries are in the page cache.
  "$BIN/pgutil" apikeys delete --id="$warm" >/dev/null || fail "scenario 5 ($backend): warm-up delete failed"
  say "scenario 5 ($backend): hyperfine, $PGUTIL_RUNS runs"
  if ! hyperfine -N --style basic --runs 1 --parameter-scan id "$first" "$last" \
      --export-json "$json" "$BIN/pgutil apikeys delete --id={id}" >"$WORK/pgutil-$backend.txt" 2>&1; then
    fail "scenario 5 ($backend): a pgutil run failed; see $WORK/pgutil-$backend.txt"
    return
  fi
  local runs
  runs=$(jq '[.results[].times[]] | length' "$json")
  ((runs == PGUTIL_RUNS)) || fail "scenario 5 ($backend): $runs runs, not $PGUTIL_RUNS"
  record "$backend" "5. pgutil apikeys delete, process start to exit" 1 \
    "$(jq '.results[].times[] * 1000' "$json" | median | xargs printf '%.1f')" ms - - "median of $runs distinct keys"
}

# Scenario 3: each request deletes a different key (the key deletes itself).
# NOTE, when given, is added to the scenario's name (PostgreSQL: three nodes).
bench_delete() { # BACKEND ADDR SEED_DIR [NOTE]
  local backend=$1 url="http://$2/api/api-keys/delete" pairs=$3/delete-pairs.txt total low
  local name="3. durable delete of distinct keys${4:+, $4}"
  total=$(wc -l <"$pairs")
  low=$((total / 5)) # a fifth for one connection, the rest for 64
  run_wrk "$backend 3. delete" "$THREADS_LOW" "$CONNS_LOW" "$url" bench/delete.lua "$pairs" 1 "$low" "$THREADS_LOW" "$CONNS_LOW"
  record "$backend" "$name" "$CONNS_LOW" "$RPS" "deletes/s" "$P50_MS" "$P99_MS" "$(exhausted_note)"
  run_wrk "$backend 3. delete" "$THREADS_HIGH" "$CONNS_HIGH" "$url" bench/delete.lua "$pairs" $((low + 1)) $((total - low)) "$THREADS_HIGH" "$CONNS_HIGH"
  record "$backend" "$name" "$CONNS_HIGH" "$RPS" "deletes/s" "$P50_MS" "$P99_MS" "$(exhausted_note)"
}

exhausted_note() {
  if ((EXHAUSTED)); then echo "key pool ran out before the end: a lower bound"; fi
}

# ------------------------------------------------------------------ back ends

pg_url_for() { # DATABASE → URL on the same server as LATCHKEY_TEST_POSTGRES_URL
  local base=${PG_ADMIN_URL%%\?*} query=""
  [[ $PG_ADMIN_URL == *\?* ]] && query="?${PG_ADMIN_URL#*\?}"
  echo "${base%/*}/$1$query"
}

pg_create() { # SUFFIX: creates an empty database and sets PG_URL to it
  local db="latchkey_bench_$$_$1"
  psql "$PG_ADMIN_URL" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
  PG_DATABASES+=("$db")
  PG_URL=$(pg_url_for "$db")
}

seed() { # DATABASE_URL OUT_DIR
  say "seeding $KEYS keys and $USERS users into $1"
  "$BIN/examples/bench_seed" --database-url "$1" --out "$2" --keys "$KEYS" --users "$USERS" 2>>"$WORK/seed.log" \
    || die "seeding failed; see $WORK/seed.log"
  # Scenario 1 (and the baseline) rotate through the personal keys of this many users.
  head -n "$ROTATING_KEYS" "$2/personal-keys.txt" >"$2/rotating-keys.txt"
  (($(wc -l <"$2/rotating-keys.txt") == ROTATING_KEYS)) || die "fewer than $ROTATING_KEYS personal keys seeded"
  # Scenarios 7 and 8: feed keys of one feed. bench_seed makes key 1000 + i,
  # among the delete pairs, a feed key of feed-(i % 100) when i is even.
  awk -v n="$ROTATING_KEYS" '($1 - 1000) % 100 == 0 { print $2; if (++c == n) exit }' "$2/delete-pairs.txt" >"$2/feed-keys.txt"
  (($(wc -l <"$2/feed-keys.txt") == ROTATING_KEYS)) || die "fewer than $ROTATING_KEYS feed keys of $FORWARD_FEED seeded"
}

run_backend() { # BACKEND DATABASE_URL DATA_DIR SEED_DIR
  local backend=$1 url=$2 dir=$3 seed=$4 scenario1="list by $ROTATING_KEYS rotating personal keys, each seeing 1 key"
  if [[ $MODE == full ]]; then
    bench_start "$backend" "$url" "$dir"
  fi
  # Scenario 1 with the request log on, as operators run it: info, stderr on a pipe.
  RUST_LOG=info LOG_PIPE=1 start_server "latchkey-$backend-log-on" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
  LATCHKEY_PID=$SERVER_PID
  bench_list "$backend" "1. log on (info, stderr on a pipe): $scenario1" "$seed/rotating-keys.txt" "$SERVER_ADDR"
  kill -0 "$LATCHKEY_PID" 2>/dev/null || fail "latchkey ($backend) died during the run; see $WORK/latchkey-$backend-log-on.log"
  stop_server "$LATCHKEY_PID"
  # Everything else with the request log off (RUST_LOG=warn).
  start_server "latchkey-$backend" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
  LATCHKEY_PID=$SERVER_PID
  local addr=$SERVER_ADDR
  bench_list "$backend" "1. log off (warn): $scenario1" "$seed/rotating-keys.txt" "$addr"
  # Before scenario 3, which deletes these keys too.
  bench_forward "$backend" "$addr" "$seed"
  if [[ $backend == sqlite ]]; then
    bench_nginx "$addr" "$seed"
    # Scenarios 9 and 10 start their own servers on the same database.
    stop_server "$LATCHKEY_PID"
    bench_tracking "$dir" "$url" "$seed"
    bench_logging "$dir" "$url" "$seed"
    start_server "latchkey-$backend" "$BIN/latchkey" serve --listen 127.0.0.1:0 --data-dir "$dir" --database-url "$url"
    LATCHKEY_PID=$SERVER_PID
    addr=$SERVER_ADDR
  fi
  if [[ $MODE == full ]]; then
    warm_pseudo_keys "$seed/pseudo-keys.txt" "$addr"
    bench_list "$backend" "2. list by a user:password pseudo-key (warm)" "$seed/pseudo-keys.txt" "$addr"
    bench_admin_list "$backend" "$addr" "$LATCHKEY_PID" "$seed"
    bench_pgutil "$backend" "$addr" "$seed"
    if [[ $backend == postgres ]]; then
      # Durable deletes with two more nodes on the database: each delete's
      # 200 waits for their acknowledgements (docs/postgres.md).
      local extra=() n
      for n in b c; do
        start_server "latchkey-postgres-node-$n" "$BIN/latchkey" serve --listen 127.0.0.1:0 \
          --data-dir "$WORK/postgres-data-$n" --database-url "$url"
        extra+=("$SERVER_PID")
      done
      bench_delete "$backend" "$addr" "$seed" "three nodes running, with the acknowledgement wait"
      for n in "${extra[@]}"; do
        kill -0 "$n" 2>/dev/null || fail "a second PostgreSQL node died during scenario 3"
        stop_server "$n"
      done
    else
      bench_delete "$backend" "$addr" "$seed"
    fi
  fi
  kill -0 "$LATCHKEY_PID" 2>/dev/null || fail "latchkey ($backend) died during the run; see $WORK/latchkey-$backend.log"
  stop_server "$LATCHKEY_PID"
}

# ------------------------------------------------------------------- report

machine_header() {
  local commit dirty=""
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || dirty=" (with uncommitted changes)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: \`$commit\`$dirty"
  echo "- CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), \`nproc\` = $(nproc)"
  echo "- kernel: $(uname -sr)"
  echo "- load average (1, 5, 15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $(hyperfine --version); latchkey and wrk share the machine's cores"
}

# ratio VALUE BASE → VALUE/BASE with 2 decimals, or - when either is missing.
ratio() {
  awk -v v="$1" -v b="$2" 'BEGIN { if (v == "-" || b == "" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f×", v / b }'
}

result_table() {
  echo "| back end | scenario | conns | result | p50 ms | p99 ms | req/s vs baseline | p99 vs baseline | note |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  local backend scenario conns value unit p50 p99 note base r_rps r_p99
  while IFS=$'\t' read -r backend scenario conns value unit p50 p99 base note; do
    r_rps=- r_p99=-
    [[ $base == list ]] && base=""
    if [[ $unit == "req/s" || $unit == "deletes/s" ]] && [[ $backend != baseline && $backend != nginx ]]; then
      r_rps=$(ratio "$value" "${BASE_RPS[$base$conns]:-}")
      r_p99=$(ratio "$p99" "${BASE_P99[$base$conns]:-}")
    fi
    echo "| $backend | $scenario | $conns | $value $unit | $p50 | $p99 | $r_rps | $r_p99 | $note |"
  done <"$RESULTS"
}

# lookup BACKEND SCENARIO_PREFIX CONNS FIELD(4=value, 7=p99) → value or -
lookup() {
  awk -F'\t' -v b="$1" -v s="$2" -v c="$3" -v f="$4" \
    '$1 == b && index($2, s) == 1 && $3 == c { print $f; found = 1; exit } END { if (!found) print "-" }' "$RESULTS"
}

# target DESCRIPTION MEASURED LIMIT ge|le → a table row
target() {
  local verdict
  verdict=$(awk -v m="$2" -v l="$3" -v op="$4" 'BEGIN {
    if (m == "-" || m == "") { print "not measured"; exit }
    ok = (op == "ge") ? (m + 0 >= l + 0) : (m + 0 <= l + 0)
    print ok ? "met" : "**not met**" }')
  echo "| $1 | $2 | $([[ $4 == ge ]] && echo "≥" || echo "≤") $3 | $verdict |"
}

ratio_of() { # BACKEND SCENARIO CONNS FIELD BASE
  local v
  v=$(lookup "$1" "$2" "$3" "$4")
  awk -v v="$v" -v b="$5" 'BEGIN { if (v == "-" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", v / b }'
}

targets_table() {
  local h=$CONNS_HIGH l=$CONNS_LOW
  echo "| target (issues 6, 10, 11 and 12) | measured | target | verdict |"
  echo "| --- | ---: | ---: | --- |"
  target "1. SQLite, log on, req/s at $h connections ÷ baseline" "$(ratio_of sqlite "1. log on" "$h" 4 "${BASE_RPS[$h]}")" 0.70 ge
  target "1. SQLite, log on, p99 at $h connections ÷ baseline p99" "$(ratio_of sqlite "1. log on" "$h" 7 "${BASE_P99[$h]}")" 1.5 le
  target "1. SQLite, log on, req/s at $l connection ÷ baseline" "$(ratio_of sqlite "1. log on" "$l" 4 "${BASE_RPS[$l]:-}")" 0.80 ge
  if [[ -n $PG_ADMIN_URL && $MODE == full ]]; then
    target "1. PostgreSQL, log on, req/s at $h connections ÷ baseline" "$(ratio_of postgres "1. log on" "$h" 4 "${BASE_RPS[$h]}")" 0.50 ge
  fi
  target "7. SQLite, forward auth req/s at $h connections ÷ baseline on that route" "$(ratio_of sqlite 7. "$h" 4 "${BASE_RPS[forward-sqlite$h]:-}")" 0.70 ge
  if [[ -n $PG_ADMIN_URL && $MODE == full ]]; then
    target "7. PostgreSQL, forward auth req/s at $h connections ÷ baseline on that route" "$(ratio_of postgres 7. "$h" 4 "${BASE_RPS[forward-postgres$h]:-}")" 0.70 ge
    target "1. PostgreSQL ÷ SQLite, log on, req/s at $h connections" "$(ratio_of postgres "1. log on" "$h" 4 "$(lookup sqlite "1. log on" "$h" 4)")" 0.70 ge
    target "7. PostgreSQL ÷ SQLite, forward auth req/s at $h connections" "$(ratio_of postgres 7. "$h" 4 "$(lookup sqlite 7. "$h" 4)")" 0.70 ge
    echo "| 3. PostgreSQL, three nodes, durable deletes/s at $l and $h connections (acknowledgement wait) | $(lookup postgres 3. "$l" 4) and $(lookup postgres 3. "$h" 4) | none | reported |"
  fi
  echo "| 8. nginx with auth_request, req/s at $h connections ÷ the same nginx without | $(ratio_of sqlite 8. "$h" 4 "${BASE_RPS[nginx$h]:-}") | none | reported |"
  target "9. SQLite, forward auth with last-use tracking on ÷ off, req/s at $h connections" "$(ratio_of sqlite "9. forward auth as in 7, last-use tracking on" "$h" 4 "${BASE_RPS[trackoff$h]:-}")" 0.95 ge
  target "10. SQLite, logging request ÷ logging none, req/s at $h connections" "$(ratio_of sqlite "10. the same" "$h" 4 "${BASE_RPS[lognone$h]:-}")" 0.50 ge
  target "10. SQLite, resident memory growth over the logged run, MiB" "$(lookup sqlite "10. resident memory" - 4)" 16 le
  [[ $MODE == full ]] || return 0
  target "2. SQLite, warm pseudo-key req/s at $h connections ÷ baseline" "$(ratio_of sqlite 2. "$h" 4 "${BASE_RPS[$h]}")" 0.50 ge
  target "3. SQLite, durable deletes/s at $h connections" "$(lookup sqlite 3. "$h" 4)" 5000 ge
  target "4. SQLite, admin list of $KEYS keys, ms to last byte" "$(lookup sqlite "4. admin list of" 1 4)" 300 le
  target "4. SQLite, peak RSS growth, MiB" "$(lookup sqlite "4. admin list, peak" 1 4)" 50 le
  target "5. SQLite, pgutil apikeys delete, median ms" "$(lookup sqlite 5. 1 4)" 10 le
  target "6. SQLite, start with an empty database, ms" "$(lookup sqlite "6. start, empty" - 4)" 100 le
  target "6. SQLite, start with $KEYS keys, ms" "$(lookup sqlite "6. start, $KEYS" - 4)" 300 le
}

report() {
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` (see the README's Benchmarks section). Ratios are to the"
  echo "bare axum baseline measured in the same run at the same connection count."
  echo
  machine_header
  echo
  echo "## Targets"
  echo
  targets_table
  echo
  echo "## Results"
  echo
  echo "wrk runs last ${DURATION} s; 1 connection uses 1 wrk thread, $CONNS_HIGH connections use 2."
  echo
  result_table
}

# ---------------------------------------------------------------------- main

main() {
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  install_tools
  build
  rm -rf "$WORK"
  mkdir -p "$WORK"
  : >"$RESULTS"
  declare -gA BASE_RPS=() BASE_P99=()
  CONN_SET=("$CONNS_LOW" "$CONNS_HIGH")
  # Scenarios 7 and 8 (and 7's baseline): 64 connections only in a smoke run.
  if [[ $MODE == smoke ]]; then
    NEW_CONN_SET=("$CONNS_HIGH")
  else
    NEW_CONN_SET=("$CONNS_LOW" "$CONNS_HIGH")
  fi

  SEED_SQLITE=$WORK/seed-sqlite
  local sqlite_dir=$WORK/sqlite-data sqlite_url
  mkdir -p "$sqlite_dir"
  sqlite_url="sqlite://$sqlite_dir/latchkey.db"
  seed "$sqlite_url" "$SEED_SQLITE"

  bench_baseline start
  run_backend sqlite "$sqlite_url" "$sqlite_dir" "$SEED_SQLITE"

  if [[ -n $PG_ADMIN_URL && $MODE == full ]]; then
    local pg_url pg_dir=$WORK/postgres-data
    mkdir -p "$pg_dir"
    pg_create main
    pg_url=$PG_URL
    seed "$pg_url" "$WORK/seed-postgres"
    run_backend postgres "$pg_url" "$pg_dir" "$WORK/seed-postgres"
  elif [[ $MODE == full ]]; then
    say "LATCHKEY_TEST_POSTGRES_URL is unset: PostgreSQL not measured"
  fi

  if [[ $MODE == full ]]; then
    bench_baseline end
  fi

  report >"$WORK/BENCHMARKS.md"
  cat "$WORK/BENCHMARKS.md"
  if ((FAILED)); then
    die "at least one scenario failed (see the errors above); BENCHMARKS.md not written"
  fi
  if [[ $MODE == full ]]; then
    # Carry the hand-written analysis (from its "## Analysis" heading on) over.
    if grep -q '^## Analysis' "$ROOT/BENCHMARKS.md" 2>/dev/null; then
      { echo; sed -n '/^## Analysis/,$p' "$ROOT/BENCHMARKS.md"; } >>"$WORK/BENCHMARKS.md"
    fi
    cp "$WORK/BENCHMARKS.md" "$ROOT/BENCHMARKS.md"
    say "wrote BENCHMARKS.md (the hand-written analysis carried over: update it)"
  fi
}

main
