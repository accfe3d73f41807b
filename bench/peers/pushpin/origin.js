'use strict';
// Tiny GRIP origin for the Pushpin peer (Node.js stdlib only).
//   Pushpin routes every request here (route flag over_http):
//   - WebSocket /ws/{channel} arrives as WebSocket-over-HTTP (application/websocket-events):
//     answer OPEN plus a GRIP control message subscribing the connection to {channel}.
//   - POST /publish/{channel}: publish the raw body through Pushpin's HTTP control API
//     (POST http://127.0.0.1:$PUSHPIN_PUBLISH_PORT/publish/, ws-message format), then
//     answer 202 once Pushpin accepted it (queued in Pushpin, not yet delivered).
const http = require('http');

const ORIGIN_PORT = Number(process.env.ORIGIN_PORT || 28102);
const PUBLISH_PORT = Number(process.env.PUSHPIN_PUBLISH_PORT || 5561);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function channelOf(url, prefix) {
  if (!url.startsWith(prefix)) return null;
  const ch = url.slice(prefix.length);
  return ch.length > 0 && !ch.includes('/') && !ch.includes('?') ? ch : null;
}

// Parse "TYPE[ HEXLEN]\r\n[CONTENT\r\n]" events.
function parseEvents(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    const eol = buf.indexOf('\r\n', i);
    if (eol < 0) break;
    const line = buf.toString('latin1', i, eol);
    const sp = line.indexOf(' ');
    const type = sp < 0 ? line : line.slice(0, sp);
    i = eol + 2;
    let content = null;
    if (sp >= 0) {
      const len = parseInt(line.slice(sp + 1), 16);
      content = buf.subarray(i, i + len);
      i += len + 2;
    }
    out.push({ type, content });
  }
  return out;
}

function event(type, content) {
  if (content == null) return Buffer.from(`${type}\r\n`);
  const c = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return Buffer.concat([Buffer.from(`${type} ${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]);
}

function wsOverHttp(req, res, body, ch) {
  const out = [];
  for (const ev of parseEvents(body)) {
    switch (ev.type) {
      case 'OPEN':
        out.push(event('OPEN'));
        out.push(event('TEXT', 'c:' + JSON.stringify({ type: 'subscribe', channel: ch })));
        break;
      case 'PING':
        out.push(event('PONG', ev.content));
        break;
      case 'CLOSE':
        out.push(event('CLOSE', ev.content));
        break;
      default: // TEXT/BINARY from subscribers, PONG, DISCONNECT: nothing to do
        break;
    }
  }
  const payload = Buffer.concat(out);
  res.writeHead(200, {
    'Content-Type': 'application/websocket-events',
    'Sec-WebSocket-Extensions': 'grip',
    'Content-Length': payload.length,
  });
  res.end(payload);
}

function publish(res, body, ch) {
  const text = body.toString('utf8');
  const fmt = Buffer.from(text, 'utf8').equals(body)
    ? { content: text } // text frame
    : { 'content-bin': body.toString('base64') }; // not UTF-8: Pushpin sends a binary frame
  const item = JSON.stringify({ items: [{ channel: ch, formats: { 'ws-message': fmt } }] });
  const preq = http.request(
    {
      host: '127.0.0.1', port: PUBLISH_PORT, path: '/publish/', method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(item) },
    },
    (pres) => {
      const chunks = [];
      pres.on('data', (c) => chunks.push(c));
      pres.on('end', () => {
        const ok = pres.statusCode >= 200 && pres.statusCode < 300;
        const msg = ok ? 'accepted by pushpin\n' : `pushpin said ${pres.statusCode}: ${Buffer.concat(chunks)}\n`;
        res.writeHead(ok ? 202 : 502, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(msg) });
        res.end(msg);
      });
    },
  );
  preq.on('error', (e) => {
    res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`publish failed: ${e.message}\n`);
  });
  preq.end(item);
}

const server = http.createServer({ keepAliveTimeout: 75_000 }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const isWs = (req.headers['content-type'] || '').startsWith('application/websocket-events');
    let ch;
    if (isWs && (ch = channelOf(req.url, '/ws/')) !== null) return wsOverHttp(req, res, body, ch);
    if (req.method === 'POST' && (ch = channelOf(req.url, '/publish/')) !== null) return publish(res, body, ch);
    res.writeHead(404, { 'Content-Length': '0' });
    res.end();
  });
});
server.listen({ port: ORIGIN_PORT, host: '127.0.0.1', backlog: 4096 });
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
