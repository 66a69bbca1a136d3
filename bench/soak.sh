#!/usr/bin/env bash
# Memory soak (not a test): tdhook-receiver (file sink, default options) under wrk keep-alive,
# CONNECTIONS (32) connections, every request a new event (bench/post-unique.lua), for DURATION
# seconds; samples the receiver's VmRSS every 10 s, prints the samples, first/last/max and
# whether it stayed under 64 MiB (VmHWM, the peak, is the figure that decides).
#
#   bench/soak.sh [DURATION]          (default 600; BUILD_DIR as for bench/run.sh, default ./build)
#
# A body's token is accepted for 5 minutes, so wrk runs in segments of at most 240 s, each on a
# fresh body (connections are opened again between segments, within a second). At this rate the
# spool and the sink file would fill the disk (about 10 KB per event), so after each sample the
# soak purges delivered events older than 30 s (`tdhook spool purge`, beside the running receiver,
# as an operator's cron would) and empties the sink file (O_APPEND: the receiver keeps writing).
set -euo pipefail
started=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

duration=${1:-${DURATION:-600}}
[[ $duration =~ ^[1-9][0-9]*$ ]] || b_die "DURATION must be a whole number of seconds, not '$duration'"
build_arg=${BUILD_DIR:-$root/build}
B_BUILD=$(cd "$build_arg" 2>/dev/null && pwd) || b_die "no build folder $build_arg (BUILD_DIR)"
B_CONNECTIONS=${CONNECTIONS:-32}
B_WRK_THREADS=${WRK_THREADS:-2}
limit_mib=64
min_free_gib=${MIN_FREE_GIB:-10} # the soak stops before the spool fills the disk
stopped_early=""
interval=10
segment_max=240
for f in receiver/tdhook-receiver tools/tdhook; do
  [ -x "$B_BUILD/$f" ] || b_die "no $B_BUILD/$f: build the project first"
done
command_line="cd $PWD && BUILD_DIR=$B_BUILD CONNECTIONS=$B_CONNECTIONS WRK_THREADS=$B_WRK_THREADS $0 $duration"

