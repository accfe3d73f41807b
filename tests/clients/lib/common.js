// Shared helpers for the client scripts in tests/clients.
//
// Every script is a CLI that prints ONE JSON object per line on stdout, one per observation,
// each with `t_ms` (milliseconds since the script started) and `type`. Diagnostics go to
// stderr. Every script has a hard deadline (`--timeout-ms`, default 30000): when it passes the
// script prints {"type":"timeout"} and exits with code 3. Exit codes: 0 done, 1 a failure the
// script detected (printed as {"type":"fatal"}), 2 bad arguments, 3 deadline.
//
// Deliberately not here: assertions. The scripts report; the test that drives them decides.
'use strict';

const started = Date.now();

/** Prints one observation as a JSON line on stdout. */
function emit(type, fields = {}) {
  process.stdout.write(JSON.stringify({ t_ms: Date.now() - started, type, ...fields }) + '\n');
}

/** Prints {"type":"fatal"} and exits 1. */
function fatal(message, fields = {}) {
  emit('fatal', { message: String(message), ...fields });
  process.exit(1);
}

/**
 * Parses `--name value` / `--flag` arguments into an object (camelCased keys), checking them
 * against `spec`: { name: default } (a boolean default makes a flag). Positional arguments
 * land in `_`. Unknown options exit 2 with the usage text.
 */
function parseArgs(spec, usage, argv = process.argv.slice(2)) {
  const out = { _: [] };
  const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  for (const [k, v] of Object.entries(spec)) out[camel(k)] = v;
  // Bounded: one step per argument.
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stderr.write(usage.trim() + '\n');
      process.exit(0);
    }
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (!(name in spec)) {
      process.stderr.write(`unknown option --${name}\n\n${usage.trim()}\n`);
      process.exit(2);
    }
    if (typeof spec[name] === 'boolean') {
      out[camel(name)] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) {
        process.stderr.write(`--${name} needs a value\n`);
        process.exit(2);
      }
      value = argv[++i];
    }
    out[camel(name)] = typeof spec[name] === 'number' ? Number(value) : value;
  }
  return out;
}

/** Exits with {"type":"timeout"} and code 3 after `ms` (unref'd: does not keep the loop alive). */
function deadline(ms, onTimeout) {
  const timer = setTimeout(() => {
    if (onTimeout) {
      try {
        onTimeout();
      } catch (_) {
        // best effort
      }
    }
    emit('timeout', { after_ms: ms });
    process.exit(3);
  }, ms);
  timer.unref();
  return timer;
}

/** Splits "a,b,c" into ["a","b","c"] (empty string -> []). */
function list(text) {
  return text ? String(text).split(',').map((s) => s.trim()).filter(Boolean) : [];
}

/** Parses `text` as JSON when it is JSON, else returns it unchanged. */
function maybeJson(text) {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch (_) {
    return text;
  }
}

/**
 * Calls `onLine(obj)` for every JSON line on stdin (commands from the driving test); blank lines
 * are skipped, a line that is not JSON is reported as {"type":"bad_command"}. `onEnd` runs at EOF.
 * Bounded: a line longer than 1 MiB is refused.
 */
function commands(onLine, onEnd) {
  const MAX_LINE_BYTES = 1 << 20;
  let buffered = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    // Bounded: by the number of newlines in what arrived.
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      let cmd;
      try {
        cmd = JSON.parse(line);
      } catch (e) {
        emit('bad_command', { line: line.slice(0, 200), error: e.message });
        continue;
      }
      Promise.resolve()
        .then(() => onLine(cmd))
        .catch((e) => emit('command_error', { op: cmd.op, error: String(e && e.message ? e.message : e) }));
    }
    if (buffered.length > MAX_LINE_BYTES) {
      emit('bad_command', { error: 'line over 1 MiB' });
      buffered = '';
    }
  });
  process.stdin.on('end', () => onEnd && onEnd());
}

/** Resolves after `ms`. */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Default Pusher app (the same as bench/peers/common.sh pusher_env; numeric id: the Python SDK
 * accepts nothing else). */
function appFromEnv() {
  return {
    appId: process.env.PUSHER_APP_ID || '1',
    key: process.env.PUSHER_APP_KEY || 'app-key',
    secret: process.env.PUSHER_APP_SECRET || 'app-secret',
  };
}

module.exports = { emit, fatal, parseArgs, deadline, list, maybeJson, commands, sleep, appFromEnv };
