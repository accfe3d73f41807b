#!/usr/bin/env node
// pusher-js (the official Pusher Channels client, its Node build) against a Pusher-compatible
// server on 127.0.0.1, with no TLS: prints what the library reports, one JSON line each, and
// takes commands as JSON lines on stdin. pusher-js reconnects by itself after a server restart
// (close codes 4200-4299 or an abnormal close), and resubscribes every channel.
//
//   node pusher-client.js --port N [--host 127.0.0.1] [--key K] [--subscribe a,b]
//        [--auth-endpoint URL] [--user-auth-endpoint URL] [--user-id U] [--user-info JSON]
//        [--signin] [--raw] [--ignore-stdin] [--activity-timeout-ms N] [--timeout-ms 30000]
//
// Commands (stdin, one JSON object a line; EOF = disconnect and exit 0 unless --ignore-stdin):
//   {"op":"subscribe","channel":"c"}          {"op":"unsubscribe","channel":"c"}
//   {"op":"trigger","channel":"private-c","event":"client-x","data":{..}}   (client event)
//   {"op":"signin"}   {"op":"members","channel":"presence-c"}   {"op":"state"}
//   {"op":"disconnect"}   {"op":"connect"}   {"op":"exit"}
//
// Output types:
//   state          {previous, current}               every connection state change
//   connected      {socket_id}                       each time a connection is established
//   subscribed     {channel[, members, count, me]}   pusher:subscription_succeeded
//   subscription_error {channel, status, error}      pusher:subscription_error
//   event          {channel, event, data[, user_id]} every non-internal event on a channel
//   member_added / member_removed {channel, id, info}
//   cache_miss     {channel}                         pusher:cache_miss (cache channels)
//   subscription_count {channel, count}              pusher_internal:subscription_count
//   members        {channel, count, me, members}     answer to "members"
//   signin_success {user_data}                       pusher:signin_success
//   user_event     {event, data}                     events sent to the signed-in user
//   error          {error}                           pusher-js connection errors (pusher:error
//                                                    arrives as {type:"PusherError",data:{code,message}})
//   triggered      {channel, event, ok}              result of a "trigger" command
//   raw            {message}                         every protocol message received (--raw)
//   closed         {}                                after "disconnect"/EOF, before exit
'use strict';
const Pusher = require('pusher-js');
const { emit, parseArgs, deadline, list, commands, appFromEnv, maybeJson } = require('./lib/common');

const USAGE = `
node pusher-client.js --port N [--host 127.0.0.1] [--key K] [--subscribe a,b]
     [--auth-endpoint URL] [--user-auth-endpoint URL] [--user-id U] [--user-info JSON]
     [--signin] [--raw] [--ignore-stdin] [--activity-timeout-ms N] [--timeout-ms 30000]`;
const args = parseArgs(
  {
    host: '127.0.0.1',
    port: 0,
    key: appFromEnv().key,
    subscribe: '',
    'auth-endpoint': '',
    'user-auth-endpoint': '',
    'user-id': '',
    'user-info': '',
    signin: false,
    raw: false,
    'ignore-stdin': false,
    'activity-timeout-ms': 0,
    'timeout-ms': 30000,
  },
  USAGE,
);
if (!args.port) {
  process.stderr.write(`--port is required\n${USAGE}\n`);
  process.exit(2);
}

// Sent to the auth endpoints with socket_id and channel_name (the endpoint of auth-server.js
// reads them as the presence member / signed-in user).
const params = {};
if (args.userId) params.user_id = args.userId;
if (args.userInfo) params.user_info = args.userInfo;

const options = {
  cluster: 'mt1', // required by pusher-js 8; unused once wsHost is set
  wsHost: args.host,
  wsPort: args.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
};
if (args.activityTimeoutMs) options.activityTimeout = args.activityTimeoutMs;
if (args.authEndpoint) options.channelAuthorization = { endpoint: args.authEndpoint, transport: 'ajax', params };
if (args.userAuthEndpoint) options.userAuthentication = { endpoint: args.userAuthEndpoint, transport: 'ajax', params };

