#!/usr/bin/env bash
# Benchmarks (not tests), side by side in one run on this machine, all on loopback. Prints first
# the unique-body table (every request a new event, wrk -t2 -c32: keep-alive, Connection: close,
# --durability power) in markdown with the goal ratios and the delivery check, then the same-body
# table (retry cache only), then the script-sink, http-sink, verification and tdhook send table.
# bench/README.md says what each row measures. Builds nothing of the project: it runs the binaries
# of BUILD_DIR (bench/rawfloor.cpp, the floor, it compiles itself).
#
#   bench/run.sh [BUILD_DIR] [SECONDS]         or   BUILD_DIR=build SECONDS=10 bench/run.sh
#   SCENARIOS=unique bench/run.sh              the unique-body table only
#   SCENARIOS=inspect bench/run.sh             the inspector's cost: tdhook without and with
#                                              --inspect, alternated INSPECT_ROUNDS (4) times
#   SCENARIOS=tls bench/run.sh                 HTTPS: tdhook plain and tdhook --tls-cert, unique
#                                              bodies on keep-alive connections (not in "unique")
#   SCENARIOS=http bench/run.sh                http: and forward: sinks delivering to
#                                              bench/sinkapp.cpp, and that app alone under wrk
#                                              (70-85 s at SECONDS=10; not in the default list)
#
# Environment (defaults): BUILD_DIR (./build of the project), SECONDS (10, per server run),
# CONNECTIONS (32), WRK_THREADS (2), SCENARIOS ("unique same script verify send"; unique = "ka
# close power", same = "same-ka same-close"; 1..5 as before: 1 = "ka same-ka", 2 = "close
# same-close", 3 script, 4 verify, 5 send), SINK_WAIT_MS (1000: how long after wrk ends every 2xx
# must be in tdhook's file sink), DELIVERY_EVENTS (2000 x SECONDS), DELIVERY_WAIT (2 x SECONDS,
# at least 10), EXEC_CONCURRENCY ("8 1 32": one exec row each), HTTP_EVENTS (2000 x SECONDS: wrk
# stops at that many for the http rows), HTTP_WAIT (120: how long after wrk ends every event must
# be in the app's file), HTTP_CONCURRENCY ("8 32": one http: row each, forward: at the first),
# SEND_COUNT (20000), KEEP=1 keeps the scratch folder, TDHOOK_BENCH_DIR (/tmp/tdhook-bench:
# node_modules, rawfloor, sinkwait and sinkapp, kept between runs).
# Installs what it needs: wrk and webhook (scripts/install-deps), express and jsonwebtoken (npm
# install of bench/package.json, outside the project). Exit status 1 when an event answered 2xx
# is missing from tdhook's sink (DELIVERY SHORT; for the http rows also one stored and missing
# from the app's file, or there twice), 2 on an error.
set -euo pipefail
# bash counts its own SECONDS from the start: only a value from the environment is the user's.
secs_env=$(printenv SECONDS || true)
started=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

build_arg=${1:-${BUILD_DIR:-$root/build}}
B_BUILD=$(cd "$build_arg" 2>/dev/null && pwd) || b_die "no build folder $build_arg (bench/run.sh BUILD_DIR)"
secs=${2:-${secs_env:-10}}
[[ $secs =~ ^[1-9][0-9]*$ ]] || b_die "SECONDS must be a whole number of seconds, not '$secs'"
B_CONNECTIONS=${CONNECTIONS:-32}
B_WRK_THREADS=${WRK_THREADS:-2}
sink_wait_ms=${SINK_WAIT_MS:-1000}
delivery_events=${DELIVERY_EVENTS:-$((2000 * secs))}
delivery_wait=${DELIVERY_WAIT:-$((2 * secs > 10 ? 2 * secs : 10))}
http_events=${HTTP_EVENTS:-$((2000 * secs))}
http_wait=${HTTP_WAIT:-120}
exec_concurrency=${EXEC_CONCURRENCY:-8 1 $B_CONNECTIONS}
http_concurrency=${HTTP_CONCURRENCY:-8 32}
send_count=${SEND_COUNT:-20000}
scenarios=${SCENARIOS:-unique same script verify send}

# The scenarios asked for, always run (and printed) in this order: unique bodies first.
order="ka close power tls inspect same-ka same-close script http verify send"
declare -A want=()
for s in $scenarios; do
  case $s in
    unique) want[ka]=1 want[close]=1 want[power]=1 ;;
    inspect) want[inspect]=1 ;;
    tls) want[tls]=1 ;;
    http) want[http]=1 ;;
    same) want[same-ka]=1 want[same-close]=1 ;;
    1) want[ka]=1 want[same-ka]=1 ;;
    2) want[close]=1 want[same-close]=1 ;;
    3) want[script]=1 ;;
    4) want[verify]=1 ;;
    5) want[send]=1 ;;
    ka | close | power | same-ka | same-close | script | verify | send | inspect) want[$s]=1 ;;
    *) b_die "unknown scenario '$s' in SCENARIOS (unique same script verify send, or ka close power tls inspect http same-ka same-close, or 1..5)" ;;
  esac
