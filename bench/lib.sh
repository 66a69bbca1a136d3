# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/soak.sh (sourced, not run).
# Every server runs in a process group of its own (b_start), so that stopping it also ends what
# it started (webhook's commands, the receiver's consumers); the EXIT trap stops whatever is left.

B_SECRET=56c189c8-33ae-4930-bd98-410a12aa45ce # bench/rawfloor.cpp compares this one
B_PIDS=()                                     # process group leaders still to be stopped
declare -A B_USED_PORTS=()

b_log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
b_die() {
  printf 'bench: error: %s\n' "$*" >&2
  exit 2
}

# b_setup ROOT: checks the tools, installs wrk, webhook (Debian) and express + jsonwebtoken
# (npm install of bench/package.json in B_CACHE, outside the project), compiles the raw floor
# (bench/rawfloor.cpp) once. Everything the benchmarks use is in bench/ and samples/ of the project.
# Sets B_BENCH, B_SAMPLE, B_CACHE, B_MODS, B_RAWFLOOR, B_SINKWAIT (bench/sinkwait.cpp), B_SINKAPP
# (bench/sinkapp.cpp, the app the http sinks deliver to).
b_setup() {
  local root=$1
  B_BENCH=$root/bench
  B_SAMPLE=$root/samples/events/request.create.json
  [ -f "$B_SAMPLE" ] || b_die "no $B_SAMPLE"
  TDHOOK_WITH_BENCH=1 "$root/scripts/install-deps" >&2 || b_die "scripts/install-deps failed"
  local t
  for t in wrk webhook node npm curl ss python3 g++; do
    command -v "$t" >/dev/null || b_die "$t is needed and not installed"
  done
  B_CACHE=${TDHOOK_BENCH_DIR:-/tmp/tdhook-bench}
  mkdir -p "$B_CACHE"
  cmp -s "$B_BENCH/package.json" "$B_CACHE/package.json" || cp "$B_BENCH/package.json" "$B_CACHE/"
  if [ ! -d "$B_CACHE/node_modules/jsonwebtoken" ] || [ ! -d "$B_CACHE/node_modules/express" ] ||
    [ "$B_CACHE/package.json" -nt "$B_CACHE/node_modules" ]; then
    b_log "npm install express jsonwebtoken in $B_CACHE"
    (cd "$B_CACHE" && npm install --silent --no-audit --no-fund >/dev/null && touch node_modules) ||
      b_die "npm install failed in $B_CACHE"
  fi
  B_MODS=$B_CACHE/node_modules
  B_RAWFLOOR=$B_CACHE/rawfloor
  B_SINKWAIT=$B_CACHE/sinkwait
  B_SINKAPP=$B_CACHE/sinkapp
  local prog
  for prog in rawfloor sinkwait sinkapp; do
    if [ ! -x "$B_CACHE/$prog" ] || [ "$B_BENCH/$prog.cpp" -nt "$B_CACHE/$prog" ] ||
      [ "$B_BENCH/epoll_http.hpp" -nt "$B_CACHE/$prog" ]; then
      b_log "g++ -O2 bench/$prog.cpp"
      { g++ -O2 -std=c++20 "$B_BENCH/$prog.cpp" -o "$B_CACHE/$prog.tmp.$$" -lpthread &&
        mv "$B_CACHE/$prog.tmp.$$" "$B_CACHE/$prog"; } || b_die "cannot build $B_BENCH/$prog.cpp"
    fi
  done
}

b_machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# A port nobody listens on, outside the ephemeral range (wrk's own connections use that one),
# never handed out twice in a run (a port in TIME_WAIT is not reused).
b_free_port() {
  local p i
  for i in $(seq 1 500); do
    p=$((20000 + RANDOM % 10000))
    [ -n "${B_USED_PORTS[$p]:-}" ] && continue
    if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
      B_USED_PORTS[$p]=1
      echo "$p"
      return 0
    fi
  done
  b_die "no free port found in 20000-29999"
}

# b_start LOG CMD...: starts CMD in a process group of its own (job control: its pid is the
# group's id, so that b_stop can end whatever it started), in this script's session. Not
# setsid: with the kernel's autogroup scheduling (sched_autogroup_enabled=1, Debian's default)
# every session is one scheduling group with an equal share of the CPU, so a server in a session
# of its own got at most half of the two cores however many threads it ran, while wrk had the
# other half (tdhook with Connection: close measured 11.9k req/s that way, 16.5k sharing the
# cores thread by thread with wrk, as the single-threaded floors and peers always did).
b_start() {
  local log=$1
  shift
  set -m
  "$@" >"$log" 2>&1 </dev/null &
  B_PID=$!
  set +m
  B_PIDS+=("$B_PID")
}

# b_wait_port PORT PID LOG: until something accepts on 127.0.0.1:PORT, or PID exits (an error).
b_wait_port() {
  local port=$1 pid=$2 log=$3 i
  for i in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      b_die "the server logging to $log exited before listening on port $port"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  b_die "nothing listens on port $port after 30 s (log: $log)"
}

