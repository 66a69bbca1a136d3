#!/usr/bin/env bash
# The NATS JetStream store benchmark (not a test): one markdown table, side by side in one run on
# this machine, all on loopback, unique bodies (bench/post-unique.lua), keep-alive:
#   append              bench/rawfloor.cpp with APPEND (one write() of each body before its 200)
#   tdhook (embedded)   tdhook-receiver with its own event log (the default store)
#   tdhook nats R1      tdhook-receiver --store nats:// on one nats-server (--replicas 1)
#   2 x tdhook nats R3  two receivers on a three-node JetStream cluster (--replicas 3), sharing the
#                       file sink's consumer; two wrk processes, one per receiver, each with half
#                       the threads and connections; req/s summed, p50 and p99 the larger
# Each row ÷ the append floor; goal: R1 >= 0.3 of the append floor. After each tdhook row every
# 2xx must be in the file sink(s) within SINK_WAIT_MS. bench/README.md says more. Builds nothing
# of the project: it runs BUILD_DIR/receiver/tdhook-receiver (which must know --store).
#
#   bench/nats.sh [BUILD_DIR] [SECONDS]        or   BUILD_DIR=build SECONDS=10 bench/nats.sh
#
# Environment (defaults): BUILD_DIR (./build of the project), SECONDS (10, per row), CONNECTIONS
# (32), WRK_THREADS (2), SINK_WAIT_MS (5000), ROWS ("append embedded r1 r3": the rows to run),
# NATS_SERVER (nats-server from PATH, else /usr/sbin/nats-server, Debian's), KEEP=1 keeps the
# scratch folder (logs, wrk output, nats-server configurations), TDHOOK_BENCH_DIR
# (/tmp/tdhook-bench, as bench/run.sh). Exit status 1 when an event answered 2xx is missing from
# the sink (DELIVERY SHORT) or is there twice, 2 on an error.
set -euo pipefail
# bash counts its own SECONDS from the start: only a value from the environment is the user's.
secs_env=$(printenv SECONDS || true)
started=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

build_arg=${1:-${BUILD_DIR:-$root/build}}
B_BUILD=$(cd "$build_arg" 2>/dev/null && pwd) || b_die "no build folder $build_arg (bench/nats.sh BUILD_DIR)"
secs=${2:-${secs_env:-10}}
[[ $secs =~ ^[1-9][0-9]*$ ]] || b_die "SECONDS must be a whole number of seconds, not '$secs'"
B_CONNECTIONS=${CONNECTIONS:-32}
B_WRK_THREADS=${WRK_THREADS:-2}
[ "$B_CONNECTIONS" -ge 2 ] || b_die "CONNECTIONS must be at least 2 (the R3 row splits them)"
sink_wait_ms=${SINK_WAIT_MS:-5000}
rows=${ROWS:-append embedded r1 r3}
for r in $rows; do
  case $r in append | embedded | r1 | r3) ;; *) b_die "unknown row '$r' in ROWS (append embedded r1 r3)" ;; esac
done

receiver=$B_BUILD/receiver/tdhook-receiver
[ -x "$receiver" ] || b_die "no $receiver: build the project first (scripts/build, or cmake --build $B_BUILD)"
if [[ " $rows " == *" r1 "* || " $rows " == *" r3 "* ]]; then
  "$receiver" --help 2>&1 | grep -q -- '--store' || b_die "$receiver has no --store option (NATS store not built)"
  nats_server=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
  [ -x "$nats_server" ] || b_die "no nats-server (apt-get install nats-server, or NATS_SERVER=PATH)"
fi
command_line="cd $PWD && BUILD_DIR=$B_BUILD SECONDS=$secs CONNECTIONS=$B_CONNECTIONS WRK_THREADS=$B_WRK_THREADS"
command_line+=" SINK_WAIT_MS=$sink_wait_ms ROWS='$rows' $0"

b_setup "$root"
B_WORK=$(mktemp -d /tmp/tdhook-bench-nats.XXXXXX)
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
b_log "scratch $B_WORK, ${secs}s per row, rows: $rows"
[ -z "${nats_server:-}" ] || b_log "$("$nats_server" --version 2>&1) ($nats_server)"

ROWS_OUT=() FAILURES=() DELIVERY_LINES=()
declare -A RPS=() P99=()
run_no=0
row() { # CELLS...: one markdown row
  local r="|" c
  for c in "$@"; do r+=" $c |"; done
  ROWS_OUT+=("$r")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a / b; else printf "n/a" }'; }