done
run_list=""
for s in $order; do [ -z "${want[$s]:-}" ] || run_list+="$s "; done
run_list=${run_list% }

needs=(receiver/tdhook-receiver)
[ -z "${want[verify]:-}" ] || needs+=(bench/verify_bench)
[ -z "${want[send]:-}" ] || needs+=(tools/tdhook)
for f in "${needs[@]}"; do
  [ -x "$B_BUILD/$f" ] || b_die "no $B_BUILD/$f: build the project first (scripts/build, or cmake --build $B_BUILD)"
done
command_line="cd $PWD && BUILD_DIR=$B_BUILD SECONDS=$secs CONNECTIONS=$B_CONNECTIONS WRK_THREADS=$B_WRK_THREADS"
command_line+=" SINK_WAIT_MS=$sink_wait_ms SCENARIOS='$run_list'"
[ -z "${want[script]:-}${want[http]:-}" ] || command_line+=" DELIVERY_EVENTS=$delivery_events"
[ -z "${want[script]:-}" ] || command_line+=" DELIVERY_WAIT=$delivery_wait EXEC_CONCURRENCY='$exec_concurrency'"
[ -z "${want[http]:-}" ] || command_line+=" HTTP_EVENTS=$http_events HTTP_WAIT=$http_wait HTTP_CONCURRENCY='$http_concurrency'"
[ -z "${want[send]:-}" ] || command_line+=" SEND_COUNT=$send_count"
command_line+=" $0"

b_setup "$root"
B_WORK=$(mktemp -d /tmp/tdhook-bench-run.XXXXXX)
cleanup() {
  b_stop_all
  if [ "${KEEP:-0}" = 1 ]; then b_log "kept $B_WORK"; else rm -rf "$B_WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "$B_SECRET" >"$B_WORK/secret"
machine=$(b_machine)
b_log "$machine"
b_log "scratch $B_WORK, ${secs}s per server run, scenarios: $run_list"

UNIQUE_ROWS=() SAME_ROWS=() OTHER_ROWS=() FAILURES=() DELIVERY_LINES=()
declare -A RPS=() RATE=() P99=()
run_no=0
# row TABLE CELLS...: a markdown row into UNIQUE_ROWS, SAME_ROWS or OTHER_ROWS.
row() {
  local t=$1 r="|" c
  shift
  for c in "$@"; do r+=" $c |"; done
  case $t in
    unique) UNIQUE_ROWS+=("$r") ;;
    same) SAME_ROWS+=("$r") ;;
    *) OTHER_ROWS+=("$r") ;;
  esac
}
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0 && a != "") printf "%.*f", d, a / b; else printf "n/a" }'; }
# goal VALUE OP LIMIT: "met" or "NOT MET" (OP >= or <=).
goal() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { if (v == "n/a" || v == "?" || v == "") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print (ok ? "met" : "NOT MET") }'
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
new_dir() {
  run_no=$((run_no + 1))
  R_DIR=$B_WORK/$(printf '%02d' "$run_no")-$1
  mkdir -p "$R_DIR"
}
non2xx_cell() { # the wrk figures; socket errors (timeouts, resets) beside the non-2xx
  if [ "$W_SOCKERR" != 0 ]; then echo "$W_NON2XX (+$W_SOCKERR socket errors)"; else echo "$W_NON2XX"; fi
}
# drop_big DIR: the sink files and data directory of a finished run (GBs at 10 s), unless KEEP=1.
drop_big() { [ "${KEEP:-0}" = 1 ] || rm -rf "$1/data" "$1/out.ndjson"; }

# b_wrk_start, then wait; with STOP_AT, wrk gets SIGINT once the receiver on PORT has stored that
# many events (wrk then prints its figures for the time it ran), looked at every W_POLL (0.2) s.
# W_END_NS: when wrk ended.
wrk_run() {
  local out=$1 lua=$2 port=$3 stop_at=$4
  shift 4
  b_wrk_start "$out" "$lua" "$secs" "${W_SCHEME:-http}://127.0.0.1:$port/hooks/tiledesk" "$@"
  local wpid=$B_PID
  if [ "$stop_at" -gt 0 ]; then
    while kill -0 "$wpid" 2>/dev/null; do
      if [ "$(b_metric "$port" tdhook_events_stored_total)" -ge "$stop_at" ]; then
        kill -INT "$wpid" 2>/dev/null || true
        break
      fi
      sleep "${W_POLL:-0.2}"
    done
  fi
  wait "$wpid" || true
  W_END_NS=$(date +%s%N)
  b_forget "$wpid"
  b_parse_wrk "$out"
}

