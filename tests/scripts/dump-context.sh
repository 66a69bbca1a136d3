#!/bin/sh
# Test helper: writes what a script can see of the receiver to $1/$2.*: its environment (env
# and /proc/self/environ), its argv and /proc command line, where its open file descriptors
# lead, and its stdin. Then prints {} (a valid reply). No secret may appear in any of them.
set -eu
out=$1/$2
env > "$out.env"
tr '\000' '\n' < /proc/$$/environ > "$out.environ"
printf '%s\n' "$0" "$@" > "$out.argv"
tr '\000' '\n' < /proc/$$/cmdline > "$out.cmdline"
for fd in /proc/$$/fd/*; do printf '%s -> %s\n' "$fd" "$(readlink "$fd" || true)"; done > "$out.fds"
cat > "$out.stdin"
echo '{}'
