'use strict';
// Broadcast peer for the ringcast benchmark, written as the ws README shows:
// one http server, WebSocketServer({ noServer: true }) fed from the 'upgrade'
// event, perMessageDeflate off; channels are a Map of Sets.
//   GET  /ws/{channel}       subscribe (RFC 6455)
//   POST /publish/{channel}  body = payload, sent to every subscriber as one text frame
// One process, one event loop (ws has no per-core workers; see README).
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const PORT = Number(process.env.PORT || 18103);
const HOST = process.env.HOST || '127.0.0.1';

/** @type {Map<string, Set<WebSocket>>} */
const channels = new Map();

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });

function channelOf(url, prefix) {
  if (!url.startsWith(prefix)) return null;
  const ch = url.slice(prefix.length);
  return ch.length > 0 && !ch.includes('/') && !ch.includes('?') ? ch : null;
}

// Node 20: http.createServer's noDelay defaults to true (TCP_NODELAY on every
// accepted socket, upgraded ones too); ws also calls socket.setNoDelay().
const server = http.createServer({ noDelay: true, keepAliveTimeout: 75_000 }, (req, res) => {
  const ch = req.method === 'POST' ? channelOf(req.url, '/publish/') : null;
  if (ch === null) {
    res.writeHead(404, { 'Content-Length': '0' }).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const payload = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const subs = channels.get(ch);
    let n = 0;
    if (subs) {
      for (const ws of subs) {
        if (ws.readyState === WebSocket.OPEN) {
          // binary: false -> text frame, sent as is (no re-encoding).
          ws.send(payload, { binary: false });
          n++;
        }
      }
    }
    // 202: frames handed to each socket (written or queued in ws/libuv), not delivered.
    const body = `queued to ${n}\n`;
    res.writeHead(202, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});

server.on('upgrade', (req, socket, head) => {
  const ch = channelOf(req.url, '/ws/');
  if (ch === null) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    let subs = channels.get(ch);
    if (!subs) channels.set(ch, (subs = new Set()));
    subs.add(ws);
    ws.on('error', () => {});
    ws.on('close', () => {
      subs.delete(ws);
      if (subs.size === 0 && channels.get(ch) === subs) channels.delete(ch);
    });
    // Incoming messages are ignored; pings are answered by ws itself (autoPong).
  });
});

server.listen({ port: PORT, host: HOST, backlog: 4096 });

function shutdown() {
  for (const subs of channels.values()) for (const ws of subs) ws.terminate();
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