# wait_delivery PORT OUT T0 [WAIT]: waits until the receiver has delivered every event it stored
# (or WAIT seconds after the last answer, by default DELIVERY_WAIT), counts the lines in OUT and
# sets D_RATE (distinct events appended per second, from the first request to the last line),
# D_DISTINCT (those distinct events) and D_NOTE. (Scenarios script and http.)
wait_delivery() {
  local port=$1 out=$2 t0=$3 wait=${4:-$delivery_wait} t_sent stored delivered deadline lines distinct t_last
  t_sent=$(now)
  stored=$(b_metric "$port" tdhook_events_stored_total)
  deadline=$(($(date +%s) + wait))
  while :; do
    delivered=$(b_delivered "$port")
    [ "$delivered" -ge "$stored" ] && break
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.1
  done
  lines=0 distinct=0
  if [ -f "$out" ]; then
    lines=$(wc -l <"$out")
    # A record starts with its delivery id ({"id":"<uuid>",…): an event delivered twice shows.
    distinct=$(head -n "$lines" "$out" | cut -c1-48 | sort -u | wc -l)
  fi
  if [ "$delivered" -ge "$stored" ] && [ "$lines" -gt 0 ]; then
    t_last=$(stat -c %.9Y "$out")
    local lag
    lag=$(elapsed "$t_sent" "$t_last")
    if [[ $lag == -* ]]; then
      D_NOTE="all $stored stored events delivered as they came"
    else
      D_NOTE="all $stored stored events delivered, the last ${lag} s after the last answer"
    fi
  else
    t_last=$(now)
    D_NOTE="$distinct of $stored stored events delivered when the wait ended, ${wait} s after the last answer (a backlog left)"
  fi
  if [ "$lines" != "$distinct" ]; then
    D_NOTE+="; DUPLICATES: $lines lines for $distinct distinct delivery ids"
  elif [ "$delivered" -ge "$stored" ] && [ "$distinct" != "$stored" ]; then
    D_NOTE+="; MISSING: $distinct lines for $stored events"
  fi
  D_DISTINCT=$distinct
  D_RATE=$(awk -v n="$distinct" -v a="$t0" -v b="$t_last" 'BEGIN { printf "%.0f", (b > a ? n / (b - a) : 0) }')
}

# One HTTP server of the unique or same-body tables, file sink, wrk for SECONDS.
# run_http TABLE KEY LABEL SERVER LUA [VAR=VALUE for wrk...]
run_http() {
  local table=$1 key=$2 label=$3 server=$4 lua=$5
  shift 5
  local port pid log note="" lines distinct ms rss
  new_dir "$key-${server//[^a-z-]/}"
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "$label: $server on port $port"
  case $server in
    raw) b_start "$log" env -u APPEND -u SYNC "$B_RAWFLOOR" "$port" ;;
    append) b_start "$log" env -u SYNC APPEND="$R_DIR/out.ndjson" "$B_RAWFLOOR" "$port" ;;
    append-sync) b_start "$log" env APPEND="$R_DIR/out.ndjson" SYNC=1 "$B_RAWFLOOR" "$port" ;;
    tdhook) b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson" ;;
    "tdhook (power)") b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson" --durability power ;;
    "tdhook (inspect)") b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson" --inspect 127.0.0.1:0 ;;
    "tdhook (tls)")
      # A self-signed EC P-256 certificate (wrk does not check it); TLS 1.3 is what wrk's
      # OpenSSL negotiates.
      [ -f "$B_WORK/tls.key" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 2 -subj /CN=127.0.0.1 -keyout "$B_WORK/tls.key" -out "$B_WORK/tls.pem" 2>/dev/null
      b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson" --tls-cert "$B_WORK/tls.pem" --tls-key "$B_WORK/tls.key"
      W_SCHEME=https
      ;;
    express) b_start "$log" env NODE_PATH="$B_MODS" node "$B_BENCH/express-receiver.js" "$port" "$B_SECRET" "$R_DIR/out.ndjson" ;;
    webhook)
      sed "s/@SECRET@/$B_SECRET/" "$B_BENCH/webhook-hooks.json.tmpl" >"$R_DIR/hooks.json"
      b_start "$log" webhook -hooks "$R_DIR/hooks.json" -ip 127.0.0.1 -port "$port"
      ;;
    *) b_die "unknown server $server" ;;
  esac
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  local follow=0 swfd swpid
  if [[ $server == tdhook* ]] && [ "$table" = unique ]; then
    # The delivery check follows the sink file during the load (a look every 200 ms), so that
    # what it times after wrk ends is only the count of the last lines.
    follow=1
    mkfifo "$R_DIR/sinkwait.fifo"
    "$B_SINKWAIT" "$R_DIR/out.ndjson" <"$R_DIR/sinkwait.fifo" >"$R_DIR/sinkwait.out" &
    swpid=$!
    exec {swfd}>"$R_DIR/sinkwait.fifo"
  fi
  wrk_run "$R_DIR/wrk.out" "$lua" "$port" 0 "$@"
  W_SCHEME=http
  if [ "$follow" = 1 ]; then
    echo "$W_2XX $W_END_NS $sink_wait_ms" >&"$swfd"
    exec {swfd}>&-
    wait "$swpid" || true
  fi
  if [[ $server == tdhook* ]]; then
    if [ "$table" = unique ]; then
      # Every event answered 2xx must be in the file sink within SINK_WAIT_MS after the load stops.
      read -r lines distinct ms <"$R_DIR/sinkwait.out" || true
      lines=${lines:-0} distinct=${distinct:-0} ms=${ms:-?}
      if [ "$lines" -ge "$W_2XX" ] && [ "$W_2XX" -gt 0 ] && [ "$ms" -le "$sink_wait_ms" ]; then
        note="delivered $lines of $W_2XX 2xx within $ms ms"
      else
        note="DELIVERY SHORT: delivered $lines of $W_2XX 2xx within $ms ms"
        FAILURES+=("$label, $server: $note (log: $log)")
        b_log "$label, $server: $note"
      fi
      [ "$lines" = "$distinct" ] || {
        note+="; DUPLICATES: $lines lines, $distinct distinct record ids"
        FAILURES+=("$label, $server: $lines lines in the sink for $distinct distinct record ids")
      }
      DELIVERY_LINES+=("$label, $server: $note")
    else
      read -r lines distinct ms < <(b_sink_wait "$R_DIR/out.ndjson" 1 "$W_END_NS" "$sink_wait_ms") || true
      distinct=${distinct:-0}
      note="$distinct event(s) in the sink, the other 2xx answered as duplicates"
    fi
    if [ "$W_NON2XX" != 0 ] || [ "$W_SOCKERR" != 0 ]; then note="NON-2XX NOT 0 (see $log); $note"; fi
    note+="; $(b_data_note "$R_DIR/data")"
  fi
  rss=$(b_rss "$pid")
  RPS[$key/$server]=$W_RPS
  P99[$key/$server]=$W_P99
  row "$table" "$label" "$server" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" "$rss" "$note"
  b_stop "$pid"
  drop_big "$R_DIR"
}

