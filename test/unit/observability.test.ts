/**
 * Metrics (prom-client behind `Metrics`, scraped through the real `/metrics` route) and the logger's `err`
 * serializer (through a real pino logger writing to a stream).
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { createLogger, serializeError } from '../../src/observability/log.ts';
import { METRICS } from '../../src/observability/metric-table.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { drained, logDestination } from '../../src/observability/stdio.ts';
import { buildApp } from '../../src/web/app.ts';

async function scrape(metrics: Metrics): Promise<{ contentType: string; body: string }> {
  const app = await buildApp({ log: createLogger('silent'), metrics, readiness: {} });
  try {
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    return { contentType: String(res.headers['content-type']), body: res.body };
  } finally {
    await app.close();
  }
}

/** The sample lines of `name` (with its labels), without HELP/TYPE. */
function samples(body: string, name: string): string[] {
  return body.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('metrics', () => {
  it('exposes every declared metric with its HELP and TYPE, in the Prometheus text format', async () => {
    const metrics = new Metrics();
    metrics.gauge('devicegate_mqtt_clients', 'Devices connected to the embedded broker.', () => 3);
    metrics.gauge(
      'devicegate_request_queue_length',
      'Device requests waiting for a processing slot.',
      () => 0,
    );
    const { contentType, body } = await scrape(metrics);
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const [name, spec] of Object.entries(METRICS)) {
      expect(body).toContain(`# HELP ${name} ${spec.help}\n`);
      expect(body).toContain(`# TYPE ${name} ${spec.type === 'info' ? 'gauge' : spec.type}\n`);
    }
    expect(samples(body, 'devicegate_mqtt_clients')).toEqual(['devicegate_mqtt_clients 3']);
  });

  it('counts counters by label set, and reads them back with value()', async () => {
    const metrics = new Metrics();
    metrics.inc('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' });
    metrics.inc('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' }, 2);
    metrics.inc('devicegate_mqtt_denied_total', { op: 'subscribe', reason: 'not_own_topic' });
    metrics.inc('devicegate_code_entry_failures_total');
    expect(await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' })).toBe(3);
    expect(
      await metrics.value('devicegate_mqtt_denied_total', { op: 'subscribe', reason: 'not_own_topic' }),
    ).toBe(1);
    expect(await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'other' })).toBe(0);
    expect(await metrics.value('devicegate_code_entry_failures_total')).toBe(1);
    expect(await metrics.value('devicegate_refreshes_total')).toBe(0);
    const { body } = await scrape(metrics);
    expect(samples(body, 'devicegate_mqtt_denied_total')).toEqual([
      'devicegate_mqtt_denied_total{op="publish",reason="retain"} 3',
      'devicegate_mqtt_denied_total{op="subscribe",reason="not_own_topic"} 1',
    ]);
    expect(samples(body, 'devicegate_code_entry_failures_total')).toEqual([
      'devicegate_code_entry_failures_total 1',
    ]);
  });

  it('refuses names and labels that are not declared, at compile time and at run time', () => {
    const metrics = new Metrics();
    // @ts-expect-error a misspelt counter
    expect(() => metrics.inc('devicegate_device_request_total', { action: 'authorize' })).toThrow(
      /not declared/,
    );
    // @ts-expect-error a label the counter was not declared with
    expect(() => metrics.inc('devicegate_device_requests_total', { route: 'x' })).toThrow();
    // @ts-expect-error a counter is not a histogram
    expect(() => metrics.observe('devicegate_refreshes_total', 1)).toThrow(/not declared/);
  });

  it('records latencies in histograms with their declared buckets', async () => {
    const metrics = new Metrics();
    metrics.observe('devicegate_device_request_seconds', 0.003);
    metrics.observe('devicegate_device_request_seconds', 0.2);
    metrics.observe('devicegate_approval_to_device_seconds', 7);
    const { body } = await scrape(metrics);
    const requests = samples(body, 'devicegate_device_request_seconds_bucket');
    expect(requests.map((l) => /le="([^"]+)"/.exec(l)?.[1])).toEqual([
      ...METRICS.devicegate_device_request_seconds.buckets.map(String),
      '+Inf',
    ]);
    expect(requests).toContain('devicegate_device_request_seconds_bucket{le="0.001"} 0');
    expect(requests).toContain('devicegate_device_request_seconds_bucket{le="0.005"} 1');
    expect(requests).toContain('devicegate_device_request_seconds_bucket{le="0.25"} 2');
    expect(samples(body, 'devicegate_device_request_seconds_count')).toEqual([
      'devicegate_device_request_seconds_count 2',
    ]);
    expect(samples(body, 'devicegate_device_request_seconds_sum')).toEqual([
      'devicegate_device_request_seconds_sum 0.203',
    ]);
    expect(samples(body, 'devicegate_approval_to_device_seconds_bucket')).toContain(
      'devicegate_approval_to_device_seconds_bucket{le="10"} 1',
    );
    expect(samples(body, 'devicegate_approval_to_device_seconds_bucket')).toContain(
      'devicegate_approval_to_device_seconds_bucket{le="5"} 0',
    );
  });

  it('exposes the process metrics and the build info', async () => {
    const { body } = await scrape(new Metrics());
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(samples(body, name), name).toHaveLength(1);
    }
    expect(samples(body, 'devicegate_build_info')).toEqual([
      `devicegate_build_info{version="${pkg.version}",node="${process.version}"} 1`,
    ]);
  });

  it('reads gauges at scrape time, and a second binding replaces the reader', async () => {
    const metrics = new Metrics();
    expect(samples((await scrape(metrics)).body, 'devicegate_mqtt_clients')).toEqual([]);
    let clients = 1;
    metrics.gauge('devicegate_mqtt_clients', 'Devices connected to the embedded broker.', () => clients);
    expect(samples((await scrape(metrics)).body, 'devicegate_mqtt_clients')).toEqual([
      'devicegate_mqtt_clients 1',
    ]);
    clients = 5;
    expect(samples((await scrape(metrics)).body, 'devicegate_mqtt_clients')).toEqual([
      'devicegate_mqtt_clients 5',
    ]);
    metrics.gauge('devicegate_mqtt_clients', 'Devices connected to the embedded broker.', () => 42);
    expect(samples((await scrape(metrics)).body, 'devicegate_mqtt_clients')).toEqual([
      'devicegate_mqtt_clients 42',
    ]);
  });

  it('keeps two instances apart: no series, gauge or observation of one shows in the other', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.inc('devicegate_device_requests_total', { action: 'authorize' });
    a.observe('devicegate_device_request_seconds', 0.01);
    a.gauge('devicegate_mqtt_clients', 'Devices connected to the embedded broker.', () => 7);
    b.inc('devicegate_device_requests_total', { action: 'status' }, 4);
    expect(await a.value('devicegate_device_requests_total', { action: 'authorize' })).toBe(1);
    expect(await b.value('devicegate_device_requests_total', { action: 'authorize' })).toBe(0);
    expect(await a.value('devicegate_device_requests_total', { action: 'status' })).toBe(0);
    const { body } = await scrape(b);
    expect(samples(body, 'devicegate_device_requests_total')).toEqual([
      'devicegate_device_requests_total{action="status"} 4',
    ]);
    expect(samples(body, 'devicegate_device_request_seconds_count')).toEqual([
      'devicegate_device_request_seconds_count 0',
    ]);
    expect(samples(body, 'devicegate_mqtt_clients')).toEqual([]);
  });
});

