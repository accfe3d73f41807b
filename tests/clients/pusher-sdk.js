#!/usr/bin/env node
// The official Node server SDK (npm `pusher`) against a Pusher-compatible server's HTTP API on
// 127.0.0.1 without TLS: runs operations given as JSON, one after the other, and prints every
// answer (status + body) as one JSON line.
//
//   node pusher-sdk.js --port N [--host 127.0.0.1] [--app-id ID --key K --secret S]
//        [--timeout-ms 30000] [OP_JSON ...]
//   (no OP_JSON: reads one op per line from stdin until EOF)
//
// Ops (the SDK call each one makes):
//   {"op":"trigger","channel":"c","event":"e","data":ANY[,"socket_id":"1.2"][,"info":"subscription_count"]}
//   {"op":"trigger","channels":["a","b"],...}                  pusher.trigger(channels, ...)
//   {"op":"batch","batch":[{"channel","name","data"[,"socket_id","info"]},..]}   triggerBatch
//   {"op":"channels"[,"prefix":"presence-"][,"info":"user_count"]}   get /channels
//   {"op":"channel","channel":"c"[,"info":"subscription_count,user_count"]}   get /channels/c
//   {"op":"users","channel":"presence-c"}                       get /channels/c/users
//   {"op":"send_to_user","user_id":"u","event":"e","data":ANY}  sendToUser
//   {"op":"terminate","user_id":"u"}                            terminateUserConnections
//   {"op":"get","path":"/channels","params":{..}}               pusher.get (any path)
//   {"op":"post","path":"/events","body":{..}}                  pusher.post (any path)
//   {"op":"raw","method":"POST","path":"/events","body":"..."[,"timestamp_offset_s":-700]
//     [,"body_md5":"..."][,"secret":"wrong"][,"auth_key":"k"][,"query":{..}]}
//     A request signed here, not by the SDK, so a test can break one part of the signature.
//
// Output: {"type":"answer","op":..,"status":200,"body":<JSON or text>} per op (SDK errors
// with an HTTP status are answers too), {"type":"request_error","op":..,"error":..} when no HTTP
// answer came or the SDK refused the call itself (e.g. more than 100 channels), {"type":"done","ops":N} at the end.
'use strict';
const crypto = require('crypto');
const http = require('http');
const Pusher = require('pusher');
const { emit, parseArgs, deadline, appFromEnv, maybeJson } = require('./lib/common');

const USAGE = `
node pusher-sdk.js --port N [--host 127.0.0.1] [--app-id ID --key K --secret S] [--timeout-ms 30000] [OP_JSON ...]`;
const app = appFromEnv();
const args = parseArgs(
  { host: '127.0.0.1', port: 0, 'app-id': app.appId, key: app.key, secret: app.secret, 'timeout-ms': 30000 },
  USAGE,
);
if (!args.port) {
  process.stderr.write(`--port is required\n${USAGE}\n`);
  process.exit(2);
}
deadline(args.timeoutMs);
const pusher = new Pusher({
  appId: args.appId,
  key: args.key,
  secret: args.secret,
  host: args.host,
  port: String(args.port),
  useTLS: false,
  timeout: 10000,
});

/** Runs `call` (an SDK call) and prints its answer; the SDK's own refusals are request_error. */
async function answered(op, call) {
  try {
    const res = await call();
    emit('answer', { op, status: res.status, body: maybeJson(await res.text()) });
  } catch (e) {
    // pusher's RequestError carries the HTTP answer when there was one.
    if (e && typeof e.status === 'number') emit('answer', { op, status: e.status, body: maybeJson(e.body) });
    else emit('request_error', { op, error: String(e && e.message ? e.message : e) });
  }
}

/** A request signed by hand (Pusher's REST signing), with parts a test may break. */
function raw(c) {
  const method = (c.method || 'POST').toUpperCase();
  const path = `/apps/${args.appId}${c.path}`;
  const body = c.body === undefined ? '' : typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
  const query = {
    auth_key: c.auth_key || args.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000) + (c.timestamp_offset_s || 0)),
    auth_version: '1.0',
    ...(c.query || {}),
  };
  if (body) query.body_md5 = c.body_md5 || crypto.createHash('md5').update(body).digest('hex');
  const sorted = Object.keys(query)
    .sort()
    .map((k) => `${k.toLowerCase()}=${query[k]}`)
    .join('&');
  const signature = crypto
    .createHmac('sha256', c.secret || args.secret)
    .update(`${method}\n${path}\n${sorted}`)
    .digest('hex');
  const qs = new URLSearchParams({ ...query, auth_signature: c.signature || signature }).toString();
  return new Promise((resolve) => {
    const req = http.request(
      { host: args.host, port: args.port, method, path: `${path}?${qs}`, headers: { 'Content-Type': 'application/json' } },
      (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          emit('answer', { op: 'raw', status: res.statusCode, body: maybeJson(Buffer.concat(chunks).toString('utf8')) });
          resolve();
        });
      },
    );
    req.on('error', (e) => {
      emit('request_error', { op: 'raw', error: e.message });
      resolve();
    });
    req.end(body);
  });
}

function params(c) {
  const p = {};
  if (c.socket_id) p.socket_id = c.socket_id;
  if (c.info) p.info = c.info;
  return p;
}

const ops = {
  trigger: (c) => answered('trigger', () => pusher.trigger(c.channels || c.channel, c.event, c.data, params(c))),
  batch: (c) => answered('batch', () => pusher.triggerBatch(c.batch)),
  channels: (c) => {
    const p = {};
    if (c.prefix) p.filter_by_prefix = c.prefix;
    if (c.info) p.info = c.info;
    return answered('channels', () => pusher.get({ path: '/channels', params: p }));
  },
  channel: (c) =>
    answered('channel', () => pusher.get({ path: `/channels/${c.channel}`, params: c.info ? { info: c.info } : {} })),
  users: (c) => answered('users', () => pusher.get({ path: `/channels/${c.channel}/users` })),
  send_to_user: (c) => answered('send_to_user', () => pusher.sendToUser(c.user_id, c.event, c.data)),
  terminate: (c) => answered('terminate', () => pusher.terminateUserConnections(c.user_id)),
  get: (c) => answered('get', () => pusher.get({ path: c.path, params: c.params || {} })),
  post: (c) => answered('post', () => pusher.post({ path: c.path, body: c.body || {} })),
  raw,
};

async function run(c, count) {
  const op = ops[c.op];
  if (!op) {
    emit('bad_command', { op: c.op });
    return count;
  }
  await op(c);
  return count + 1;
}

async function main() {
  let count = 0;
  if (args._.length) {
    // Bounded: one step per argument.
    for (const text of args._) count = await run(JSON.parse(text), count);
  } else {
    const lines = require('readline').createInterface({ input: process.stdin });
    // Bounded: by the lines on stdin (ends at EOF).
    for await (const line of lines) {
      if (!line.trim()) continue;
      let c;
      try {
        c = JSON.parse(line);
      } catch (e) {
        emit('bad_command', { line: line.slice(0, 200), error: e.message });
        continue;
      }
      count = await run(c, count);
    }
  }
  emit('done', { ops: count });
}
main().then(
  () => process.exit(0),
  (e) => {
    emit('fatal', { message: String(e && e.message ? e.message : e) });
    process.exit(1);
  },
);