# goal VALUE OP LIMIT: "met" or "NOT MET" (OP >= or <=).
goal() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { if (v == "n/a" || v == "?" || v == "") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print (ok ? "met" : "NOT MET") }'
}
max() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?") print b; else if (b == "?") print a; else print (a + 0 >= b + 0 ? a : b) }'; }
new_dir() {
  run_no=$((run_no + 1))
  R_DIR=$B_WORK/$(printf '%02d' "$run_no")-$1
  mkdir -p "$R_DIR"
}
non2xx_cell() { # NON2XX SOCKERR
  if [ "$2" != 0 ]; then echo "$1 (+$2 socket errors)"; else echo "$1"; fi
}
# The sink files and stores of a finished row (GBs at 10 s), unless KEEP=1.
drop_big() { [ "${KEEP:-0}" = 1 ] || find "$1" \( -name '*.ndjson' -o -name data -o -name store \) -prune -exec rm -rf {} +; }

# body_variant IN OUT K: IN with the 16th hex digit of the payload's first "_id" moved on by K,
# so that a second wrk process (post-unique.lua varies only the last 8 digits, by thread and
# count) sends events of its own, not duplicates of the first one's. The token covers the hook,
# not the payload: it still verifies.
body_variant() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
b = open(sys.argv[1]).read()
i = b.index('"_id":"') + 7 + 15
c = format((int(b[i], 16) + int(sys.argv[3])) % 16, "x")
open(sys.argv[2], "w").write(b[:i] + c + b[i + 1:])
EOF
}

