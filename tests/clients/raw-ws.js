#!/usr/bin/env node
// A bare WebSocket client (npm `ws`) for protocol-level checks that a client library hides:
// close codes, pusher:error frames during the handshake, frames sent by hand. Sends each stdin
// line as one text frame and prints what the server sends.
//
//   node raw-ws.js --url ws://127.0.0.1:N/app/KEY?protocol=7 [--send TEXT]... [--timeout-ms 10000]
//
// Output: open, message {data (JSON-parsed when JSON), bytes}, close {code, reason},
// error {message}, timeout. Exits when the server closes (0), at stdin EOF (closes with 1000
// first), or at the deadline (3). --send sends TEXT right after the handshake (repeatable:
// --send a --send b).
'use strict';
const WebSocket = require('ws');
const { emit, deadline, maybeJson } = require('./lib/common');

const argv = process.argv.slice(2);
let url = '';
let timeoutMs = 10000;
const initial = [];
// Bounded: one step per argument.
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--url') url = argv[++i];
  else if (argv[i] === '--send') initial.push(argv[++i]);
  else if (argv[i] === '--timeout-ms') timeoutMs = Number(argv[++i]);
  else {
    process.stderr.write('node raw-ws.js --url ws://127.0.0.1:N/path [--send TEXT]... [--timeout-ms 10000]\n');
    process.exit(2);
  }
}
if (!url) {
  process.stderr.write('--url is required\n');
  process.exit(2);
}
deadline(timeoutMs);
const ws = new WebSocket(url, { perMessageDeflate: false });
ws.on('open', () => {
  emit('open');
  for (const text of initial) ws.send(text);
});
ws.on('message', (data) => emit('message', { data: maybeJson(data.toString('utf8')), bytes: data.length }));
ws.on('close', (code, reason) => {
  emit('close', { code, reason: reason.toString('utf8') });
  process.exit(0);
});
ws.on('error', (e) => emit('error', { message: e.message }));
let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let nl;
  // Bounded: by the newlines that arrived.
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (line.trim() && ws.readyState === WebSocket.OPEN) ws.send(line);
  }
});
process.stdin.on('end', () => {
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  setTimeout(() => process.exit(0), 1000).unref();
});
