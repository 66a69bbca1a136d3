#!/usr/bin/env bash
# Test helper for an exec-stream sink: appends each record to $1/records and acknowledges it;
# its first instance (no $1/died yet), after $2 acknowledgements, takes one more record, appends
# it without acknowledging it, writes its id to $1/died and kills itself with SIGKILL: a crash in
# the middle of a stream. Every instance appends its pid to $1/pids.
set -uo pipefail
dir=$1
die_after=$2
echo $$ >>"$dir/pids"
first=0
[[ -e $dir/died ]] || first=1
acked=0
id_first='^\{"id":"([A-Za-z0-9._:-]+)"'
while IFS= read -r line; do
  [[ $line =~ $id_first ]] || continue
  printf '%s\n' "$line" >>"$dir/records"
  if ((first && acked >= die_after)); then
    printf '%s' "${BASH_REMATCH[1]}" >"$dir/died"
    kill -KILL $$
  fi
  printf 'ok %s\n' "${BASH_REMATCH[1]}"
  acked=$((acked + 1))
done
