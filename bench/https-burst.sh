#!/usr/bin/env bash
# Issue 16's burst, measured: N notifications fired at once at tdhook-receiver over HTTPS by
# Node's keep-alive agent (as Tiledesk sends them on Node 20), a connection each, every body a new
# event signed by `tdhook sign`; then the same over plain HTTP. Prints the median and slowest
# answer and checks that every event is in the file sink exactly once. Benchmarks, not tests.
#
#   bench/https-burst.sh [BUILD_DIR] [N...]        default: build 100 1000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
build=$(cd "${1:-$root/build}" && pwd) || b_die "no build folder ${1:-$root/build}"
shift || true
counts=("$@")
[ $# -gt 0 ] || counts=(100 1000)
for f in receiver/tdhook-receiver tools/tdhook; do
  [ -x "$build/$f" ] || b_die "no $build/$f: build the project first"
done
command -v node >/dev/null || b_die "node is needed"
work=$(mktemp -d /tmp/tdhook-https-burst.XXXXXX)
trap 'b_stop_all; rm -rf "$work"' EXIT
echo "$B_SECRET" >"$work/secret"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 2 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  2>/dev/null || b_die "openssl req failed"
b_log "$(b_machine)"
echo "| wire | notifications at once | 2xx | median ms | slowest ms | in the sink once |"
echo "|---|---|---|---|---|---|"
for wire in https http; do
  for n in "${counts[@]}"; do
    run=$work/$wire-$n
    mkdir -p "$run/bodies"
    now=$(date +%s%3N)
    for ((i = 0; i < n; i++)); do
      "$build/tools/tdhook" sign --sample lead.create --secret-file "$work/secret" \
        --timestamp $((now + i)) >"$run/bodies/body$i.json"
    done
    port=$(b_free_port)
    tls=()
    [ "$wire" = http ] || tls=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    b_start "$run/server.log" "$build/receiver/tdhook-receiver" --listen "127.0.0.1:$port" \
      --secret-file "$work/secret" --data-dir "$run/data" --sink "file:$run/out.ndjson" "${tls[@]}"
    pid=$B_PID
    b_wait_port "$port" "$pid" "$run/server.log"
    result=$(node "$here/https-burst.js" "$wire" "$port" / "$work/secret" "$run/bodies" "$n")
    ok=$(node -e 'const r = JSON.parse(process.argv[1]); console.log(r.codes["200"] || 0)' "$result")
    median=$(node -e 'console.log(JSON.parse(process.argv[1]).median_ms)' "$result")
    slowest=$(node -e 'console.log(JSON.parse(process.argv[1]).slowest_ms)' "$result")
    b_stop "$pid" # SIGTERM: deliveries finish first
    lines=$(wc -l <"$run/out.ndjson" 2>/dev/null || echo 0)
    distinct=$(cut -c1-48 "$run/out.ndjson" 2>/dev/null | sort -u | wc -l)
    once=no
    [ "$lines" = "$n" ] && [ "$distinct" = "$n" ] && once=yes
    echo "| $wire, keep-alive | $n | $ok | $median | $slowest | $once ($lines lines, $distinct distinct) |"
  done
done
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; command: $0 $build ${counts[*]}"