/** A pino logger at `info` whose lines are collected, parsed. */
function capture(): {
  log: ReturnType<typeof createLogger>;
  raw: string[];
  lines: () => Record<string, unknown>[];
} {
  const raw: string[] = [];
  const log = createLogger('info', { write: (line: string) => raw.push(line) });
  return { log, raw, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('logger', () => {
  it('logs an error with its type, message, stack and code, and only the type of its cause payload', () => {
    const { log, raw, lines } = capture();
    const err = new Error('token request failed', { cause: { access_token: 'SECRET', error: 'SECRET' } });
    Object.assign(err, { code: 'OAUTH_RESPONSE_BODY_ERROR', body: 'SECRET', response: { token: 'SECRET' } });
    log.error({ err }, 'upstream failed');
    log.warn(err, 'the same error as the merging object');
    expect(raw).toHaveLength(2);
    expect(raw.join('\n')).not.toContain('SECRET');
    for (const line of lines()) {
      expect(line['err']).toEqual({
        type: 'Error',
        message: 'token request failed',
        stack: err.stack,
        code: 'OAUTH_RESPONSE_BODY_ERROR',
        cause: { type: 'Object' },
      });
    }
    expect(String(err.stack)).toContain('observability.test.ts');
  });

  it('describes a chain of Error causes by type and message, bounded in depth', () => {
    let err: Error = new TypeError('innermost', { cause: new Response('SECRET') });
    for (let i = 4; i >= 1; i--) err = new RangeError(`level ${i}`, { cause: err });
    const { log, raw, lines } = capture();
    log.error({ err }, 'nested');
    expect(raw.join('')).not.toContain('SECRET');
    expect(lines()[0]!['err']).toMatchObject({
      type: 'RangeError',
      message: 'level 1',
      cause: {
        type: 'RangeError',
        message: 'level 2',
        cause: { type: 'RangeError', message: 'level 3', cause: { type: 'RangeError', message: 'level 4' } },
      },
    });
    expect(JSON.stringify(lines()[0]!['err'])).not.toContain('innermost');
  });

  it('keeps a string err as written, and logs any other non-Error by its type', () => {
    expect(serializeError('UnavailableError: redis down')).toBe('UnavailableError: redis down');
    expect(serializeError(42)).toEqual({ type: 'number' });
    expect(serializeError(null)).toEqual({ type: 'object' });
    expect(serializeError(Object.create(null))).toEqual({ type: 'object' });
    expect(serializeError(new Map([['token', 'SECRET']]))).toEqual({ type: 'Map' });
  });

  it('still redacts top-level fields named like secrets', () => {
    const { log, raw, lines } = capture();
    log.info({ access_token: 'SECRET', device_code: 'SECRET', deviceId: 'tv-1' }, 'x');
    expect(raw.join('')).not.toContain('SECRET');
    expect(lines()[0]).toMatchObject({
      access_token: '[redacted]',
      device_code: '[redacted]',
      deviceId: 'tv-1',
    });
  });
});

describe('the log destination (never blocks the process)', () => {
  /** A stream whose reader stalls: nothing it is given completes until `release()`. */
  function stalled(): { out: Writable; lines: () => string[]; release: () => void } {
    const got: string[] = [];
    const waiting: Array<() => void> = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk.toString('utf8'));
        waiting.push(cb);
      },
    });
    const release = () => {
      while (waiting.length > 0) waiting.shift()!();
    };
    return { out, lines: () => got.join('').split('\n').filter(Boolean), release };
  }

  it('drops lines while more than the bound waits, then says in one line how many were lost', () => {
    const s = stalled();
    const log = createLogger('info', logDestination(s.out, 1000));
    for (let i = 0; i < 50; i++) log.info({ i }, 'line');
    const kept = s.out.writableLength;
    expect(kept).toBeGreaterThan(1000);
    expect(kept).toBeLessThan(1500); // one line over the bound at most
    s.release();
    log.info('after');
    s.release();
    const lines = s.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    const keptCount = lines.filter((l) => l.msg === 'line').length;
    expect(lines.at(-2)).toMatchObject({
      msg: 'log lines dropped: stdout was not read',
      dropped: 50 - keptCount,
    });
    expect(lines.at(-1)).toMatchObject({ msg: 'after' });
  });

  it('writes nothing more, and throws nothing, once the pipe is dead (EPIPE)', () => {
    const s = stalled();
    const log = createLogger('info', logDestination(s.out));
    log.info('before');
    s.out.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    expect(() => log.info('after')).not.toThrow();
    expect(s.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['before']);
  });

  it('drained() waits for what was written, and no longer than its bound when the reader stalls', async () => {
    const s = stalled();
    s.out.write('one\n');
    let done = false;
    const waiting = drained(s.out, 60_000).then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    s.release();
    s.release();
    await waiting;
    s.out.write('two\n');
    await drained(s.out, 10); // never released: the bound ends the wait
    expect(s.out.writableLength).toBeGreaterThan(0);
  });
});