# nats_start NAME CLIENT_PORT MONITOR_PORT [ROUTE_PORT OTHER_ROUTE_PORT...]: a nats-server with
# JetStream (store in the row's folder), as samples/nats/*.conf without authentication;
# clustered (cluster tdhook) when route ports are given. Pid in B_PID (stopped on exit).
nats_start() {
  local name=$1 cport=$2 mport=$3 conf=$R_DIR/$1.conf p
  {
    echo "server_name: $name"
    echo "listen: 127.0.0.1:$cport"
    echo "http: 127.0.0.1:$mport"
    echo "max_payload: 8MB"
    echo "jetstream { store_dir: \"$R_DIR/store/$name\" }"
    if [ $# -gt 3 ]; then
      echo "cluster {"
      echo "  name: tdhook"
      echo "  listen: 127.0.0.1:$4"
      echo "  routes: ["
      for p in "${@:5}"; do echo "    nats-route://127.0.0.1:$p"; done
      echo "  ]"
      echo "}"
    fi
  } >"$conf"
  b_start "$R_DIR/$name.log" "$nats_server" -c "$conf"
  b_wait_port "$cport" "$B_PID" "$R_DIR/$name.log"
}

# http_ok URL WHAT LOG: until URL answers 2xx (30 s at most).
http_ok() {
  local i
  for i in $(seq 1 300); do
    curl -fs --max-time 2 -o /dev/null "$1" && return 0
    sleep 0.1
  done
  tail -n 20 "$3" >&2
  b_die "$2 not ready after 30 s ($1 answers $(curl -s --max-time 2 "$1" | head -c 300))"
}

# wrk_runs PORT... : one wrk per port (post-unique.lua, keep-alive, SECONDS), the threads and
# connections split between them; the second and later on a body of their own (body_variant).
# Sets the W_ figures: req/s, requests, 2xx, non-2xx and socket errors summed, p50 and p99 the
# larger; W_END_NS when the last one ended; W_EACH "req/s + req/s".
wrk_runs() {
  local n=$# i=0 port
  local B_CONNECTIONS=$((B_CONNECTIONS / n)) B_WRK_THREADS=$((B_WRK_THREADS / n))
  [ "$B_WRK_THREADS" -ge 1 ] || B_WRK_THREADS=1
  local pids=() outs=()
  b_body "$B_WORK/body.json"
  for port in "$@"; do
    local body=$B_WORK/body.json
    if [ "$i" -gt 0 ]; then
      body=$R_DIR/body-$i.json
      body_variant "$B_WORK/body.json" "$body" "$i"
    fi
    outs+=("$R_DIR/wrk-$i.out")
    b_wrk_start "$R_DIR/wrk-$i.out" "$here/post-unique.lua" "$secs" "http://127.0.0.1:$port/hooks/tiledesk" BODY_FILE="$body"
    pids+=("$B_PID")
    i=$((i + 1))
  done
  local pid
  for pid in "${pids[@]}"; do
    wait "$pid" || true
    b_forget "$pid"
  done
  W_END_NS=$(date +%s%N)
  local rps=0 total=0 ok=0 non2xx=0 sockerr=0 p50="?" p99="?" each="" out
  for out in "${outs[@]}"; do
    b_parse_wrk "$out"
    rps=$((rps + W_RPS)) total=$((total + W_TOTAL)) ok=$((ok + W_2XX))
    non2xx=$((non2xx + W_NON2XX)) sockerr=$((sockerr + W_SOCKERR))
    p50=$(max "$p50" "$W_P50") p99=$(max "$p99" "$W_P99")
    each+="${each:+ + }$W_RPS"
  done
  W_RPS=$rps W_TOTAL=$total W_2XX=$ok W_NON2XX=$non2xx W_SOCKERR=$sockerr W_P50=$p50 W_P99=$p99 W_EACH=$each
}

# The delivery check of one sink file: bench/sinkwait.cpp (b_sink_wait) follows FILE during the
# load (a look every 200 ms), then times when it holds the 2xx count (as bench/run.sh does).
follow_start() { # FILE
  mkfifo "$R_DIR/sinkwait.fifo"
  b_sink_wait "$1" <"$R_DIR/sinkwait.fifo" >"$R_DIR/sinkwait.out" &
  SW_PID=$!
  exec {SW_FD}>"$R_DIR/sinkwait.fifo"
}
follow_end() { # sets D_LINES D_DISTINCT D_MS
  echo "$W_2XX $W_END_NS $sink_wait_ms" >&"$SW_FD"
  exec {SW_FD}>&-
  wait "$SW_PID" || true
  read -r D_LINES D_DISTINCT D_MS <"$R_DIR/sinkwait.out" || true
}
# The delivery check of several sink files (one per receiver, one consumer): their lines counted
# together every 50 ms until they reach the 2xx count or SINK_WAIT_MS after the load; then the
# distinct record ids among them (a record starts with its id). Sets D_LINES D_DISTINCT D_MS.
count_wait() { # FILES...
  local deadline=$((W_END_NS + sink_wait_ms * 1000000)) now
  D_MS=$sink_wait_ms
  while :; do
    D_LINES=$(cat -- "$@" | wc -l)
    now=$(date +%s%N)
    if [ "$D_LINES" -ge "$W_2XX" ]; then
      D_MS=$(((now > W_END_NS ? now - W_END_NS : 0) / 1000000))
      break
    fi
    [ "$now" -lt "$deadline" ] || break
    sleep 0.05
  done
  D_DISTINCT=$(awk -v n="$D_LINES" 'NR > n { exit } { print substr($0, 1, 48) }' "$@" | sort -u | wc -l)
}
# delivery_note LABEL LOG: D_NOTE, the note of a tdhook row, from D_LINES D_DISTINCT D_MS; a
# missing or duplicated event is also added to FAILURES.
delivery_note() {
  local label=$1 log=$2
  D_LINES=${D_LINES:-0} D_DISTINCT=${D_DISTINCT:-0} D_MS=${D_MS:-?}
  if [ "$D_LINES" -ge "$W_2XX" ] && [ "$W_2XX" -gt 0 ] && [ "$D_MS" != "?" ] && [ "$D_MS" -le "$sink_wait_ms" ]; then
    D_NOTE="delivered $D_LINES of $W_2XX 2xx within $D_MS ms"
  else
    D_NOTE="DELIVERY SHORT: delivered $D_LINES of $W_2XX 2xx within $D_MS ms"
    FAILURES+=("$label: $D_NOTE (log: $log)")
    b_log "$label: $D_NOTE"
  fi
  if [ "$D_LINES" != "$D_DISTINCT" ]; then
    D_NOTE+="; DUPLICATES: $D_LINES lines, $D_DISTINCT distinct record ids"
    FAILURES+=("$label: $D_LINES lines in the sink for $D_DISTINCT distinct record ids")
  fi
  DELIVERY_LINES+=("$label: $D_NOTE")
  if [ "$W_NON2XX" != 0 ] || [ "$W_SOCKERR" != 0 ]; then D_NOTE="NON-2XX NOT 0 (see $log); $D_NOTE"; fi
}
# wait_receiver PORT PID LOG: listening, and /healthz 200 (with a NATS store: connected, stream there).
wait_receiver() {
  b_wait_port "$1" "$2" "$3"
  http_ok "http://127.0.0.1:$1/healthz" "tdhook-receiver on port $1" "$3"
}

run_append() {
  local port pid log
  new_dir append
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "append floor on port $port"
  b_start "$log" env -u SYNC APPEND="$R_DIR/out.ndjson" "$B_RAWFLOOR" "$port"
  pid=$B_PID
  b_wait_port "$port" "$pid" "$log"
  wrk_runs "$port"
  RPS[append]=$W_RPS P99[append]=$W_P99
  row "append floor" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell "$W_NON2XX" "$W_SOCKERR")" "$(b_rss "$pid")" "1.00" \
    "rawfloor.cpp APPEND: one write() per body, then 200"
  b_stop "$pid"
  drop_big "$R_DIR"
}

