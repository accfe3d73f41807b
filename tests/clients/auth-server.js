#!/usr/bin/env node
// A tiny application backend for Pusher clients: the channel-authorization and
// user-authentication endpoints pusher-js and Laravel Echo call, signed by the official `pusher`
// server SDK (`authorizeChannel`, `authenticateUser`), plus a webhook receiver checked by the
// SDK's `webhook(req).isValid()`. Binds 127.0.0.1 only.
//
//   node auth-server.js [--port 0] [--deny PREFIX,..] [--forge-secret S] [--webhook-status 200]
//        [--webhook-fail-first N] [--exit-on-eof] [--timeout-ms 600000]
//
//   POST /pusher/auth       form or JSON: socket_id, channel_name [, user_id, user_info (JSON)]
//                           -> 200 {"auth": ...[, "channel_data": ...]}  (403 for --deny prefixes)
//                           presence-*: channel_data {user_id, user_info}; user_id defaults to
//                           "user-" + socket_id.
//   POST /pusher/user-auth  form or JSON: socket_id [, user_id, user_info] -> 200 {auth, user_data}
//   POST /pusher/webhook    a Pusher webhook; answered 200 when valid, 401 when not (or the
//                           status given by --webhook-status, to test retries; with
//                           --webhook-fail-first N the first N valid ones are answered 500,
//                           then the rest normally: a sender that retries gets its events in)
//
// Output (one JSON line each): {"type":"listening","port":N,"url":"http://127.0.0.1:N"} first,
// then {"type":"auth","channel":..,"socket_id":..,"status":200|403,"user_id"?},
// {"type":"user_auth","socket_id":..,"user_id":..,"status":200},
// {"type":"webhook","valid":true|false,"time_ms":..,"events":[..],"key":"X-Pusher-Key",
//  "status":200} (one line per webhook request; `events` as the SDK parsed them).
// --forge-secret signs with another secret (the server must refuse those subscriptions).
// Runs until SIGTERM/SIGINT or the deadline; --exit-on-eof also stops it when stdin closes.
'use strict';
const http = require('http');
const Pusher = require('pusher');
const { emit, parseArgs, deadline, list, appFromEnv, maybeJson } = require('./lib/common');

const USAGE = `
node auth-server.js [--port 0] [--deny PREFIX,..] [--forge-secret S] [--webhook-status 200]
                    [--webhook-fail-first N] [--exit-on-eof] [--timeout-ms 600000]
App from PUSHER_APP_ID / PUSHER_APP_KEY / PUSHER_APP_SECRET (defaults 1/app-key/app-secret).`;
const args = parseArgs(
  {
    port: 0,
    deny: '',
    'forge-secret': '',
    'webhook-status': 200,
    'webhook-fail-first': 0,
    'exit-on-eof': false,
    'timeout-ms': 600000,
  },
  USAGE,
);
deadline(args.timeoutMs);
const app = appFromEnv();
// The SDK needs a host only for REST calls, which this server never makes.
const pusher = new Pusher({ appId: app.appId, key: app.key, secret: app.secret, host: '127.0.0.1', useTLS: false });
const forged = args.forgeSecret
  ? new Pusher({ appId: app.appId, key: app.key, secret: args.forgeSecret, host: '127.0.0.1', useTLS: false })
  : pusher;
const denied = list(args.deny);
/** Valid webhook requests still to answer 500 (--webhook-fail-first). */
let failsLeft = args.webhookFailFirst;
/** Largest request body accepted, in bytes (webhooks are batched and small). */
const MAX_BODY_BYTES = 1 << 20;

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body over 1 MiB'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Form-encoded or JSON body -> plain object. */
function fields(req, body) {
  const type = String(req.headers['content-type'] || '');
  if (type.includes('application/json')) return JSON.parse(body || '{}');
  return Object.fromEntries(new URLSearchParams(body));
}

function answer(res, status, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    // Browser pages served from another port call these endpoints too.
    'Access-Control-Allow-Origin': '*',
  });
  res.end(text);
}

function channelAuth(req, res, f) {
  const channel = f.channel_name;
  const socketId = f.socket_id;
  if (denied.some((p) => channel.startsWith(p))) {
    emit('auth', { channel, socket_id: socketId, status: 403 });
    return answer(res, 403, { error: 'denied by --deny' });
  }
  let presence;
  if (channel.startsWith('presence-')) {
    presence = { user_id: f.user_id || `user-${socketId}`, user_info: maybeJson(f.user_info || '{}') };
  }
  const auth = forged.authorizeChannel(socketId, channel, presence);
  emit('auth', { channel, socket_id: socketId, status: 200, user_id: presence ? presence.user_id : undefined });
  return answer(res, 200, auth);
}

function userAuth(req, res, f) {
  const socketId = f.socket_id;
  const user = { id: f.user_id || `user-${socketId}`, user_info: maybeJson(f.user_info || '{}') };
  const auth = forged.authenticateUser(socketId, user);
  emit('user_auth', { socket_id: socketId, user_id: user.id, status: 200 });
  return answer(res, 200, auth);
}

function webhook(req, res, body) {
  const hook = pusher.webhook({ headers: req.headers, rawBody: body });
  const valid = hook.isValid();
  let parsed = {};
  let events = [];
  if (valid) {
    parsed = hook.getData();
    events = hook.getEvents();
  }
  let status = valid ? args.webhookStatus : 401;
  if (valid && failsLeft > 0) {
    failsLeft -= 1;
    status = 500;
  }
  emit('webhook', {
    valid,
    status,
    key: req.headers['x-pusher-key'],
    time_ms: parsed.time_ms,
    events,
    body: valid ? undefined : body.slice(0, 500),
  });
  return answer(res, status, {});
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'Content-Type, Authorization, X-Requested-With',
      'Access-Control-Allow-Methods': 'POST, OPTIONS',
    });
    return res.end();
  }
  try {
    const body = await readBody(req);
    if (req.method === 'POST' && url.pathname === '/pusher/auth') return channelAuth(req, res, fields(req, body));
    if (req.method === 'POST' && url.pathname === '/pusher/user-auth') return userAuth(req, res, fields(req, body));
    if (req.method === 'POST' && url.pathname === '/pusher/webhook') return webhook(req, res, body);
    emit('http_not_found', { method: req.method, path: url.pathname });
    return answer(res, 404, { error: 'not found' });
  } catch (e) {
    emit('http_error', { path: url.pathname, error: e.message });
    return answer(res, 400, { error: e.message });
  }
});

server.listen(args.port, '127.0.0.1', () => {
  const { port } = server.address();
  emit('listening', { port, url: `http://127.0.0.1:${port}` });
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (args.exitOnEof) {
  process.stdin.resume();
  process.stdin.on('end', stop);
}