print_table() { # ROWS...
  echo "| scenario | server | req/s | p50 ms | p99 ms | non-2xx | RSS / HWM MiB | note |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "$@"
}

# The unique-body table and its ratio lines, printed as soon as those runs are done.
print_unique() {
  local k=ka
  echo "Unique bodies (every request a new event, bench/post-unique.lua), wrk -t$B_WRK_THREADS -c$B_CONNECTIONS, ${secs}s per server, $body_bytes-byte request.create as Tiledesk sends it:"
  echo
  print_table "${UNIQUE_ROWS[@]}"
  echo
  local a e w p
  for k in ka close; do
    [ -n "${want[$k]:-}" ] || continue
    a=$(ratio "${RPS[$k/tdhook]:-}" "${RPS[$k/append]:-}")
    e=$(ratio "${RPS[$k/tdhook]:-}" "${RPS[$k/express]:-}")
    w=$(ratio "${RPS[$k/tdhook]:-}" "${RPS[$k/webhook]:-}")
    p=${P99[$k/tdhook]:-?}
    if [ $k = ka ]; then
      echo "- keep-alive: tdhook/raw $(ratio "${RPS[$k/tdhook]:-}" "${RPS[$k/raw]:-}"), tdhook/append $a (goal >= 0.5: $(goal "$a" ">=" 0.5)), tdhook/express $e (goal >= 5: $(goal "$e" ">=" 5)), tdhook/webhook $w, tdhook p99 $p ms (goal <= 5 ms: $(goal "$p" "<=" 5))"
    else
      echo "- Connection: close: tdhook/raw $(ratio "${RPS[$k/tdhook]:-}" "${RPS[$k/raw]:-}"), tdhook/append $a (goal >= 0.8: $(goal "$a" ">=" 0.8)), tdhook/express $e, tdhook/webhook $w, tdhook p99 $p ms (goal <= 10 ms: $(goal "$p" "<=" 10))"
    fi
  done
  if [ -n "${want[inspect]:-}" ]; then
    local r ratios=()
    for ((r = 1; r <= ${INSPECT_ROUNDS:-4}; r++)); do
      ratios+=("$(ratio "${RPS[inspect$r/tdhook (inspect)]:-}" "${RPS[inspect$r/tdhook]:-}")")
    done
    local median
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    echo "- inspector: tdhook --inspect / tdhook per round ${ratios[*]}, median $median (goal >= 0.95: $(goal "$median" ">=" 0.95))"
  fi
  if [ -n "${want[tls]:-}" ]; then
    echo "- HTTPS, keep-alive: tdhook(tls)/tdhook $(ratio "${RPS[tls/tdhook (tls)]:-}" "${RPS[tls/tdhook]:-}"), tdhook(tls) p99 ${P99[tls/tdhook (tls)]:-?} ms, tdhook p99 ${P99[tls/tdhook]:-?} ms (wrk's connections are opened once: the handshakes are not in the figures)"
  fi
  if [ -n "${want[power]:-}" ]; then
    echo "- --durability power, keep-alive: tdhook(power)/append-sync $(ratio "${RPS[power/tdhook (power)]:-}" "${RPS[power/append-sync]:-}"), tdhook(power) p99 ${P99[power/tdhook (power)]:-?} ms, append-sync p99 ${P99[power/append-sync]:-?} ms"
  fi
  local d
  for d in "${DELIVERY_LINES[@]}"; do echo "- delivery, $d (every 2xx in the file sink within $sink_wait_ms ms after wrk ended)"; done
  echo
  echo "raw = bench/rawfloor.cpp (epoll per core: reads the request, compares the secret header, answers 200); append = the same, one write() of the body per request before answering; append-sync = one writev of every request read in an event-loop wake-up, then one fdatasync, then the answers (group commit); tdhook = tdhook-receiver --sink file:… (default options; --durability power in the power row); express = bench/express-receiver.js (verifies, appends); webhook = adnanh/webhook with bench/webhook-hooks.json.tmpl (/bin/true in the background, after checking x-hook-secret only). RSS / HWM: VmRSS / VmHWM from /proc/PID/status after the run."
}

