#!/usr/bin/env node
// centrifuge-js (npm `centrifuge`, the official Centrifugo client SDK) in Node over `ws`,
// against a server speaking the Centrifugo bidirectional JSON protocol on 127.0.0.1:
// connects with a JWT, subscribes with recovery, prints publications with their offsets and
// what the SDK says about recovery (`wasRecovering`, `recovered`).
//
//   node centrifuge-client.js --url ws://127.0.0.1:N/connection/websocket
//        (--token JWT | --token-secret S [--user U] [--exp-s 3600] [--token-channels a,b] | --no-token)
//        [--subscribe a,b] [--since-offset N --since-epoch E] [--sub-token]
//        [--recoverable] [--positioned] [--ignore-stdin] [--timeout-ms 30000]
//
// The connection JWT is HS256 over {"sub":U,"exp":now+exp-s[,"channels":[..]]} (Centrifugo's
// connection token claims). --no-token connects without one (for servers that allow anonymous
// connections, or to see one refuse it). --sub-token adds a subscription token per channel
// ({"sub":U,"channel":C,"exp":..}, same secret), as `private-`/protected channels need.
// Recovery needs nothing from the client beyond staying subscribed: the SDK remembers each
// subscription's stream position (offset + epoch) and asks to recover from it when it
// resubscribes after a reconnect. --since-offset/--since-epoch start the first subscribe from a
// known position (the SDK's `since` option). --recoverable/--positioned ask for those flags when
// the server lets clients choose (Centrifugo namespaces usually decide server-side).
//
// Commands (stdin JSON lines; EOF = disconnect and exit 0 unless --ignore-stdin):
//   {"op":"subscribe","channel":"c"[,"since":{"offset":N,"epoch":"E"}]}   {"op":"unsubscribe","channel":"c"}
//   {"op":"drop"}        abort the WebSocket's TCP connection (no close frame; the SDK sees an
//                        abnormal close and reconnects by itself, recovering every subscription)
//   {"op":"disconnect"}  client.disconnect()      {"op":"connect"}  client.connect()
//   {"op":"history","channel":"c"[,"limit":N][,"since":{..}]}   {"op":"publish","channel":"c","data":..}
//   {"op":"exit"}
//
// Output types: connecting {code,reason}, connected {client,transport},
// disconnected {code,reason}, error {error_type,code,message}, subscribing {channel,code,reason},
// subscribed {channel,recoverable,positioned,was_recovering,recovered,
// has_recovered_publications,offset,epoch}, publication {channel,offset,data},
// unsubscribed {channel,code,reason}, sub_error {channel,error_type,code,message},
// history {channel,offset,epoch,publications:[{offset,data}]}, published {channel},
// request_error {op,code,message}, dropped, closed.
'use strict';
const crypto = require('crypto');
const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { emit, parseArgs, deadline, list, commands } = require('./lib/common');

const USAGE = `
node centrifuge-client.js --url ws://127.0.0.1:N/connection/websocket
     (--token JWT | --token-secret S [--user U] [--exp-s 3600] [--token-channels a,b] | --no-token)
     [--subscribe a,b] [--since-offset N --since-epoch E] [--sub-token]
     [--recoverable] [--positioned] [--ignore-stdin] [--timeout-ms 30000]`;
const args = parseArgs(
  {
    url: '',
    token: '',
    'token-secret': '',
    user: 'user-1',
    'exp-s': 3600,
    'token-channels': '',
    'no-token': false,
    subscribe: '',
    'since-offset': -1,
    'since-epoch': '',
    'sub-token': false,
    recoverable: false,
    positioned: false,
    'ignore-stdin': false,
    'timeout-ms': 30000,
  },
  USAGE,
);
if (!args.url || !(args.token || args.tokenSecret || args.noToken)) {
  process.stderr.write(`--url and one of --token / --token-secret / --no-token are required\n${USAGE}\n`);
  process.exit(2);
}

