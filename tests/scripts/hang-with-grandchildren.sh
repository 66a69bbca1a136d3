#!/bin/sh
# Test helper: outlives any exec timeout, with background grandchildren: a sleeper and a subshell
# that keeps forking. Writes its process group id to $1/pgid.$TDHOOK_ATTEMPT once they run.
# With $2 = ignore-term, the script and everything it starts ignore SIGTERM: only SIGKILL ends
# them.
set -eu
if [ "${2:-}" = ignore-term ]; then trap '' TERM; fi
sleep 1000 &
(while :; do sleep 0.2; done) &
cut -d' ' -f5 /proc/$$/stat > "$1/pgid.$TDHOOK_ATTEMPT.tmp"
mv "$1/pgid.$TDHOOK_ATTEMPT.tmp" "$1/pgid.$TDHOOK_ATTEMPT"
wait
