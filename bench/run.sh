#!/usr/bin/env bash
# Benchmarks (not tests), side by side in one run on this machine, all on loopback; prints one
# markdown table, the machine line and the exact command. bench/README.md says what each row
# measures. Builds nothing of the project: it runs the binaries of BUILD_DIR.
#
#   bench/run.sh [BUILD_DIR] [SECONDS]         or   BUILD_DIR=build SECONDS=10 bench/run.sh
#
# Environment (defaults): BUILD_DIR (./build of the project), SECONDS (10, per server run),
# CONNECTIONS (32), WRK_THREADS (2), DELIVERY_EVENTS (2000 x SECONDS), DELIVERY_WAIT
# (2 x SECONDS, at least 10), EXEC_CONCURRENCY ("8 1 32": one exec row each; 8 is the receiver's
# default, 1 in arrival order, 32 = CONNECTIONS, as many runs at once as webhook gets), SEND_COUNT (20000),
# SCENARIOS ("1 2 3 4 5"), KEEP=1 keeps the scratch folder, TDHOOK_SHARED (../shared),
# TDHOOK_BENCH_DIR (/tmp/tdhook-bench: node_modules and the floor, kept between runs).
# Installs what it needs: wrk and webhook (scripts/install-deps), express and jsonwebtoken (npm,
# outside the project). Needs ../shared beside the project (the peer baselines).
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
delivery_events=${DELIVERY_EVENTS:-$((2000 * secs))}
delivery_wait=${DELIVERY_WAIT:-$((2 * secs > 10 ? 2 * secs : 10))}
exec_concurrency=${EXEC_CONCURRENCY:-8 1 $B_CONNECTIONS}
send_count=${SEND_COUNT:-20000}
scenarios=${SCENARIOS:-1 2 3 4 5}
for f in receiver/tdhook-receiver tools/tdhook bench/verify_bench; do
  [ -x "$B_BUILD/$f" ] || b_die "no $B_BUILD/$f: build the project first (scripts/build, or cmake --build $B_BUILD)"
done
command_line="cd $PWD && BUILD_DIR=$B_BUILD SECONDS=$secs CONNECTIONS=$B_CONNECTIONS WRK_THREADS=$B_WRK_THREADS"
command_line+=" DELIVERY_EVENTS=$delivery_events DELIVERY_WAIT=$delivery_wait EXEC_CONCURRENCY='$exec_concurrency'"
command_line+=" SEND_COUNT=$send_count SCENARIOS='$scenarios' $0"

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
b_log "scratch $B_WORK, ${secs}s per server run"

ROWS=()
declare -A RPS=() RATE=()
run_no=0
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 | $9 | ${10} |"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a / b; else printf "n/a" }'; }
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

# b_wrk_start, then wait; with STOP_AT, wrk gets SIGINT once the receiver on PORT has stored that
# many events (wrk then prints its figures for the time it ran).
wrk_run() {
  local out=$1 lua=$2 port=$3 stop_at=$4
  shift 4
  b_wrk_start "$out" "$lua" "$secs" "http://127.0.0.1:$port/hooks/tiledesk" "$@"
  local wpid=$B_PID
  if [ "$stop_at" -gt 0 ]; then
    while kill -0 "$wpid" 2>/dev/null; do
      if [ "$(b_metric "$port" tdhook_events_stored_total)" -ge "$stop_at" ]; then
        kill -INT "$wpid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  wait "$wpid" || true
  b_forget "$wpid"
  b_parse_wrk "$out"
}

# wait_delivery PORT OUT T0: waits until the receiver has delivered every event it stored (or
# DELIVERY_WAIT after the last answer), counts the lines in OUT and sets D_RATE (distinct events
# appended per second, from the first request to the last line) and D_NOTE.
wait_delivery() {
  local port=$1 out=$2 t0=$3 t_sent stored delivered deadline lines distinct t_last
  t_sent=$(now)
  stored=$(b_metric "$port" tdhook_events_stored_total)
  deadline=$(($(date +%s) + delivery_wait))
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
    D_NOTE="$distinct of $stored stored events delivered when the wait ended, ${delivery_wait} s after the last answer (a backlog left)"
  fi
  if [ "$lines" != "$distinct" ]; then
    D_NOTE+="; DUPLICATES: $lines lines for $distinct distinct delivery ids"
  elif [ "$delivered" -ge "$stored" ] && [ "$distinct" != "$stored" ]; then
    D_NOTE+="; MISSING: $distinct lines for $stored events"
  fi
  D_RATE=$(awk -v n="$distinct" -v a="$t0" -v b="$t_last" 'BEGIN { printf "%.0f", (b > a ? n / (b - a) : 0) }')
  D_STORED=$stored
}