run_embedded() {
  local port pid log note
  new_dir embedded
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "tdhook-receiver, embedded event log, on port $port"
  b_receiver "$log" "$port" "$R_DIR/data" "file:$R_DIR/out.ndjson"
  pid=$B_PID
  wait_receiver "$port" "$pid" "$log"
  follow_start "$R_DIR/out.ndjson"
  wrk_runs "$port"
  follow_end
  delivery_note "tdhook (embedded)" "$log"
  note="$D_NOTE; $(b_data_note "$R_DIR/data")"
  RPS[embedded]=$W_RPS P99[embedded]=$W_P99
  row "tdhook (embedded event log)" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell "$W_NON2XX" "$W_SOCKERR")" "$(b_rss "$pid")" \
    "$(ratio "$W_RPS" "${RPS[append]:-}")" "$note"
  b_stop "$pid"
  drop_big "$R_DIR"
}

run_r1() {
  local port pid log note cport mport npid
  new_dir nats-r1
  cport=$(b_free_port) mport=$(b_free_port)
  b_log "nats-server (JetStream, one node) on ports $cport (clients), $mport (monitoring)"
  nats_start n1 "$cport" "$mport"
  npid=$B_PID
  http_ok "http://127.0.0.1:$mport/healthz" "nats-server" "$R_DIR/n1.log"
  port=$(b_free_port)
  log=$R_DIR/server.log
  b_log "tdhook-receiver --store nats://127.0.0.1:$cport (--replicas 1) on port $port"
  # The sink's spec as every receiver would have it (a relative path, from the receiver's folder).
  : >"$R_DIR/out.ndjson"
  pushd "$R_DIR" >/dev/null
  b_receiver "$log" "$port" "$R_DIR/data" "bench=file:out.ndjson" --store "nats://127.0.0.1:$cport"
  pid=$B_PID
  popd >/dev/null
  wait_receiver "$port" "$pid" "$log"
  follow_start "$R_DIR/out.ndjson"
  wrk_runs "$port"
  follow_end
  delivery_note "tdhook nats R1" "$log"
  note="$D_NOTE; nats-server RSS / HWM $(b_rss "$npid") MiB, JetStream store $(b_du_mib "$R_DIR/store") MiB on disk"
  RPS[r1]=$W_RPS P99[r1]=$W_P99
  row "tdhook --store nats:// (1 node, R1)" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell "$W_NON2XX" "$W_SOCKERR")" "$(b_rss "$pid")" \
    "$(ratio "$W_RPS" "${RPS[append]:-}")" "$note"
  b_stop "$pid"
  b_stop "$npid"
  drop_big "$R_DIR"
}

