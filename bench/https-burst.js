// Fires N notifications at once over HTTPS with Node's keep-alive agent, as Tiledesk on Node 20
// sends them (its http agent keeps connections open from Node 19 on): one connection each, all
// requests started in the same tick. The bodies are DIR/body<i>.json (bench/https-burst.sh makes
// them with `tdhook sign`). Prints one JSON line: the status counts, the median and the slowest
// answer in ms from the start, and transport errors.
// Usage: node https-burst.js https|http PORT PATH SECRET_FILE DIR N
'use strict';
const fs = require('fs');

const [scheme, port, path, secretFile, dir, count] = process.argv.slice(2);
const https = require(scheme === 'http' ? 'http' : 'https');
const n = Number(count);
const secret = fs.readFileSync(secretFile, 'utf8').split('\n')[0].trim();
const bodies = [];
for (let i = 0; i < n; i++) bodies.push(fs.readFileSync(`${dir}/body${i}.json`));
const agent = new https.Agent({ keepAlive: true, maxSockets: Infinity, rejectUnauthorized: false });

const t0 = process.hrtime.bigint();
const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
const times = [];
const codes = {};
let errors = 0;
let done = 0;
function finish() {
  if (++done < n) return;
  times.sort((a, b) => a - b);
  const median = times.length ? times[times.length >> 1] : null;
  const slowest = times.length ? times[times.length - 1] : null;
  console.log(JSON.stringify({ n, codes, errors, median_ms: median && Math.round(median),
                               slowest_ms: slowest && Math.round(slowest) }));
  agent.destroy();
}
for (let i = 0; i < n; i++) {
  const req = https.request({
    host: '127.0.0.1', port: Number(port), path, method: 'POST', agent,
    headers: {
      'Content-Type': 'application/json', 'Content-Length': bodies[i].length,
      'x-hook-secret': secret, 'User-Agent': 'tiledesk-server', Origin: 'http://localhost:3000',
    },
  }, (res) => {
    res.resume();
    res.on('end', () => {
      times.push(ms());
      codes[res.statusCode] = (codes[res.statusCode] || 0) + 1;
      finish();
    });
  });
  req.on('error', () => { ++errors; finish(); });
  req.end(bodies[i]);
}