# Scenario 3: tdhook-receiver with a script sink; what counts is delivery (lines the script
# appended per second), wrk stopped once DELIVERY_EVENTS are stored. The http scenario too: a sink
# with @APP@ in it (http://@APP@/, forward:http://@APP@/) gets bench/sinkapp.cpp started first on
# a port of its own (@APP@ = 127.0.0.1:PORT; @APP_QUICKACK@: the app with QUICKACK=1, a fast row:
# wrk stops at DELIVERY_EVENTS as for the script rows), appending to @OUT@, and wrk stops at
# HTTP_EVENTS, the wait HTTP_WAIT; there an event answered 2xx or stored and not in the file, or
# there twice, fails the run (FAILURES).
run_script_sink() { # KEY LABEL NAME SLUG SINK (@OUT@ = the file the script appends to) [OPTIONS]
  local key=$1 label=$2 name=$3 slug=$4 sink=$5
  shift 5
  local port pid log t0 app_pid="" app_port events=$delivery_events wait=$delivery_wait
  new_dir "$slug"
  sink=${sink//@OUT@/$R_DIR/out.ndjson}
  if [[ $sink =~ @APP(_QUICKACK)?@ ]]; then
    local at=${BASH_REMATCH[0]} quickack=0
    [ -z "${BASH_REMATCH[1]}" ] || quickack=1
    events=$http_events wait=$http_wait
    app_port=$(b_free_port)
    b_start "$R_DIR/sinkapp.log" env QUICKACK=$quickack "$B_SINKAPP" "$app_port" "$R_DIR/out.ndjson"
    app_pid=$B_PID
    b_wait_port "$app_port" "$app_pid" "$R_DIR/sinkapp.log"
    sink=${sink//$at/127.0.0.1:$app_port}
  fi
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "$label: tdhook-receiver --sink ${sink%% *} $* on port $port"
  b_receiver "$log" "$port" "$R_DIR/data" "$sink" "$@"
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  t0=$(now)
  # The http rows' target is small (a sink can be slow): looked at more often, so that wrk
  # overshoots it less.
  if [ -n "$app_pid" ]; then W_POLL=0.05; else W_POLL=0.2; fi
  wrk_run "$R_DIR/wrk.out" "$here/post-unique.lua" "$port" "$events"
  wait_delivery "$port" "$R_DIR/out.ndjson" "$t0" "$wait"
  RATE[$key/$name]=$D_RATE
  local note="non-2xx 0; $D_NOTE"
  if [ "$W_NON2XX" != 0 ] || [ "$W_SOCKERR" != 0 ]; then note="NON-2XX NOT 0 (see $log); $D_NOTE"; fi
  if [ -n "$app_pid" ]; then
    # Every event answered 2xx (and every one stored) in the app's file, once, by the end of the
    # wait: wait_delivery's note says MISSING, DUPLICATES or a backlog otherwise.
    if [ "$D_DISTINCT" -lt "$W_2XX" ] || [[ $D_NOTE == *MISSING* || $D_NOTE == *DUPLICATES* || $D_NOTE == *backlog* ]]; then
      note="DELIVERY SHORT: $D_DISTINCT distinct events in the app's file for $W_2XX 2xx; $note"
      FAILURES+=("$label, $name: $D_DISTINCT distinct events in the app's file for $W_2XX 2xx answers; $D_NOTE (log: $log)")
      b_log "$label, $name: DELIVERY SHORT: $D_NOTE"
    fi
    note+="; CPU s: tdhook $(b_cpu_s "$pid") ($(b_threads "$pid") threads), sinkapp $(b_cpu_s "$app_pid"), over $(elapsed "$t0" "$(now)") s"
  fi
  note+="; $(b_data_note "$R_DIR/data")"
  row other "$label" "$name" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" "$D_RATE" "$(b_rss "$pid")" "@RATIO:$key/$name@" "$note"
  b_stop "$pid"
  [ -z "$app_pid" ] || b_stop "$app_pid"
  drop_big "$R_DIR"
}

# The http scenario's ceiling: bench/sinkapp.cpp alone, wrk with unique bodies straight at it for
# SECONDS; every 2xx must be a line of its file.
run_sinkapp_alone() { # KEY LABEL
  local key=$1 label=$2 port pid log lines note
  new_dir sinkapp
  port=$(b_free_port)
  log=$R_DIR/sinkapp.log
  b_log "$label: bench/sinkapp alone on port $port"
  b_start "$log" "$B_SINKAPP" "$port" "$R_DIR/out.ndjson"
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  wrk_run "$R_DIR/wrk.out" "$here/post-unique.lua" "$port" 0
  lines=0
  [ -f "$R_DIR/out.ndjson" ] && lines=$(wc -l <"$R_DIR/out.ndjson")
  RPS[$key/app]=$W_RPS
  note="$lines lines for $W_2XX 2xx; CPU s: sinkapp $(b_cpu_s "$pid") over ${secs} s"
  if [ "$lines" -lt "$W_2XX" ] || [ "$W_2XX" = 0 ]; then
    note="SHORT: $note"
    FAILURES+=("$label, bench/sinkapp alone: $lines lines in its file for $W_2XX 2xx answers (log: $log)")
  fi
  if [ "$W_NON2XX" != 0 ] || [ "$W_SOCKERR" != 0 ]; then note="NON-2XX NOT 0; $note"; fi
  row other "$label" "bench/sinkapp alone (wrk -t$B_WRK_THREADS -c$B_CONNECTIONS at it)" "$W_RPS" "$W_P50" "$W_P99" \
    "$(non2xx_cell)" — "$(b_rss "$pid")" "ceiling of the rows below" "$note"
  b_stop "$pid"
  drop_big "$R_DIR"
}

run_webhook_script() {
  local key=$1 label=$2 port pid log t0 lines t_last
  new_dir webhook-script
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "$label: adnanh/webhook running append-record.sh per request on port $port"
  sed -e "s#@SECRET@#$B_SECRET#" -e "s#@SCRIPT@#$here/append-record.sh#" -e "s#@OUT@#$R_DIR/out.ndjson#" \
    -e "s#@DIR@#$R_DIR#" "$here/webhook-script-hooks.json.tmpl" >"$R_DIR/hooks.json"
  b_start "$log" webhook -hooks "$R_DIR/hooks.json" -ip 127.0.0.1 -port "$port"
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  t0=$(now)
  wrk_run "$R_DIR/wrk.out" "$here/post-unique.lua" "$port" 0
  lines=0
  [ -f "$R_DIR/out.ndjson" ] && lines=$(wc -l <"$R_DIR/out.ndjson")
  t_last=$(stat -c %.9Y "$R_DIR/out.ndjson" 2>/dev/null || now)
  RPS[$key/webhook]=$W_RPS
  RATE[$key/webhook]=$(awk -v n="$lines" -v a="$t0" -v b="$t_last" 'BEGIN { printf "%.0f", (b > a ? n / (b - a) : 0) }')
  row other "$label" "webhook (script per request, synchronous)" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" \
    "${RATE[$key/webhook]}" "$(b_rss "$pid")" "—" "$lines lines for $W_TOTAL answered requests"
  b_stop "$pid"
  drop_big "$R_DIR"
}


body_bytes="?"
unique_printed=0
for s in $run_list; do
  case $s in
    same-ka | same-close | script | http | verify | send)
      if [ "$unique_printed" = 0 ] && [ ${#UNIQUE_ROWS[@]} -gt 0 ]; then
        print_unique
        echo
        unique_printed=1
      fi
      ;;
  esac
  case $s in
    ka)
      for srv in raw append tdhook express webhook; do
        run_http unique ka "keep-alive" "$srv" "$here/post-unique.lua"
        body_bytes=$(wc -c <"$B_WORK/body.json")
      done
      ;;
    close)
      for srv in raw append tdhook express webhook; do
        run_http unique close "Connection: close" "$srv" "$here/post-unique.lua" CONNECTION_CLOSE=1
        body_bytes=$(wc -c <"$B_WORK/body.json")
      done
      ;;
    power)
      for srv in append-sync "tdhook (power)"; do
        run_http unique power "keep-alive, power-loss durability" "$srv" "$here/post-unique.lua"
        body_bytes=$(wc -c <"$B_WORK/body.json")
      done
      ;;
    tls)
      for srv in tdhook "tdhook (tls)"; do
        run_http unique tls "keep-alive, plain vs HTTPS" "$srv" "$here/post-unique.lua"
        body_bytes=$(wc -c <"$B_WORK/body.json")
      done
      ;;
    inspect)
      # The inspector's cost on the hot path: tdhook without and with --inspect, alternated
      # INSPECT_ROUNDS times (the machine's noise moves both alike within a round), the order
      # turned each round.
      for ((round = 1; round <= ${INSPECT_ROUNDS:-4}; round++)); do
        pair=(tdhook "tdhook (inspect)")
        ((round % 2 == 0)) && pair=("tdhook (inspect)" tdhook)
        for srv in "${pair[@]}"; do
          # Each run starts with the last one's 2 GB written back: the kernel's writeback of a
          # run's data otherwise slows the next run by up to a quarter, whichever it is.
          sync
          run_http unique "inspect$round" "keep-alive, inspector off/on, round $round" "$srv" "$here/post-unique.lua"
          body_bytes=$(wc -c <"$B_WORK/body.json")
        done
      done
      ;;
    same-ka)
      for srv in raw tdhook express webhook; do
        run_http same same-ka "SAME BODY, keep-alive" "$srv" "$here/post-same.lua"
      done
      ;;
    same-close)
      for srv in raw tdhook express webhook; do
        run_http same same-close "SAME BODY, Connection: close" "$srv" "$here/post-same.lua" CONNECTION_CLOSE=1
      done
      ;;
    script)
      label="script sink, keep-alive, unique bodies"
      for c in $exec_concurrency; do
        run_script_sink script "$label" "exec (--exec-concurrency $c)" "exec-$c" "exec:$here/append-record.sh @OUT@" \
          --exec-concurrency "$c"
      done
      run_script_sink script "$label" "exec-stream (python)" stream-py \
        "exec-stream:python3 $root/samples/scripts/stream-consumer.py @OUT@"
      run_script_sink script "$label" "exec-stream (bash)" stream-sh \
        "exec-stream:$root/samples/scripts/stream-consumer.sh @OUT@"
      run_webhook_script script "$label"
      ;;
    http)
      label="http sink, keep-alive, unique bodies"
      run_sinkapp_alone http "$label"
      first=1
      for c in $http_concurrency; do
        run_script_sink http "$label" "http (--http-concurrency $c)" "http-$c" "http://@APP@/" --http-concurrency "$c"
        if [ "$first" = 1 ]; then
          run_script_sink http "$label" "forward (--http-concurrency $c)" "forward-$c" "forward:http://@APP@/" \
            --http-concurrency "$c"
          first=0
        fi
      done
      # The same with an app that acknowledges at once (sinkapp QUICKACK=1): no different since the
      # sink's client sets TCP_NODELAY. Before, each request waited ~40 ms for the app's delayed
      # ACK (the client writes head and body apart), 180 deliveries/s at --http-concurrency 8.
      c=${http_concurrency%% *}
      run_script_sink http "$label" "http (--http-concurrency $c), app with TCP_QUICKACK" "http-$c-quickack" \
        "http://@APP_QUICKACK@/" --http-concurrency "$c"
      ;;
    verify)
      b_log "verification micro-benchmark"
      b_body "$B_WORK/body.json"
      vb=$("$B_BUILD/bench/verify_bench" "$B_WORK/body.json" "$B_SECRET" 400000) || b_die "verify_bench failed"
      nv=$(NODE_PATH=$B_MODS node "$B_BENCH/node-verify-bench.js" "$B_WORK/body.json" "$B_SECRET") ||
        b_die "node-verify-bench.js failed"
      v_t=$(awk '{ print $3 }' <<<"$vb")
      v_n=$(awk '{ print $3 }' <<<"$nv")
      RPS[verify/tdhook]=$v_t
      RPS[verify/node]=$v_n
      row other "verification, one core" "libtdhook (bench/verify_bench)" "$v_t" — — — — — \
        "verify tdhook/node $(ratio "$v_t" "$v_n")" "verifications/s, $(sed 's/.*(\(.*\))/\1/' <<<"$vb")"
      row other "verification, one core" "node JSON.parse + jsonwebtoken.verify" "$v_n" — — — — — — \
        "verifications/s, $(sed 's/.*(\(.*\))/\1/' <<<"$nv")"
      ;;
    send)
      for mode in close keep-alive; do
        new_dir "send-$mode"
        port=$(b_free_port)
        log=$R_DIR/server.log
        b_log "tdhook send --count $send_count --concurrency $B_CONNECTIONS ($mode) on port $port"
        b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson"
        pid=$B_PID
        b_wait_port "$port" "$pid" "$log"
        flags=()
        [ "$mode" = keep-alive ] && flags=(--keep-alive)
        "$B_BUILD/tools/tdhook" send --to "http://127.0.0.1:$port/hooks/tiledesk" --sample request.create \
          --secret-file "$B_WORK/secret" --count "$send_count" --concurrency "$B_CONNECTIONS" "${flags[@]}" \
          >"$R_DIR/send.out" 2>&1 || true
        so=$R_DIR/send.out
        s_rps=$(sed -n 's/.* \([0-9.]*\) req\/s.*/\1/p' "$so" | head -1)
        s_p50=$(sed -n 's/^latency: p50 \([0-9.]*\) ms.*/\1/p' "$so")
        s_p99=$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' "$so")
        s_ok=$(sed -n 's/.*200 x \([0-9]*\).*/\1/p' "$so")
        s_err=$(sed -n 's/^errors: \([0-9]*\).*/\1/p' "$so")
        [ -n "$s_rps" ] || {
          cat "$so" >&2
          b_die "tdhook send printed no figures"
        }
        s_non2xx=$((send_count - ${s_ok:-0}))
        row other "tdhook send, $mode" "tdhook-receiver (tdhook send --count $send_count --concurrency $B_CONNECTIONS)" \
          "$s_rps" "$s_p50" "$s_p99" "$s_non2xx" — "$(b_rss "$pid")" — \
          "$(grep -m1 '^status:' "$so"); transport errors ${s_err:-?}; $(b_data_note "$R_DIR/data")"
        b_stop "$pid"
        drop_big "$R_DIR"
      done
      ;;
  esac
