#!/bin/sh
# Test helper for an exec sink: fails on its first two runs and succeeds on the third, so that
# the receiver's retries can be observed. $1 is a state directory (count, record, attempt).
set -eu
state=$1
runs=$(cat "$state/count" 2>/dev/null || echo 0)
runs=$((runs + 1))
echo "$runs" > "$state/count"
if [ "$runs" -lt 3 ]; then
  echo "fail-twice: failing on run $runs" >&2
  exit 1
fi
cat > "$state/record"
echo "$TDHOOK_ATTEMPT" > "$state/attempt"
