#!/bin/sh
# Test helper for exec_concurrency: each run announces itself in $1 and waits (up to 5 s) until
# $2 runs have announced themselves. With fewer scripts at once than $2, every run fails.
set -eu
dir=$1
want=$2
started() {
  set -- "$dir"/started.*
  if [ -e "$1" ]; then echo $#; else echo 0; fi
}
touch "$dir/started.$TDHOOK_DELIVERY_ID"
tries=0
while [ "$(started)" -lt "$want" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 500 ]; then exit 1; fi
  sleep 0.01
done
cat > "$dir/record.$TDHOOK_DELIVERY_ID"
