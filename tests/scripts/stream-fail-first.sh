#!/usr/bin/env bash
# Test helper for an exec-stream sink: answers "fail <id> not ready yet" the first time it sees
# a delivery id, and appends the record to $1/records and answers "ok <id>" the next time.
set -uo pipefail
dir=$1
id_first='^\{"id":"([A-Za-z0-9._:-]+)"'
while IFS= read -r line; do
  [[ $line =~ $id_first ]] || continue
  id=${BASH_REMATCH[1]}
  if [[ ! -e $dir/seen.$id ]]; then
    : >"$dir/seen.$id"
    printf 'fail %s not ready yet\n' "$id"
    continue
  fi
  printf '%s\n' "$line" >>"$dir/records"
  printf 'ok %s\n' "$id"
done
