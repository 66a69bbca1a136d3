#!/usr/bin/env bash
# Benchmarks (not tests), side by side in one run on this machine:
#   1. verification: bench/verify_bench (libtdhook) beside Node's JSON.parse + jsonwebtoken.verify
#   2. receivers: tdhook-receiver beside the HTTP floor, the Express receiver and adnanh/webhook
#      (../shared/bench/peer-run.sh), keep-alive and Connection: close, 32 connections, file sink
# Usage: bench/run.sh [BUILD_DIR] [SECONDS]      (needs ../shared beside the project)
# Installs what it needs: wrk and webhook (Debian), express and jsonwebtoken (npm, in a scratch
# folder outside the project).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
secs=${2:-10}
shared=${TDHOOK_SHARED:-$root/../shared}
[ -d "$shared/bench" ] || { echo "no $shared/bench" >&2; exit 2; }
TDHOOK_WITH_BENCH=1 "$root/scripts/install-deps"
command -v node >/dev/null || { echo "node is needed for the peer baselines" >&2; exit 2; }

work=${TDHOOK_BENCH_DIR:-/tmp/tdhook-bench}
mkdir -p "$work"
cp "$shared"/bench/* "$work"/
if [ ! -d "$work/node_modules/jsonwebtoken" ] || [ ! -d "$work/node_modules/express" ]; then
  (cd "$work" && npm install --silent --no-audit --no-fund >/dev/null)
fi
secret=56c189c8-33ae-4930-bd98-410a12aa45ce
(cd "$work" && node make-body.js "$shared/samples/request.create.json" "$secret" > body.json)

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== verification of the request.create notification ($(wc -c < "$work/body.json") bytes), one core"
"$build/bench/verify_bench" "$work/body.json" "$secret" 400000
(cd "$work" && node node-verify-bench.js body.json "$secret")

echo "== receivers, keep-alive, 32 connections, ${secs}s each"
NODE_MODULES="$work/node_modules" bash "$shared/bench/peer-run.sh" "$build/receiver" "$secs" post.lua
echo "== receivers, Connection: close, 32 connections, ${secs}s each"
NODE_MODULES="$work/node_modules" bash "$shared/bench/peer-run.sh" "$build/receiver" "$secs" post-close.lua