# Scenarios 1 and 2: one server, file sink, wrk for SECONDS.
run_http() {
  local key=$1 label=$2 server=$3 lua=$4 mode=$5
  shift 5
  local port pid log t0 delivered=— note=""
  new_dir "$server"
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "$label: $server on port $port"
  case $server in
    floor) b_start "$log" "$B_FLOOR" "$port" ;;
    tdhook) b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson" ;;
    express) b_start "$log" env NODE_PATH="$B_MODS" node "$B_SHARED/bench/express-receiver.js" "$port" "$B_SECRET" "$R_DIR/out.ndjson" ;;
    webhook)
      sed "s/@SECRET@/$B_SECRET/" "$B_SHARED/bench/webhook-hooks.json.tmpl" >"$R_DIR/hooks.json"
      b_start "$log" webhook -hooks "$R_DIR/hooks.json" -ip 127.0.0.1 -port "$port"
      ;;
  esac
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  t0=$(now)
  wrk_run "$R_DIR/wrk.out" "$lua" "$port" 0 "$@"
  if [ "$server" = tdhook ]; then
    wait_delivery "$port" "$R_DIR/out.ndjson" "$t0"
    if [ "$mode" = unique ]; then
      delivered=$D_RATE
      note=$D_NOTE
    else
      note="$D_STORED event(s) stored and delivered, the other 2xx answered as duplicates"
    fi
    if [ "$W_NON2XX" = 0 ] && [ "$W_SOCKERR" = 0 ]; then note="non-2xx 0; $note"; else note="NON-2XX NOT 0 (see $log); $note"; fi
    note+="; $(b_spool_note "$R_DIR/data")"
  fi
  RPS[$key/$server]=$W_RPS
  row "$label" "$server" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" "$delivered" "$(b_rss "$pid")" "@RATIO:$key/$server@" "$note"
  b_stop "$pid"
}

http_scenario() {
  local key=$1 label=$2 lua=$3 mode=$4
  shift 4
  local s
  for s in floor tdhook express webhook; do run_http "$key" "$label" "$s" "$lua" "$mode" "$@"; done
}

# Scenario 3: tdhook-receiver with a script sink; what counts is delivery (lines the script
# appended per second), wrk stopped once DELIVERY_EVENTS are stored.
run_script_sink() { # KEY LABEL NAME SLUG SINK (@OUT@ = the file the script appends to) [OPTIONS]
  local key=$1 label=$2 name=$3 slug=$4 sink=$5
  shift 5
  local port pid log t0
  new_dir "$slug"
  sink=${sink//@OUT@/$R_DIR/out.ndjson}
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "$label: tdhook-receiver --sink ${sink%% *} on port $port"
  b_receiver "$log" "$port" "$R_DIR/data" "$sink" "$@"
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  b_body "$B_WORK/body.json"
  t0=$(now)
  wrk_run "$R_DIR/wrk.out" "$here/post-unique.lua" "$port" "$delivery_events"
  wait_delivery "$port" "$R_DIR/out.ndjson" "$t0"
  RATE[$key/$name]=$D_RATE
  local note="non-2xx 0; $D_NOTE"
  if [ "$W_NON2XX" != 0 ] || [ "$W_SOCKERR" != 0 ]; then note="NON-2XX NOT 0 (see $log); $D_NOTE"; fi
  note+="; $(b_spool_note "$R_DIR/data")"
  row "$label" "$name" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" "$D_RATE" "$(b_rss "$pid")" "@RATIO:$key/$name@" "$note"
  b_stop "$pid"
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
  row "$label" "webhook (script per request, synchronous)" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell)" \
    "${RATE[$key/webhook]}" "$(b_rss "$pid")" "—" "$lines lines for $W_TOTAL answered requests"
  b_stop "$pid"
}