/** An HS256 JWT (RFC 7519) over `claims`. */
function jwt(claims, secret) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${crypto.createHmac('sha256', secret).update(signed).digest('base64url')}`;
}
const exp = () => Math.floor(Date.now() / 1000) + args.expS;
const connectionClaims = { sub: args.user, exp: exp() };
if (args.tokenChannels) connectionClaims.channels = list(args.tokenChannels);
const token = args.noToken ? '' : args.token || jwt(connectionClaims, args.tokenSecret);

// The WebSocket class the SDK uses: `ws`, remembering the live socket so "drop" can abort it.
let liveSocket = null;
class TrackedWebSocket extends WebSocket {
  constructor(...a) {
    super(...a);
    liveSocket = this;
  }
}

const client = new Centrifuge(args.url, { token, websocket: TrackedWebSocket, name: 'ringcast-tests' });
deadline(args.timeoutMs, () => client.disconnect());
const errorFields = (ctx) => ({
  error_type: ctx.type,
  code: ctx.error && ctx.error.code,
  message: ctx.error && ctx.error.message,
});
client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit('connected', { client: ctx.client, transport: ctx.transport }));
client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => emit('error', errorFields(ctx)));

function subscribe(channel, since) {
  if (client.getSubscription(channel)) return;
  const options = {};
  if (since) options.since = since;
  if (args.recoverable) options.recoverable = true;
  if (args.positioned) options.positioned = true;
  if (args.subToken && args.tokenSecret) {
    options.getToken = async () => jwt({ sub: args.user, channel, exp: exp() }, args.tokenSecret);
  }
  const sub = client.newSubscription(channel, options);
  sub.on('subscribing', (ctx) => emit('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      was_recovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      has_recovered_publications: ctx.hasRecoveredPublications,
      offset: ctx.streamPosition && ctx.streamPosition.offset,
      epoch: ctx.streamPosition && ctx.streamPosition.epoch,
    }),
  );
  sub.on('publication', (ctx) => emit('publication', { channel, offset: ctx.offset, data: ctx.data }));
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { channel, ...errorFields(ctx) }));
  sub.subscribe();
}

const initialSince = args.sinceOffset >= 0 ? { offset: args.sinceOffset, epoch: args.sinceEpoch } : null;
for (const channel of list(args.subscribe)) subscribe(channel, initialSince);
client.connect();

function close() {
  client.disconnect();
  emit('closed');
  setTimeout(() => process.exit(0), 100);
}
const requestError = (op) => (e) => emit('request_error', { op, code: e && e.code, message: e && e.message });
const ops = {
  subscribe: (c) => subscribe(c.channel, c.since),
  unsubscribe: (c) => {
    const sub = client.getSubscription(c.channel);
    if (sub) {
      sub.unsubscribe();
      client.removeSubscription(sub);
    }
  },
  drop: () => {
    if (liveSocket) liveSocket.terminate();
    emit('dropped');
  },
  disconnect: () => client.disconnect(),
  connect: () => client.connect(),
  history: (c) =>
    client
      .history(c.channel, { limit: c.limit === undefined ? -1 : c.limit, since: c.since, reverse: Boolean(c.reverse) })
      .then((r) =>
        emit('history', {
          channel: c.channel,
          offset: r.offset,
          epoch: r.epoch,
          publications: r.publications.map((p) => ({ offset: p.offset, data: p.data })),
        }),
      )
      .catch(requestError('history')),
  publish: (c) =>
    client
      .publish(c.channel, c.data)
      .then(() => emit('published', { channel: c.channel }))
      .catch(requestError('publish')),
  exit: close,
};
if (!args.ignoreStdin) {
  commands((c) => (ops[c.op] ? ops[c.op](c) : emit('bad_command', { op: c.op })), close);
}
process.on('SIGTERM', close);
process.on('SIGINT', close);
