#!/usr/bin/env node
// Laravel Echo (npm `laravel-echo`) with its pusher connector (pusher-js underneath), as a
// Laravel front end uses it, against a Pusher-compatible server on 127.0.0.1 without TLS.
//
//   node echo-client.mjs --port N [--host 127.0.0.1] [--key K] [--auth-endpoint URL]
//        [--channel a,b] [--private a,b] [--presence a,b] [--listen E1,E2] [--whisper typing]
//        [--user-id U] [--ignore-stdin] [--timeout-ms 30000]
//
// --channel NAME     Echo.channel(NAME)       (public channel NAME)
// --private NAME     Echo.private(NAME)       (channel "private-NAME"; auth via --auth-endpoint)
// --presence NAME    Echo.join(NAME)          (channel "presence-NAME"; here/joining/leaving)
// --listen E,..      .listen(E, ..) on every channel above. Echo's naming applies: "OrderShipped"
//                    is the event "App\Events\OrderShipped" on the wire; ".order-shipped" is
//                    "order-shipped" (a leading dot drops the namespace).
// --whisper NAME     .listenForWhisper(NAME) on private/presence channels (event client-NAME)
// Commands (stdin JSON lines; EOF = leave and exit unless --ignore-stdin):
//   {"op":"whisper","channel":"private-x","event":"typing","data":{..}}   Echo's whisper
//   {"op":"leave","channel":"x"}   Echo.leave(x)      {"op":"exit"}
//
// Output types: state {previous,current}, connected {socket_id}, subscribed {channel},
// subscription_error {channel,status}, event {channel,listen,data}, whisper {channel,event,data},
// here {channel,members}, joining {channel,info}, leaving {channel,info}, closed.
//
// An ES module: laravel-echo 2.5.0's CommonJS build (dist/echo.common.js) cannot be require()d
// (its package.json says "type": "module", so Node loads that file as ESM and it fails on
// `exports`); Laravel apps import it as ESM through their bundler anyway.
import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import common from './lib/common.js';

const { emit, parseArgs, deadline, list, commands, appFromEnv } = common;

const USAGE = `
node echo-client.mjs --port N [--host 127.0.0.1] [--key K] [--auth-endpoint URL]
     [--channel a,b] [--private a,b] [--presence a,b] [--listen E1,E2] [--whisper typing]
     [--user-id U] [--ignore-stdin] [--timeout-ms 30000]`;
const args = parseArgs(
  {
    host: '127.0.0.1',
    port: 0,
    key: appFromEnv().key,
    'auth-endpoint': '',
    channel: '',
    private: '',
    presence: '',
    listen: '',
    whisper: '',
    'user-id': '',
    'ignore-stdin': false,
    'timeout-ms': 30000,
  },
  USAGE,
);
if (!args.port) {
  process.stderr.write(`--port is required\n${USAGE}\n`);
  process.exit(2);
}

const echo = new Echo({
  broadcaster: 'pusher',
  Pusher,
  key: args.key,
  cluster: 'mt1',
  wsHost: args.host,
  wsPort: args.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  authEndpoint: args.authEndpoint || undefined,
  // Extra form fields for the auth endpoint (auth-server.js reads user_id for presence).
  auth: { headers: {}, params: args.userId ? { user_id: args.userId } : {} },
});
deadline(args.timeoutMs, () => echo.disconnect());
const connection = echo.connector.pusher.connection;
connection.bind('state_change', ({ previous, current }) => emit('state', { previous, current }));
connection.bind('connected', () => emit('connected', { socket_id: echo.socketId() }));
connection.bind('error', (error) => emit('error', { error: JSON.parse(JSON.stringify(error || null)) }));

function observe(channel, wireName, { whisper = false } = {}) {
  channel.subscribed(() => emit('subscribed', { channel: wireName }));
  channel.error((status) => emit('subscription_error', { channel: wireName, status: status && status.status }));
  for (const name of list(args.listen)) {
    channel.listen(name, (data) => emit('event', { channel: wireName, listen: name, data }));
  }
  if (whisper) {
    for (const name of list(args.whisper)) {
      channel.listenForWhisper(name, (data) => emit('whisper', { channel: wireName, event: name, data }));
    }
  }
  return channel;
}

const channels = {};
for (const name of list(args.channel)) channels[name] = observe(echo.channel(name), name);
for (const name of list(args.private)) {
  channels[`private-${name}`] = observe(echo.private(name), `private-${name}`, { whisper: true });
}
for (const name of list(args.presence)) {
  const wire = `presence-${name}`;
  const channel = observe(echo.join(name), wire, { whisper: true });
  channel
    .here((members) => emit('here', { channel: wire, members }))
    .joining((info) => emit('joining', { channel: wire, info }))
    .leaving((info) => emit('leaving', { channel: wire, info }));
  channels[wire] = channel;
}

function close() {
  echo.disconnect();
  emit('closed');
  setTimeout(() => process.exit(0), 100);
}
const ops = {
  whisper: (c) => {
    const channel = channels[c.channel];
    if (!channel) return emit('bad_command', { op: 'whisper', error: `not joined: ${c.channel}` });
    channel.whisper(c.event, c.data === undefined ? {} : c.data);
    return emit('whispered', { channel: c.channel, event: c.event });
  },
  leave: (c) => {
    echo.leave(c.channel);
    emit('left', { channel: c.channel });
  },
  exit: close,
};
if (!args.ignoreStdin) {
  commands((c) => (ops[c.op] ? ops[c.op](c) : emit('bad_command', { op: c.op })), close);
}
process.on('SIGTERM', close);
process.on('SIGINT', close);
