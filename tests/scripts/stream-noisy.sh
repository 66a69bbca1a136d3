#!/usr/bin/env bash
# Test helper for an exec-stream sink: a consumer that misbehaves on its stdout and stderr but
# acknowledges every record, in reverse order of each pair it reads. Per record it prints the
# record itself and a greeting to stdout (not acknowledgements), an acknowledgement of an id that
# does not exist, and a 10 000-character line to stderr. Records go to $1/records.
set -uo pipefail
dir=$1
long=$(printf 'e%.0s' {1..10000})
id_first='^\{"id":"([A-Za-z0-9._:-]+)"'
held=
while IFS= read -r line; do
  [[ $line =~ $id_first ]] || continue
  id=${BASH_REMATCH[1]}
  printf '%s\n' "$line" >>"$dir/records"
  printf '%s\n' "$line"
  printf 'hello from the consumer\n'
  printf 'ok no-such-delivery-id\n'
  printf '%s\n' "$long" >&2
  if [[ -z $held ]]; then
    held=$id
  else
    printf 'ok %s\nok %s\n' "$id" "$held"
    held=
  fi
done
