#!/usr/bin/env node
// permessage-deflate in a real browser: headless Chromium (Debian's, driven by playwright-core
// through executablePath) opens ws://127.0.0.1:PORT/ws/CHANNEL from a page, which offers the
// extension as every Chromium does; this script publishes JSON messages of several sizes through
// the API and checks that the page received each one intact, that the extension was negotiated
// (WebSocket.extensions), and that the server sent compressed frames (deflate_frames in /stat).
// Then the same through pusher-js (its browser build, injected into a second page) on /app/KEY:
// the raw publishes reach it as `message` events in Pusher frames, compressed too.
//
//   node browser-deflate.js --port N --api-port M [--channel c] [--key app-key]
//        [--timeout-ms 30000] [--chromium /usr/bin/chromium]
// (the server must know the Pusher app key --key, e.g. `--app-id 1 --app-key app-key ...`)
//
// Output: one JSON line per check ({"check", "ok", ...}), then {"result": "PASS"|"FAIL"}.
// Exit 0 only when every check passed.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { chromium } = require('playwright-core');

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}
const port = Number(option('port', 0));
const apiPort = Number(option('api-port', 0));
const channel = option('channel', 'browser-deflate');
const appKey = option('key', 'app-key');
const timeoutMs = Number(option('timeout-ms', 30000));
const executablePath = option('chromium', '/usr/bin/chromium');
if (!port || !apiPort) {
  process.stderr.write('usage: node browser-deflate.js --port N --api-port M\n');
  process.exit(2);
}
// Bounded: the whole run ends by this deadline whatever happens.
setTimeout(() => {
  console.log(JSON.stringify({ result: 'FAIL', reason: `timeout after ${timeoutMs} ms` }));
  process.exit(1);
}, timeoutMs).unref();

function request(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'Content-Length': Buffer.byteLength(body) } : {};
    const req = http.request({ host: '127.0.0.1', port: apiPort, method, path: urlPath, headers }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** About `bytes` of JSON that compresses like a push payload. */
function json(bytes, seed) {
  const items = [];
  let text = '';
  for (let i = 0; text.length < bytes; i++) {
    items.push({ event: 'trade', symbol: 'BTC-USD', price: 60000 + ((i * 7 + seed) % 1000), qty: i % 13 });
    text = JSON.stringify({ seq: seed, items });
  }
  return text;
}

/** `deflate_frames` from a /stat answer. */
function deflateFrames(stat) {
  return Number((stat.text.match(/^deflate_frames (\d+)$/m) || [])[1] || 0);
}

/**
 * pusher-js (browser build) in its own page, subscribed to `channel` on /app/KEY: the same
 * messages, published raw, arrive as `message` events, intact, over the negotiated extension,
 * in compressed Pusher frames (the server compresses each wire format once).
 */
async function pusherLeg(context, sent, framesBefore) {
  const page = await context.newPage();
  page.on('pageerror', (e) => check('no page error (pusher-js)', false, e.message));
  await page.addScriptTag({ path: require.resolve('pusher-js/dist/web/pusher.min.js') });
  const extensions = await page.evaluate(
    ({ key, wsPort, channelName }) =>
      new Promise((resolve, reject) => {
        const pusher = new Pusher(key, {
          cluster: 'mt1',
          wsHost: '127.0.0.1',
          wsPort,
          forceTLS: false,
          enabledTransports: ['ws'],
          disableStats: true,
        });
        window.pusherReceived = [];
        const subscription = pusher.subscribe(channelName);
        subscription.bind('message', (data) => window.pusherReceived.push(JSON.stringify(data)));
        subscription.bind('pusher:subscription_error', (error) => reject(new Error(JSON.stringify(error))));
        subscription.bind('pusher:subscription_succeeded', () => {
          // pusher-js keeps the browser's WebSocket on its transport connection.
          const transport = pusher.connection.connection && pusher.connection.connection.transport;
          resolve(transport && transport.socket ? transport.socket.extensions : '(not reachable)');
        });
      }),
    { key: appKey, wsPort: port, channelName: channel },
  );
  check('pusher-js: Chromium negotiated permessage-deflate on /app/KEY', String(extensions).startsWith('permessage-deflate'), extensions);
  for (const message of sent) {
    const answer = await request('POST', `/publish/${channel}`, message);
    if (answer.status !== 200) check('publish accepted', false, answer);
  }
  // Bounded by the deadline above; the raw page from before still gets them too.
  let received = [];
  for (;;) {
    received = await page.evaluate(() => window.pusherReceived);
    if (received.length >= sent.length) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  sent.forEach((message, index) =>
    check(`pusher-js: message ${index} (${message.length} B) arrived intact`, received[index] === JSON.stringify(JSON.parse(message)), {
      length: received[index] && received[index].length,
    }),
  );
  // This round: the raw page's compressed frames again, and as many for pusher-js.
  const frames = deflateFrames(await request('GET', '/stat')) - framesBefore;
  check('pusher-js: its Pusher frames were compressed too', frames >= 2 * (sent.length - 1), { deflate_frames: frames });
}

const checks = [];
function check(name, ok, detail) {
  checks.push(ok);
  console.log(JSON.stringify({ check: name, ok: !!ok, detail }));
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcast-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    chromiumSandbox: false,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (e) => check('no page error', false, e.message));
    const url = `ws://127.0.0.1:${port}/ws/${channel}`;
    const extensions = await page.evaluate(
      (wsUrl) =>
        new Promise((resolve, reject) => {
          const socket = new WebSocket(wsUrl);
          window.received = [];
          socket.onmessage = (event) => window.received.push(event.data);
          socket.onopen = () => resolve(socket.extensions);
          socket.onerror = () => reject(new Error('WebSocket error'));
        }),
      url,
    );
    check('Chromium offered permessage-deflate and it was negotiated', extensions.startsWith('permessage-deflate'), extensions);
    const sent = [json(100, 1), json(1024, 2), json(16 * 1024, 3), json(60 * 1024, 4)];
    for (const message of sent) {
      const answer = await request('POST', `/publish/${channel}`, message);
      if (answer.status !== 200) check('publish accepted', false, answer);
    }
    // Bounded by the deadline above.
    let received = [];
    for (;;) {
      received = await page.evaluate(() => window.received);
      if (received.length >= sent.length) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    sent.forEach((message, index) =>
      check(`message ${index} (${message.length} B) arrived intact`, received[index] === message, {
        length: received[index] && received[index].length,
      }),
    );
    const stat = await request('GET', '/stat');
    const frames = deflateFrames(stat);
    check('the server sent compressed frames (all but the 100-byte message)', frames >= sent.length - 1, { deflate_frames: frames });
    const ratio = Number((stat.text.match(/^deflate_ratio ([\d.]+)$/m) || [])[1] || 0);
    check('they were at least 3x smaller', ratio >= 3, { deflate_ratio: ratio });
    await pusherLeg(context, sent, frames);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  const pass = checks.length > 0 && checks.every(Boolean);
  console.log(JSON.stringify({ result: pass ? 'PASS' : 'FAIL' }));
  process.exit(pass ? 0 : 1);
}
main().catch((e) => {
  console.log(JSON.stringify({ result: 'FAIL', reason: e && e.message ? e.message : String(e) }));
  process.exit(1);
});