b_setup "$root"
B_WORK=$(mktemp -d /tmp/tdhook-soak.XXXXXX)
cleanup() {
  b_stop_all
  if [ "${KEEP:-0}" = 1 ]; then b_log "kept $B_WORK"; else rm -rf "$B_WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
machine=$(b_machine)
b_log "$machine"

port=$(b_free_port)
log=$B_WORK/receiver.log
sink=$B_WORK/out.ndjson
b_receiver "$log" "$port" "$B_WORK/data" "file:$sink"
rx=$B_PID
b_wait_port "$port" "$rx" "$log"
b_log "receiver pid $rx on port $port; soak of ${duration}s"

samples=()
sample() { # elapsed-seconds
  local rss hwm stored pending
  rss=$(b_rss_kib "$rx")
  hwm=$(b_hwm_kib "$rx")
  [ -n "$rss" ] || {
    tail -n 20 "$log" >&2
    b_die "the receiver is gone (log above)"
  }
  stored=$(b_metric "$port" tdhook_events_stored_total)
  pending=$(b_metric "$port" tdhook_spool_pending)
  spool=$(du -sm "$B_WORK/data" | cut -f1)
  wal=0
  [ -f "$B_WORK/data/spool.db-wal" ] && wal=$(($(stat -c %s "$B_WORK/data/spool.db-wal") / 1048576))
  free_gib=$(($(df -Pk "$B_WORK" | awk 'NR == 2 { print $4 }') / 1048576))
  samples+=("$1 $rss $hwm $stored $pending $spool $wal $free_gib")
  b_log "t=${1}s VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB, events stored $stored, pending $pending, spool $spool MiB (WAL $wal MiB), disk free $free_gib GiB"
}

t0=$(date +%s)
deadline=$((t0 + duration))
next_sample=$t0
seg=0 wrk_pid="" purge_pid="" purges=0 skipped_purges=0 failed_purges=0
total_req=0 total_non2xx=0 total_sockerr=0
sample 0
next_sample=$((next_sample + interval))
while :; do
  now=$(date +%s)
  # A new wrk segment when none runs and time is left.
  if [ -z "$wrk_pid" ] && [ "$now" -lt $((deadline - 2)) ]; then
    left=$((deadline - now))
    len=$((left < segment_max ? left : segment_max))
    seg=$((seg + 1))
    b_body "$B_WORK/body.json"
    b_wrk_start "$B_WORK/wrk-$seg.out" "$here/post-unique.lua" "$len" "http://127.0.0.1:$port/hooks/tiledesk"
    wrk_pid=$B_PID
    b_log "wrk segment $seg: ${len}s"
  fi
  if [ -n "$wrk_pid" ] && ! kill -0 "$wrk_pid" 2>/dev/null; then
    wait "$wrk_pid" || true
    b_forget "$wrk_pid"
    wrk_pid=""
    b_parse_wrk "$B_WORK/wrk-$seg.out"
    total_req=$((total_req + W_TOTAL))
    total_non2xx=$((total_non2xx + W_NON2XX))
    total_sockerr=$((total_sockerr + W_SOCKERR))
    b_log "wrk segment $seg: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms, non-2xx $W_NON2XX, socket errors $W_SOCKERR"
    continue
  fi
  now=$(date +%s)
  if [ "$now" -ge "$next_sample" ]; then
    sample $((now - t0))
    next_sample=$((next_sample + interval))
    if [ "$free_gib" -lt "$min_free_gib" ]; then
      stopped_early="stopped early at t=$((now - t0))s: $free_gib GiB left on the disk (MIN_FREE_GIB=$min_free_gib), the spool took $spool MiB (WAL $wal MiB)"
      b_log "$stopped_early"
      [ -z "$wrk_pid" ] || b_stop "$wrk_pid"
      wrk_pid=""
      break
    fi
    : >"$sink"
    if [ -n "$purge_pid" ] && kill -0 "$purge_pid" 2>/dev/null; then
      skipped_purges=$((skipped_purges + 1))
    else
      [ -z "$purge_pid" ] || {
        # A purge opens the spool with an integrity check: a failure here is worth reading.
        wait "$purge_pid" || failed_purges=$((failed_purges + 1))
        b_forget "$purge_pid"
      }
      b_start "$B_WORK/purge.log" "$B_BUILD/tools/tdhook" spool --data-dir "$B_WORK/data" purge --delivered --older-than 30s
      purge_pid=$B_PID
      purges=$((purges + 1))
    fi
  fi
  [ -z "$wrk_pid" ] && [ "$now" -ge $((deadline - 2)) ] && break
  sleep 0.5
done
sample $((now - t0))
[ -z "$purge_pid" ] || b_stop "$purge_pid"
b_stop "$rx"

echo
echo "$machine (at the start); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "command: $command_line"
echo "soak: tdhook-receiver, file sink, default options, wrk -t$B_WRK_THREADS -c$B_CONNECTIONS keep-alive, unique bodies, ${duration}s in $seg segment(s); took $(($(date +%s) - started))s"
echo "requests: $total_req, non-2xx $total_non2xx, socket errors $total_sockerr (segments that ran to their end); $purges purges of delivered events ($skipped_purges skipped: the previous one still ran; $failed_purges failed, see purge.log with KEEP=1)"
[ -z "$stopped_early" ] || echo "NOT COMPLETE: $stopped_early"
echo
echo "| t s | VmRSS MiB | VmHWM MiB | events stored | pending | spool on disk MiB | of which WAL MiB | disk free GiB |"
echo "|---|---|---|---|---|---|---|---|"
for s in "${samples[@]}"; do
  read -r t r h st p sp w fg <<<"$s"
  awk -v t="$t" -v r="$r" -v h="$h" -v st="$st" -v p="$p" -v sp="$sp" -v w="$w" -v fg="$fg" \
    'BEGIN { printf "| %d | %.1f | %.1f | %d | %d | %d | %d | %d |\n", t, r / 1024, h / 1024, st, p, sp, w, fg }'
done
printf '%s\n' "${samples[@]}" | awk -v limit="$limit_mib" -v partial="${stopped_early:+ (for the part that ran: see NOT COMPLETE above)}" '
  NR == 1 { first = $2 } { last = $2; if ($2 > max) max = $2; if ($3 > hwm) hwm = $3 }
  END {
    printf "\nVmRSS first %.1f MiB, last %.1f MiB, max %.1f MiB; VmHWM (peak) %.1f MiB\n", first / 1024, last / 1024, max / 1024, hwm / 1024
    if (hwm <= limit * 1024) printf "stayed under %d MiB: yes%s\n", limit, partial
    else printf "stayed under %d MiB: NO (peak %.1f MiB)\n", limit, hwm / 1024
  }'