const pusher = new Pusher(args.key, options);
deadline(args.timeoutMs, () => pusher.disconnect());

pusher.connection.bind('state_change', ({ previous, current }) => emit('state', { previous, current }));
pusher.connection.bind('connected', () => emit('connected', { socket_id: pusher.connection.socket_id }));
pusher.connection.bind('error', (error) => emit('error', { error: plain(error) }));
pusher.connection.bind('message', (message) => {
  if (args.raw) emit('raw', { message });
  if (message.event === 'pusher:signin_success') emit('signin_success', { user_data: maybeJson(message.data.user_data) });
});
pusher.user.bind_global((event, data) => emit('user_event', { event, data }));

/** An Error or event object as plain JSON. */
function plain(value) {
  if (value instanceof Error) return { message: value.message };
  try {
    return JSON.parse(JSON.stringify(value));
  } catch (_) {
    return String(value);
  }
}

function membersOf(channel) {
  const m = channel.members;
  return { count: m.count, me: m.me, members: m.members };
}

function subscribe(name) {
  const channel = pusher.subscribe(name);
  if (channel.__observed) return;
  channel.__observed = true;
  // Report every event as the channel dispatches it, with the metadata (user_id on presence
  // channels) that pusher-js passes only to per-event callbacks.
  const dispatch = channel.emit.bind(channel);
  channel.emit = (event, data, metadata) => {
    if (!event.startsWith('pusher:') && !event.startsWith('pusher_internal:')) {
      emit('event', { channel: name, event, data, user_id: metadata && metadata.user_id });
    }
    return dispatch(event, data, metadata);
  };
  channel.bind('pusher:subscription_succeeded', () => {
    emit('subscribed', { channel: name, ...(name.startsWith('presence-') ? membersOf(channel) : {}) });
  });
  channel.bind('pusher:subscription_error', (status) => {
    emit('subscription_error', { channel: name, status: status && status.status, error: plain(status) });
  });
  channel.bind('pusher:cache_miss', () => emit('cache_miss', { channel: name }));
  channel.bind('pusher:subscription_count', (data) =>
    emit('subscription_count', { channel: name, count: data && data.subscription_count }),
  );
  channel.bind('pusher:member_added', (member) => emit('member_added', { channel: name, id: member.id, info: member.info }));
  channel.bind('pusher:member_removed', (member) =>
    emit('member_removed', { channel: name, id: member.id, info: member.info }),
  );
}

function close() {
  pusher.disconnect();
  emit('closed');
  // Let the close frame go out.
  setTimeout(() => process.exit(0), 100);
}

for (const name of list(args.subscribe)) subscribe(name);
if (args.signin) pusher.signin();

const ops = {
  subscribe: (c) => subscribe(c.channel),
  unsubscribe: (c) => {
    pusher.unsubscribe(c.channel);
    emit('unsubscribed', { channel: c.channel });
  },
  trigger: (c) => {
    const channel = pusher.channel(c.channel);
    const ok = channel ? channel.trigger(c.event, c.data === undefined ? {} : c.data) : false;
    emit('triggered', { channel: c.channel, event: c.event, ok: Boolean(ok) });
  },
  signin: () => pusher.signin(),
  members: (c) => {
    const channel = pusher.channel(c.channel);
    emit('members', { channel: c.channel, ...(channel && channel.members ? membersOf(channel) : { count: null }) });
  },
  state: () => emit('connection', { state: pusher.connection.state, socket_id: pusher.connection.socket_id }),
  disconnect: () => pusher.disconnect(),
  connect: () => pusher.connect(),
  exit: close,
};
if (!args.ignoreStdin) {
  commands((c) => {
    const op = ops[c.op];
    if (!op) return emit('bad_command', { op: c.op });
    return op(c);
  }, close);
}
process.on('SIGTERM', close);
process.on('SIGINT', close);
