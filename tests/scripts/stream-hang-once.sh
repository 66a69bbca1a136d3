#!/usr/bin/env bash
# Test helper for an exec-stream sink: its first instance (no $1/hung yet) reads one record and
# then waits forever on a child process (whose pid goes to $1/sleep.pid) without acknowledging
# anything; later instances append each record to $1/records and acknowledge it. Every instance
# appends its pid to $1/pids.
set -uo pipefail
dir=$1
echo $$ >>"$dir/pids"
if [[ ! -e $dir/hung ]]; then
  IFS= read -r line
  : >"$dir/hung"
  sleep 600 &
  echo $! >"$dir/sleep.pid"
  wait
  exit 0
fi
id_first='^\{"id":"([A-Za-z0-9._:-]+)"'
while IFS= read -r line; do
  [[ $line =~ $id_first ]] || continue
  printf '%s\n' "$line" >>"$dir/records"
  printf 'ok %s\n' "${BASH_REMATCH[1]}"
done
