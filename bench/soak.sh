#!/usr/bin/env bash
# Soak (not a test): one tdhook-receiver (file sink) under wrk keep-alive, CONNECTIONS (32)
# connections, every request a new event (bench/post-unique.lua), for DURATION seconds, in
# segments of 60 s (one per minute, each on a fresh body: a token is accepted for 5 minutes).
# Prints one markdown row per minute: requests, req/s, p99, non-2xx, tdhook's VmRSS and VmHWM
# and the disk use of its --data-dir (du), then a verdict line: max RSS, whether RSS is flat (the
# last minute's VmRSS within 10 % of the second minute's) and the max disk use.
#
#   bench/soak.sh [DURATION]          (default 600; BUILD_DIR as for bench/run.sh, default ./build)
#
# The receiver runs with a short de-duplication window and retention, so that its store stays
# bounded on its own (a log segment goes once every sink is past it and the de-duplication window
# no longer needs it): --dedup-window DEDUP_WINDOW (60s), and --retention RETENTION (60s) when
# the receiver has that flag; RECEIVER_ARGS adds more (word-split). The sink file is emptied every
# 5 s (O_APPEND: the receiver keeps writing; it is not part of the data directory).
# PURGE=1 also runs `tdhook spool purge --delivered --older-than 30s` every 10 s beside the
# receiver, as an operator's cron would (the admin path), when that subcommand exists.
# Also: CONNECTIONS, WRK_THREADS, SEGMENT (60), MIN_FREE_GIB (10: stops early below), KEEP=1.
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
segment=${SEGMENT:-60}
dedup_window=${DEDUP_WINDOW:-60s}
retention=${RETENTION:-60s}
min_free_gib=${MIN_FREE_GIB:-10}
purge=${PURGE:-0}
rx_bin=$B_BUILD/receiver/tdhook-receiver
[ -x "$rx_bin" ] || b_die "no $rx_bin: build the project first"

rx_help=$("$rx_bin" --help 2>&1) || b_die "$rx_bin --help failed"
rx_args=(--dedup-window "$dedup_window")
if grep -q -- '--retention ' <<<"$rx_help"; then
  rx_args+=(--retention "$retention")
  retention_note="--retention $retention"
else
  retention_note="no --retention flag in this build"
fi
# shellcheck disable=SC2206
[ -z "${RECEIVER_ARGS:-}" ] || rx_args+=(${RECEIVER_ARGS})
if [ "$purge" = 1 ]; then
  if [ -x "$B_BUILD/tools/tdhook" ] && "$B_BUILD/tools/tdhook" spool purge --help >/dev/null 2>&1; then
    purge_note="tdhook spool purge --delivered --older-than 30s every 10 s"
  else
    purge=0
    purge_note="PURGE=1 asked, but this build has no tdhook spool purge: not run"
  fi
else
  purge_note="no purge (PURGE=1 runs tdhook spool purge every 10 s)"
fi
command_line="cd $PWD && BUILD_DIR=$B_BUILD CONNECTIONS=$B_CONNECTIONS WRK_THREADS=$B_WRK_THREADS SEGMENT=$segment"
# shellcheck disable=SC2016 # the quotes are for the reader; RECEIVER_ARGS expands
command_line+=" DEDUP_WINDOW=$dedup_window RETENTION=$retention PURGE=$purge${RECEIVER_ARGS:+ RECEIVER_ARGS='$RECEIVER_ARGS'} $0 $duration"

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
data=$B_WORK/data
b_receiver "$log" "$port" "$data" "file:$sink" "${rx_args[@]}"
rx=$B_PID
b_wait_port "$port" "$rx" "$log"
b_log "receiver pid $rx on port $port (${rx_args[*]}); soak of ${duration}s in ${segment}s segments"

alive() {
  [ -n "$(b_rss_kib "$rx")" ] || {
    tail -n 20 "$log" >&2
    b_die "the receiver is gone (log above)"
  }
}
disk_max=0 rss_max=0 free_gib=999 stopped_early="" purges=0 failed_purges=0 purge_pid=""
# A look every 10 s: the peak disk use and RSS between the per-minute rows; the purge, if any.
look() {
  local d r
  alive
  d=$(b_du_mib "$data")
  [ "$d" = "?" ] || [ "$d" -le "$disk_max" ] || disk_max=$d
  r=$(b_rss_kib "$rx")
  [ "$r" -le "$rss_max" ] || rss_max=$r
  free_gib=$(($(df -Pk "$B_WORK" | awk 'NR == 2 { print $4 }') / 1048576))
  if [ "$purge" = 1 ] && { [ -z "$purge_pid" ] || ! kill -0 "$purge_pid" 2>/dev/null; }; then
    if [ -n "$purge_pid" ]; then
      wait "$purge_pid" || failed_purges=$((failed_purges + 1))
      b_forget "$purge_pid"
    fi
    b_start "$B_WORK/purge-$purges.log" "$B_BUILD/tools/tdhook" spool --data-dir "$data" purge --delivered --older-than 30s
    purge_pid=$B_PID
    purges=$((purges + 1))
  fi
}