run_r3() {
  local i ports=() cports=() rports=() mports=() npids=() url="" pids=() logs=() log note rss nrss=""
  new_dir nats-r3
  for i in 0 1 2; do
    cports+=("$(b_free_port)") rports+=("$(b_free_port)") mports+=("$(b_free_port)")
  done
  b_log "three nats-servers (JetStream cluster) on ports ${cports[*]} (clients), ${rports[*]} (routes), ${mports[*]} (monitoring)"
  for i in 0 1 2; do
    nats_start "n$((i + 1))" "${cports[i]}" "${mports[i]}" "${rports[i]}" \
      "${rports[(i + 1) % 3]}" "${rports[(i + 2) % 3]}"
    npids+=("$B_PID")
    url+="${url:+,}127.0.0.1:${cports[i]}"
  done
  # /healthz of each: JetStream enabled and current with the meta leader (the cluster formed).
  for i in 0 1 2; do http_ok "http://127.0.0.1:${mports[i]}/healthz" "nats-server n$((i + 1))" "$R_DIR/n$((i + 1)).log"; done
  # Two receivers, each in a folder of its own with the same sink (name and spec), as on two
  # machines: one consumer, each record written by one of them. One after the other, so that the
  # first creates the stream and its consumer.
  for i in a b; do
    mkdir -p "$R_DIR/$i"
    : >"$R_DIR/$i/out.ndjson"
    ports+=("$(b_free_port)")
    log=$R_DIR/$i/server.log
    logs+=("$log")
    b_log "tdhook-receiver $i --store nats://$url --replicas 3 on port ${ports[-1]}"
    pushd "$R_DIR/$i" >/dev/null
    b_receiver "$log" "${ports[-1]}" "$R_DIR/$i/data" "bench=file:out.ndjson" --store "nats://$url" --replicas 3
    pids+=("$B_PID")
    popd >/dev/null
    wait_receiver "${ports[-1]}" "${pids[-1]}" "$log"
  done
  wrk_runs "${ports[@]}"
  count_wait "$R_DIR/a/out.ndjson" "$R_DIR/b/out.ndjson"
  delivery_note "2 x tdhook nats R3" "${logs[0]} ${logs[1]}"
  note="$D_NOTE; req/s $W_EACH"
  note+="; sink lines $(wc -l <"$R_DIR/a/out.ndjson") + $(wc -l <"$R_DIR/b/out.ndjson")"
  for i in 0 1 2; do nrss+="${nrss:+; }$(b_rss "${npids[i]}")"; done
  note+="; nats-server RSS / HWM $nrss MiB, JetStream stores $(b_du_mib "$R_DIR/store") MiB on disk"
  rss="$(b_rss "${pids[0]}"); $(b_rss "${pids[1]}")"
  RPS[r3]=$W_RPS P99[r3]=$W_P99
  row "2 x tdhook --store nats:// (3-node cluster, R3)" "$W_RPS" "$W_P50" "$W_P99" "$(non2xx_cell "$W_NON2XX" "$W_SOCKERR")" "$rss" \
    "$(ratio "$W_RPS" "${RPS[append]:-}")" "$note"
  for i in "${pids[@]}"; do b_stop "$i"; done
  for i in "${npids[@]}"; do b_stop "$i"; done
  drop_big "$R_DIR"
}

for r in append embedded r1 r3; do
  [[ " $rows " == *" $r "* ]] || continue
  "run_$r"
done

a=${RPS[append]:-}
r1=$(ratio "${RPS[r1]:-}" "$a")
echo "NATS JetStream store: unique bodies (bench/post-unique.lua), keep-alive, wrk -t$B_WRK_THREADS -c$B_CONNECTIONS in all (the R3 row: two wrk -t$(((B_WRK_THREADS / 2) > 0 ? B_WRK_THREADS / 2 : 1)) -c$((B_CONNECTIONS / 2)), one per receiver), ${secs}s per row, $(wc -c <"$B_WORK/body.json")-byte request.create as Tiledesk sends it:"
echo
echo "| setup | req/s | p50 ms | p99 ms | non-2xx | RSS / HWM MiB | ÷ append | note |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS_OUT[@]}"
echo
echo "- ÷ append floor: tdhook (embedded) $(ratio "${RPS[embedded]:-}" "$a"), tdhook nats R1 $r1, 2 x tdhook nats R3 $(ratio "${RPS[r3]:-}" "$a"); nats R1 ÷ embedded $(ratio "${RPS[r1]:-}" "${RPS[embedded]:-}"), R3 ÷ R1 $(ratio "${RPS[r3]:-}" "${RPS[r1]:-}")"
echo "- goal: R1 keep-alive >= 0.3 of the append floor: $r1 ($(goal "$r1" ">=" 0.3)); p99 R1 ${P99[r1]:-?} ms, R3 ${P99[r3]:-?} ms"
for d in "${DELIVERY_LINES[@]}"; do echo "- delivery, $d (every 2xx in the file sink within $sink_wait_ms ms after wrk ended)"; done
echo
echo "append = bench/rawfloor.cpp with APPEND (one write() of each body to a file before its 200: process-crash durability, as tdhook's embedded log and a one-node JetStream, which acknowledges before it syncs); tdhook (embedded) = tdhook-receiver --sink file:…; R1 = tdhook-receiver --store nats:// on one nats-server, --sink bench=file:…; R3 = two tdhook-receivers --store nats://(3 nodes) --replicas 3, the same sink name (one consumer) each writing its own file; every nats-server with JetStream on loopback, store in the scratch folder, started and stopped by the script. RSS / HWM: VmRSS / VmHWM of the receiver(s) from /proc/PID/status after the run."
echo
echo "$machine (at the start); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; took $(($(date +%s) - started))s"
[ -z "${nats_server:-}" ] || "$nats_server" --version 2>&1
echo "command: $command_line"
if [ ${#FAILURES[@]} -gt 0 ]; then
  echo
  for f in "${FAILURES[@]}"; do echo "FAIL: $f"; done
  exit 1
fi
