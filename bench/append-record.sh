#!/bin/sh
# The script of the script-sink benchmark (bench/run.sh, scenario 3): appends one event record
# as one line to OUT. The record comes on stdin (tdhook-receiver's exec: sink) or, for
# adnanh/webhook, in the file named by WEBHOOK_BODY_FILE (its pass-file-to-command).
# Usage: append-record.sh OUT
out=${1:?usage: append-record.sh OUT}
if [ -n "${WEBHOOK_BODY_FILE:-}" ]; then exec <"$WEBHOOK_BODY_FILE"; fi
rec=$(cat) || exit 1
printf '%s\n' "$rec" >>"$out"