rows=() seg=0 t0=$(date +%s)
total_req=0 total_2xx=0 total_non2xx=0 total_sockerr=0
rss2="" rss_last=""
while :; do
  left=$((t0 + duration - $(date +%s)))
  [ "$left" -ge 2 ] || break
  len=$((left < segment ? left : segment))
  seg=$((seg + 1))
  b_body "$B_WORK/body.json"
  b_wrk_start "$B_WORK/wrk-$seg.out" "$here/post-unique.lua" "$len" "http://127.0.0.1:$port/hooks/tiledesk"
  wpid=$B_PID
  b_log "minute $seg: wrk for ${len}s"
  tick=0
  while kill -0 "$wpid" 2>/dev/null; do
    sleep 1
    tick=$((tick + 1))
    [ $((tick % 5)) != 0 ] || : >"$sink"
    if [ $((tick % 10)) = 0 ]; then
      look
      if [ "$free_gib" -lt "$min_free_gib" ]; then
        stopped_early="stopped early in minute $seg: $free_gib GiB left on the disk (MIN_FREE_GIB=$min_free_gib), data dir $(b_du_mib "$data") MiB"
        b_log "$stopped_early"
        b_stop "$wpid"
        break
      fi
    fi
  done
  wait "$wpid" 2>/dev/null || true
  b_forget "$wpid"
  [ -z "$stopped_early" ] || break
  : >"$sink"
  b_parse_wrk "$B_WORK/wrk-$seg.out"
  look
  rss=$(b_rss_kib "$rx")
  hwm=$(b_hwm_kib "$rx")
  disk=$(b_du_mib "$data")
  [ "$disk" = "?" ] || [ "$disk" -le "$disk_max" ] || disk_max=$disk
  [ "$rss" -le "$rss_max" ] || rss_max=$rss
  [ "$seg" != 2 ] || rss2=$rss
  rss_last=$rss
  total_req=$((total_req + W_TOTAL))
  total_2xx=$((total_2xx + W_2XX))
  total_non2xx=$((total_non2xx + W_NON2XX))
  total_sockerr=$((total_sockerr + W_SOCKERR))
  row=$(awk -v m="$seg" -v s="$len" -v n="$W_TOTAL" -v rps="$W_RPS" -v p99="$W_P99" -v bad="$W_NON2XX" -v se="$W_SOCKERR" \
    -v r="$rss" -v h="$hwm" -v d="$disk" \
    'BEGIN { printf "| %d | %d | %d | %d | %s | %d%s | %.1f | %.1f | %s |", m, s, n, rps, p99, bad, (se > 0 ? " (+" se " socket errors)" : ""), r / 1024, h / 1024, d }')
  rows+=("$row")
  b_log "minute $seg: $W_TOTAL requests, $W_RPS req/s, p99 $W_P99 ms, non-2xx $W_NON2XX, VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB, data dir $disk MiB"
done
hwm_end=$(b_hwm_kib "$rx")
[ -z "$purge_pid" ] || {
  wait "$purge_pid" || failed_purges=$((failed_purges + 1))
  b_forget "$purge_pid"
}
b_stop "$rx"

echo "Soak: tdhook-receiver --sink file:… ${rx_args[*]} ($retention_note; $purge_note), wrk -t$B_WRK_THREADS -c$B_CONNECTIONS keep-alive, unique bodies (bench/post-unique.lua), ${duration}s in $seg segment(s) of up to ${segment}s:"
echo
echo "| minute | s | requests | req/s | p99 ms | non-2xx | VmRSS MiB | VmHWM MiB | data dir MiB (du) |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
purges_note=""
[ "$purge" != 1 ] || purges_note="; $purges purges (failed $failed_purges; KEEP=1 keeps their logs)"
echo "requests: $total_req, 2xx $total_2xx, non-2xx $total_non2xx, socket errors $total_sockerr$purges_note"
[ -z "$stopped_early" ] || echo "NOT COMPLETE: $stopped_early"
awk -v max="$rss_max" -v hwm="${hwm_end:-0}" -v r2="$rss2" -v rl="$rss_last" -v disk="$disk_max" 'BEGIN {
  if (r2 == "" || r2 == 0) flat = "n/a (fewer than 2 minutes)"
  else { ch = (rl - r2) / r2 * 100; flat = sprintf("%s (last minute %.1f MiB vs second minute %.1f MiB, %+.1f %%)", (ch <= 10 && ch >= -10) ? "yes" : "NO", rl / 1024, r2 / 1024, ch) }
  printf "verdict: max VmRSS %.1f MiB (VmHWM %.1f MiB); RSS flat: %s; max disk use %d MiB (data dir)\n", max / 1024, hwm / 1024, flat, disk }'
echo
echo "$machine (at the start); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; took $(($(date +%s) - started))s"
echo "command: $command_line"
