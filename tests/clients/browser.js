#!/usr/bin/env node
// Loads examples/pusher-browser/index.html in Debian's headless Chromium (driven by
// playwright-core through executablePath, no browser download) and reports what the page shows.
// The page and pusher-js's browser build are served by this script from 127.0.0.1.
//
//   node browser.js --port N [--host 127.0.0.1] [--key K] [--channel my-channel]
//        [--exit-after-events N] [--screenshot FILE] [--ignore-stdin] [--timeout-ms 30000]
//        [--chromium /usr/bin/chromium]
//
// Output (one JSON line each):
//   serving {url}                      the page's URL (static server on 127.0.0.1)
//   browser {version}                  Chromium started
//   page_state {state, socket_id}      the page's connection state, each time it changes
//   page_subscription {status}         "subscribing" / "subscribed" / "error ..." as shown
//   page_event {index, event, text}    each new line of the page's event list ("name: data")
//   console {level, text} / page_error {message}   the page's console errors and exceptions
//   screenshot {path}                  after --screenshot or {"op":"screenshot","path":..}
//   closed
// Commands (stdin JSON lines; EOF = close and exit unless --ignore-stdin):
//   {"op":"screenshot","path":"/tmp/x.png"}   {"op":"reload"}   {"op":"exit"}
// Chromium runs with a fresh --user-data-dir (removed at exit) and the flags this machine needs
// (no sandbox as root, no GPU, no QUIC, no background networking: the network is closed).
'use strict';
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');
const { emit, fatal, parseArgs, deadline, commands, appFromEnv, sleep } = require('./lib/common');

const USAGE = `
node browser.js --port N [--host 127.0.0.1] [--key K] [--channel my-channel]
     [--exit-after-events N] [--screenshot FILE] [--ignore-stdin] [--timeout-ms 30000]
     [--chromium /usr/bin/chromium]`;
const args = parseArgs(
  {
    host: '127.0.0.1',
    port: 0,
    key: appFromEnv().key,
    channel: 'my-channel',
    'exit-after-events': 0,
    screenshot: '',
    'ignore-stdin': false,
    'timeout-ms': 30000,
    chromium: '/usr/bin/chromium',
  },
  USAGE,
);
if (!args.port) {
  process.stderr.write(`--port is required\n${USAGE}\n`);
  process.exit(2);
}

const PAGE_DIR = path.resolve(__dirname, '../../examples/pusher-browser');
const PUSHER_WEB_DIR = path.resolve(__dirname, 'node_modules/pusher-js/dist/web');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json' };
const FLAGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** How often the page is read, in milliseconds. */
const POLL_MS = 50;

/** Serves the page folder, and pusher-js's browser build under node_modules/pusher-js/dist/web. */
function serve() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204);
      return res.end();
    }
    const prefix = '/node_modules/pusher-js/dist/web/';
    const [root, rel] = url.pathname.startsWith(prefix)
      ? [PUSHER_WEB_DIR, url.pathname.slice(prefix.length)]
      : [PAGE_DIR, url.pathname === '/' ? 'index.html' : url.pathname.slice(1)];
    const file = path.resolve(root, decodeURIComponent(rel));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    return fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** What the page shows now. */
function readPage(page) {
  return page.evaluate(() => ({
    state: document.getElementById('state').textContent,
    socketId: document.getElementById('socket-id').textContent,
    subscription: document.getElementById('subscription').textContent,
    events: [...document.querySelectorAll('#events li')].map((li) => ({ event: li.dataset.event, text: li.textContent })),
  }));
}

async function main() {
  const server = await serve();
  const query = new URLSearchParams({ host: args.host, port: String(args.port), key: args.key, channel: args.channel });
  const url = `http://127.0.0.1:${server.address().port}/index.html?${query}`;
  emit('serving', { url });

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcast-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium,
    headless: true, // --headless
    chromiumSandbox: false, // --no-sandbox (root here)
    args: FLAGS,
  });
  let closing = false;
  const close = async (code = 0) => {
    if (closing) return;
    closing = true;
    await context.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    emit('closed');
    process.exit(code);
  };
  deadline(args.timeoutMs, () => fs.rmSync(userDataDir, { recursive: true, force: true }));
  process.on('SIGTERM', () => close(0));
  process.on('SIGINT', () => close(0));
  emit('browser', { version: context.browser() ? context.browser().version() : 'persistent-context' });

  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') emit('console', { level: m.type(), text: m.text(), url: m.location().url });
  });
  page.on('pageerror', (e) => emit('page_error', { message: e.message }));
  await page.goto(url);

  const screenshot = async (file) => {
    await page.screenshot({ path: file, fullPage: true });
    emit('screenshot', { path: file });
  };
  if (!args.ignoreStdin) {
    const ops = {
      screenshot: (c) => screenshot(c.path),
      reload: () => page.reload(),
      exit: () => close(0),
    };
    commands((c) => (ops[c.op] ? ops[c.op](c) : emit('bad_command', { op: c.op })), () => close(0));
  }

  let last = { state: '', subscription: '', events: 0 };
  // Bounded: by the deadline (or the event count, or stdin's end).
  for (;;) {
    const shown = await readPage(page).catch((e) => fatal(`page read failed: ${e.message}`));
    if (shown.state !== last.state) emit('page_state', { state: shown.state, socket_id: shown.socketId });
    if (shown.subscription !== last.subscription) emit('page_subscription', { status: shown.subscription });
    for (let i = last.events; i < shown.events.length; i++) {
      emit('page_event', { index: i, event: shown.events[i].event, text: shown.events[i].text });
    }
    last = { state: shown.state, subscription: shown.subscription, events: shown.events.length };
    if (args.exitAfterEvents && last.events >= args.exitAfterEvents) {
      if (args.screenshot) await screenshot(args.screenshot);
      return close(0);
    }
    await sleep(POLL_MS);
  }
}
main().catch((e) => fatal(e && e.message ? e.message : e));