# b_stop PID: SIGTERM to the server (the receiver then drains: deliveries that run finish), after
# 15 s SIGKILL; then SIGKILL to whatever it left in its process group; reaped.
b_stop() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${B_PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
  B_PIDS=("${keep[@]}")
}

b_stop_all() {
  local pid
  for pid in "${B_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${B_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  B_PIDS=()
}

# "RSS / HWM" in MiB, from /proc/PID/status.
b_rss() {
  awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { if (r == "") print "?"; else printf "%.1f / %.1f\n", r / 1024, h / 1024 }' \
    "/proc/$1/status" 2>/dev/null || echo "?"
}
# b_cpu_s PID: the CPU time (user + system) PID has used so far, in seconds; "?" once it is gone.
b_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"
}
b_threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
b_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
b_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# b_body OUT: a fresh notification body as Tiledesk builds it (the receiver accepts a token's
# iat for 5 minutes, so one is made before each server run).
b_body() {
  NODE_PATH=$B_MODS node "$B_BENCH/make-body.js" "$B_SAMPLE" "$B_SECRET" >"$1" ||
    b_die "make-body.js failed"
}

# b_receiver LOG PORT DATA_DIR SINK [MORE OPTIONS...]: starts tdhook-receiver from B_BUILD.
b_receiver() {
  local log=$1 port=$2 data=$3 sink=$4
  shift 4
  [ -f "$B_WORK/secret" ] || echo "$B_SECRET" >"$B_WORK/secret"
  b_start "$log" "$B_BUILD/receiver/tdhook-receiver" --listen "127.0.0.1:$port" --path /hooks/tiledesk \
    --secret-file "$B_WORK/secret" --data-dir "$data" --sink "$sink" "$@"
}

# b_metric PORT NAME: a counter summed over its labels from the receiver's /metrics.
b_metric() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'
}
b_delivered() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^tdhook_deliveries_total\{.*outcome="delivered"/ { s += $NF } END { printf "%d\n", s }'
}

# b_parse_wrk FILE: W_RPS W_TOTAL W_P50 W_P99 W_NON2XX W_SOCKERR W_2XX from wrk's output and the
# "responses_2xx N" and "p50_ms X p99_ms Y" lines that the Lua scripts print.
b_parse_wrk() {
  local f=$1
  W_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$f")
  W_TOTAL=$(awk '/ requests in / { print $1 }' "$f")
  W_P50=$(awk '/p50_ms/ { for (i = 1; i < NF; i++) if ($i == "p50_ms") printf "%.2f", $(i + 1) }' "$f" | head -c 20)
  W_P99=$(awk '/p99_ms/ { for (i = 1; i < NF; i++) if ($i == "p99_ms") printf "%.2f", $(i + 1) }' "$f" | head -c 20)
  W_NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
  W_2XX=$(awk '$1 == "responses_2xx" { print $2 }' "$f")
  W_SOCKERR=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")
  W_RPS=${W_RPS:-0} W_TOTAL=${W_TOTAL:-0} W_NON2XX=${W_NON2XX:-0} W_SOCKERR=${W_SOCKERR:-0} W_2XX=${W_2XX:-0}
  W_P50=${W_P50:-?} W_P99=${W_P99:-?}
  if [ "$W_TOTAL" = 0 ]; then
    tail -n 20 "$f" >&2
    b_die "wrk made no request (output: $f)"
  fi
}

# b_wrk_start OUT LUA SECONDS URL [VAR=VALUE...]: wrk in the background (pid in B_PID), on BODY.
b_wrk_start() {
  local out=$1 lua=$2 secs=$3 url=$4
  shift 4
  b_start "$out" env -u CLOSE -u CONNECTION_CLOSE BODY_FILE="$B_WORK/body.json" SECRET="$B_SECRET" "$@" \
    wrk -t"$B_WRK_THREADS" -c"$B_CONNECTIONS" -d"${secs}s" -s "$lua" "$url"
}

# b_forget PID: a process that ended and was reaped no longer needs stopping.
b_forget() {
  local i keep=()
  for i in "${B_PIDS[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
  B_PIDS=("${keep[@]}")
}

# b_data_note DATA_DIR: "data dir N MiB on disk", while the receiver runs (du of --data-dir).
b_data_note() {
  echo "data dir $(b_du_mib "$1") MiB on disk"
}
b_du_mib() {
  local m
  m=$(du -sm "$1" 2>/dev/null | cut -f1)
  echo "${m:-?}"
}

# b_sink_wait FILE TARGET T_END_NS TIMEOUT_MS: polls FILE's line count (incrementally, every 5 ms)
# until it reaches TARGET or TIMEOUT_MS after T_END_NS (date +%s%N, when the load stopped). Prints
# "LINES DISTINCT MS": lines then, distinct record ids among them (a record starts with its id)
# and the milliseconds from T_END_NS to the look that saw TARGET (TIMEOUT_MS when none did).
b_sink_wait() { "$B_SINKWAIT" "$@"; }