done
[ "$unique_printed" = 1 ] || [ ${#UNIQUE_ROWS[@]} = 0 ] || print_unique

if [ ${#SAME_ROWS[@]} -gt 0 ]; then
  echo
  echo "SAME BODY (one body repeated, bench/post-same.lua: tdhook stores the first and answers the rest from its retry cache; not real traffic):"
  echo
  print_table "${SAME_ROWS[@]}"
  echo
  echo "- same body, keep-alive: tdhook/raw $(ratio "${RPS[same-ka/tdhook]:-}" "${RPS[same-ka/raw]:-}"), tdhook/express $(ratio "${RPS[same-ka/tdhook]:-}" "${RPS[same-ka/express]:-}"), tdhook/webhook $(ratio "${RPS[same-ka/tdhook]:-}" "${RPS[same-ka/webhook]:-}")"
  echo "- same body, Connection: close: tdhook/raw $(ratio "${RPS[same-close/tdhook]:-}" "${RPS[same-close/raw]:-}"), tdhook/express $(ratio "${RPS[same-close/tdhook]:-}" "${RPS[same-close/express]:-}"), tdhook/webhook $(ratio "${RPS[same-close/tdhook]:-}" "${RPS[same-close/webhook]:-}")"
fi

if [ ${#OTHER_ROWS[@]} -gt 0 ]; then
  echo
  echo "Script and HTTP sinks, verification, tdhook send:"
  echo
  echo "| scenario | server | req/s | p50 ms | p99 ms | non-2xx | delivered/s | RSS / HWM MiB | ratios | note |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for r in "${OTHER_ROWS[@]}"; do
    while [[ $r =~ @RATIO:([^@]*)@ ]]; do
      k=${BASH_REMATCH[1]}
      case $k in
        http/*)
          rc="sink/app $(ratio "${RATE[$k]}" "${RPS[http/app]:-}" 3) (delivered/s ÷ sinkapp alone req/s)"
          [ -z "${RATE[script/exec-stream (python)]:-}" ] ||
            rc+="; http/exec-stream $(ratio "${RATE[$k]}" "${RATE[script/exec-stream (python)]}") (÷ exec-stream (python) delivered/s)"
          ;;
        script/exec-stream*) rc="stream/webhook $(ratio "${RATE[$k]}" "${RPS[script/webhook]:-}") (delivered/s ÷ webhook req/s)" ;;
        script/exec*) rc="exec/webhook $(ratio "${RATE[$k]}" "${RPS[script/webhook]:-}") (delivered/s ÷ webhook req/s)" ;;
        *) rc="—" ;;
      esac
      r=${r/"@RATIO:$k@"/"$rc"}
    done
    echo "$r"
  done
  echo
  [ -z "${want[script]:-}" ] || echo "Script sinks: delivered/s = distinct events the script appended ÷ time from the first request to the last line; wrk stops once $delivery_events events are stored; exec runs append-record.sh per event (--exec-concurrency as shown); webhook runs the same script synchronously per request (include-command-output-in-response), the body in a file (pass-file-to-command)."
  [ -z "${want[http]:-}" ] || echo "HTTP sinks: delivered/s = distinct events bench/sinkapp.cpp appended to its file (one line per POST it answered 200; for forward: the line is {\"id\":\"<X-Tdhook-Delivery-Id>\",\"forwarded\":<Tiledesk's body>}) ÷ time from the first request to the last line; wrk stops once $http_events events are stored (looked at every 50 ms, so it overshoots: the note gives the count); http: POSTs the event record, forward: Tiledesk's original request, --http-concurrency kept-alive connections to the app; the sinkapp alone row is wrk (-c$B_CONNECTIONS) straight at the app, its req/s the ceiling the sink/app ratio divides by. An event answered 2xx or stored that is not in the app's file within HTTP_WAIT ($http_wait s) after wrk ended, or is there twice, fails the run."
fi

echo
echo "$machine (at the start); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; took $(($(date +%s) - started))s"
echo "command: $command_line"
if [ ${#FAILURES[@]} -gt 0 ]; then
  echo
  for f in "${FAILURES[@]}"; do echo "FAIL: $f"; done
  exit 1
fi
