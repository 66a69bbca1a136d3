#!/bin/sh
# Test helper for an exec sink: announces each run in $1/started, waits (up to 30 s) until the
# file $1/open exists, then appends the record it got to $1/records. Holds the delivery thread
# of a sink with --exec-concurrency 1 for as long as a test needs.
set -eu
echo "$TDHOOK_DELIVERY_ID" >> "$1/started"
tries=0
while [ ! -e "$1/open" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 3000 ]; then exit 1; fi
  sleep 0.01
done
cat >> "$1/records"
