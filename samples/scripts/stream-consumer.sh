#!/usr/bin/env bash
# A consumer for the receiver's exec-stream sink: reads one event record per line on stdin,
# appends it to a file and acknowledges it with "ok <delivery id>" on stdout ("fail <id> <reason>"
# when the file cannot be written, so that the receiver retries it later).
#
#   tdhook-receiver ... --sink 'exec-stream:samples/scripts/stream-consumer.sh /var/lib/crm/events.ndjson'
#   (or the path in TDHOOK_STREAM_FILE, passed with --pass-env TDHOOK_STREAM_FILE)
#
# Record data is only ever handled as data: matched by a regular expression, printed with
# printf '%s', never evaluated. Diagnostics go to stderr, which the receiver logs.
set -uo pipefail

out=${1:-${TDHOOK_STREAM_FILE:-}}
if [[ -z $out ]]; then
  echo "usage: stream-consumer.sh FILE (or TDHOOK_STREAM_FILE)" >&2
  exit 2
fi

# The receiver writes the delivery id first: {"id":"0195c2a4-…","event":…}. jq reads any other
# layout (one jq per such line: slower, still correct).
id_first='^\{"id":"([A-Za-z0-9._:-]+)"'
safe_id='^[A-Za-z0-9._:-]+$'

while IFS= read -r line || [[ -n $line ]]; do
  if [[ $line =~ $id_first ]]; then
    id=${BASH_REMATCH[1]}
  else
    id=$(jq -r '.id // empty' <<<"$line" 2>/dev/null) || id=
  fi
  if [[ ! $id =~ $safe_id ]]; then
    # Without an id there is nothing to acknowledge: the receiver's timeout retries it.
    echo "stream-consumer.sh: a line without a delivery id, skipped" >&2
    continue
  fi
  # One write per record (O_APPEND), opened per record so that logrotate can move the file.
  if printf '%s\n' "$line" >>"$out"; then
    printf 'ok %s\n' "$id"
  else
    printf 'fail %s cannot append to the output file\n' "$id"
  fi
done