for s in $scenarios; do
  case $s in
    1)
      http_scenario ka-unique "1 keep-alive, file sink, unique bodies" "$here/post-unique.lua" unique
      http_scenario ka-same "1 keep-alive, file sink, same body" "$B_SHARED/bench/post.lua" same
      ;;
    2)
      http_scenario close-unique "2 Connection: close, file sink, unique bodies" "$here/post-unique.lua" unique CONNECTION_CLOSE=1
      http_scenario close-same "2 Connection: close, file sink, same body" "$B_SHARED/bench/post-close.lua" same
      ;;
    3)
      label="3 script sink, keep-alive, unique bodies"
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
    4)
      b_log "4 verification micro-benchmark"
      b_body "$B_WORK/body.json"
      vb=$("$B_BUILD/bench/verify_bench" "$B_WORK/body.json" "$B_SECRET" 400000) || b_die "verify_bench failed"
      nv=$(NODE_PATH=$B_MODS node "$B_SHARED/bench/node-verify-bench.js" "$B_WORK/body.json" "$B_SECRET") ||
        b_die "node-verify-bench.js failed"
      v_t=$(awk '{ print $3 }' <<<"$vb")
      v_n=$(awk '{ print $3 }' <<<"$nv")
      RPS[verify/tdhook]=$v_t
      RPS[verify/node]=$v_n
      row "4 verification, one core" "libtdhook (bench/verify_bench)" "$v_t" — — — — — "@RATIO:verify/tdhook@" \
        "verifications/s, $(sed 's/.*(\(.*\))/\1/' <<<"$vb")"
      row "4 verification, one core" "node JSON.parse + jsonwebtoken.verify" "$v_n" — — — — — — \
        "verifications/s, $(sed 's/.*(\(.*\))/\1/' <<<"$nv")"
      ;;
    5)
      for mode in close keep-alive; do
        new_dir "send-$mode"
        port=$(b_free_port)
        log=$R_DIR/server.log
        b_log "5 tdhook send --count $send_count --concurrency $B_CONNECTIONS ($mode) on port $port"
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
        row "5 tdhook send, $mode" "tdhook-receiver (tdhook send --count $send_count --concurrency $B_CONNECTIONS)" \
          "$s_rps" "$s_p50" "$s_p99" "$s_non2xx" — "$(b_rss "$pid")" — \
          "$(grep -m1 '^status:' "$so"); transport errors ${s_err:-?}; $(b_spool_note "$R_DIR/data")"
        b_stop "$pid"
      done
      ;;
    *) b_die "unknown scenario '$s' in SCENARIOS (1 to 5)" ;;
  esac
done

# The ratios the goals are stated in, now that every figure of the run is known.
ratio_cell() {
  local k=$1 scen=${1%/*} who=${1#*/}
  case $who in
    tdhook)
      if [ "$scen" = verify ]; then
        echo "verify tdhook/node $(ratio "${RPS[verify/tdhook]:-}" "${RPS[verify/node]:-}")"
      else
        echo "tdhook/floor $(ratio "${RPS[$k]}" "${RPS[$scen/floor]:-}"), tdhook/express $(ratio "${RPS[$k]}" "${RPS[$scen/express]:-}"), tdhook/webhook $(ratio "${RPS[$k]}" "${RPS[$scen/webhook]:-}")"
      fi
      ;;
    exec-stream*) echo "stream/webhook $(ratio "${RATE[$k]}" "${RPS[$scen/webhook]:-}") (delivered/s ÷ webhook req/s)" ;;
    exec*) echo "exec/webhook $(ratio "${RATE[$k]}" "${RPS[$scen/webhook]:-}") (delivered/s ÷ webhook req/s)" ;;
    *) echo "—" ;;
  esac
}

took=$(($(date +%s) - started))
echo
echo "$machine (at the start); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "command: $command_line"
echo "request.create sample as Tiledesk sends it ($(wc -c <"$B_WORK/body.json") bytes); wrk -t$B_WRK_THREADS -c$B_CONNECTIONS on the same machine; ${secs}s per server run; took ${took}s"
echo
echo "| scenario | server | req/s | p50 ms | p99 ms | non-2xx | delivered/s | RSS / HWM MiB | ratios | note |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do
  while [[ $r =~ @RATIO:([^@]*)@ ]]; do
    k=${BASH_REMATCH[1]}
    r=${r/"@RATIO:$k@"/"$(ratio_cell "$k")"}
  done
  echo "$r"
done
echo
echo "delivered/s: distinct events the sink's file or script appended, divided by the time from the first request to the last line (tdhook rows with unique bodies; webhook's script row counts its lines)."
echo "Scenario 3: wrk stops once $delivery_events events are stored; exec runs append-record.sh per event (--exec-concurrency as shown); webhook runs the same script synchronously per request (include-command-output-in-response), the body in a file (pass-file-to-command)."
echo "Scenarios 1-2: floor = bare tuned cpp-httplib (secret compare only); webhook runs its template (/bin/true, in the background, after checking x-hook-secret only); Express verifies and appends."
