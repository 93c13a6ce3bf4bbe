/**
 * Scenario 3 — the alternative: what a device costs without devicegate. The upstream is node-oidc-provider (the
 * project's demo identity provider, src/demo/idp.ts: RFC 8628 device flow and authorization code + PKCE, one
 * confidential client with `client_secret_basic`).
 *
 * - without devicegate: the device speaks RFC 8628 over HTTP straight to the upstream — one device authorization
 *   request, then a token request every `interval` (the provider sends none: 5 s, RFC 8628 §3.2), `slow_down`
 *   honoured — each request on a new TCP connection (an idle keep-alive connection would be closed by the server
 *   between polls).
 * - with devicegate (bridge mode): the device connects over MQTT 3.1.1 to the gateway's embedded broker, subscribes
 *   to its `res` topic, publishes `req/authorize`, receives `pending`, later `authorized`, and publishes `req/ack`.
 *   The person's Approve runs `BridgeFlows.approve()` in the gateway process, the person signs in and consents at the
 *   provider over HTTP (test/helpers/idp-person.ts), and the provider's redirect is handed to
 *   `BridgeFlows.callback()` in the gateway process (not over HTTP).
 * - also shown: devicegate in relay mode (the gateway polls the provider every 5 s on the device's behalf).
 *
 * The person approves 60–65 s after the device started (15–20 s with --quick; uniform, so approvals are not in
 * step with the 5 s polls). Per device: requests (HTTP requests;
 * MQTT `req/*` publishes), every packet the device sent, bytes on the wire both ways (TCP payload: socket bytes
 * read + written; no TLS, no TCP/IP headers — TLS would add a handshake to every HTTP request here and one to the
 * MQTT connection), TCP connections, and the time from the approval being complete at the provider to the device
 * holding the token.
 */
import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import mqtt from 'mqtt';
import { devicePassword } from '../../src/core/crypto.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { topics } from '../../src/transport/topics.ts';
import { parseReply } from '../../firmware-sim/replies.ts';
import { approveDeviceCode, authorizeInBrowserlessFlow } from '../../test/helpers/idp-person.ts';
import { freePort } from '../../test/helpers/procs.ts';
import { nowMs, sleep } from '../lib/clock.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis } from '../lib/context.ts';
import type { StartedInfo } from '../lib/host.ts';
import { type Host, spawnHost } from '../lib/procs.ts';
import { type ScenarioResult, mean, median } from '../lib/report.ts';

type Group = 'http-direct' | 'devicegate-bridge' | 'devicegate-relay';

interface DeviceCost {
  group: Group;
  /** HTTP requests, or MQTT `req/*` publishes */
  requests: number;
  /** every HTTP request or MQTT packet the device sent */
  packetsSent: number;
  bytesSent: number;
  bytesReceived: number;
  connections: number;
  /** ms from the approval being complete at the provider to the device holding the token */
  approvalToToken: number;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export async function alternative(ctx: BenchContext): Promise<ScenarioResult> {
  const perGroup = ctx.quick ? 4 : 10;
  const approveAfterMs = ctx.quick ? 15_000 : 60_000;
  const spreadMs = 5000;
  const log = createLogger('silent');
  const redis = await privateRedis();
  const httpPort = await freePort();
  const publicUrl = `http://127.0.0.1:${httpPort}`;
  let idp: DemoIdp | undefined;
  const hosts: Host[] = [];
  const costs: DeviceCost[] = [];
  const failures: string[] = [];
  try {
    idp = await startDemoIdp({
      host: '127.0.0.1',
      port: 0,
      redirectUris: [`${publicUrl}/oauth/callback`],
      deviceFlow: true,
      log,
    });
    const upstreamEnv = {
      DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
      // the demo IdP's one person approves every benchmark device: no per-person approval cap
      DEVICEGATE_APPROVALS_PER_PERSON: '0',
    };
    const bridgeHost = await spawnHost('gateway-bridge');
    hosts.push(bridgeHost);
    const bridge = await bridgeHost.call<StartedInfo>({
      op: 'start-gateway',
      bridge: true,
      env: gatewayEnv({
        redisUrl: redis.proc.url,
        issuer: idp.issuer,
        mode: 'authorization_code',
        extra: { ...upstreamEnv, DEVICEGATE_HTTP_PORT: String(httpPort), DEVICEGATE_PUBLIC_URL: publicUrl },
      }),
    });
    const relayHost = await spawnHost('gateway-relay');
    hosts.push(relayHost);
    const relay = await relayHost.call<StartedInfo>({
      op: 'start-gateway',
      env: gatewayEnv({
        redisUrl: redis.proc.url,
        issuer: idp.issuer,
        mode: 'device',
        extra: { ...upstreamEnv, DEVICEGATE_REDIS_KEY_PREFIX: 'relay:' },
      }),
    });
    const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
      device_authorization_endpoint: string;
      token_endpoint: string;
    };
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(idp.clientId)}:${encodeURIComponent(idp.clientSecret)}`).toString('base64')}`;
    const upstream = idp;

    const jobs: Array<Promise<void>> = [];
    for (let i = 0; i < perGroup; i++) {
      const delay = (i / perGroup) * spreadMs;
      // the person is not in step with anyone's polling: approvals fall anywhere in one 5 s interval
      const approveAfter = approveAfterMs + Math.random() * 5000;
      const track = (group: Group, p: Promise<DeviceCost>) =>
        jobs.push(
          p.then(
            (c) => void costs.push(c),
            (err: unknown) =>
              void failures.push(`${group}: ${err instanceof Error ? err.message : String(err)}`),
          ),
        );
      track(
        'http-direct',
        sleep(delay).then(() => httpDevice(meta, basic, approveAfter)),
      );
      track(
        'devicegate-bridge',
        sleep(delay).then(() =>
          mqttDevice('devicegate-bridge', bridge.mqttUrl!, `tvb-${i}`, approveAfter, async (userCode) => {
            const begun = await bridgeHost.call<{ redirectUrl: string; state: string }>({
              op: 'bridge-begin',
              userCode,
            });
            const callback = await authorizeInBrowserlessFlow(begun.redirectUrl);
            const approvedAt = nowMs();
            // the browser's redirect to /oauth/callback, handed to the gateway process
            void bridgeHost
              .call({ op: 'bridge-finish', callbackUrl: callback.href, state: begun.state })
              .catch(() => undefined); // the device is told either way
            return approvedAt;
          }),
        ),
      );
      track(
        'devicegate-relay',
        sleep(delay).then(() =>
          mqttDevice(
            'devicegate-relay',
            relay.mqttUrl!,
            `tvr-${i}`,
            approveAfter,
            async (userCode, pending) => {
              await approveDeviceCode(
                pending.verification_uri_complete ?? pending.verification_uri,
                userCode,
              );
              return nowMs();
            },
          ),
        ),
      );
    }
    await Promise.all(jobs);
    void upstream;
  } finally {
    await Promise.allSettled(hosts.map((h) => h.stop()));
    await idp?.close();
    await redis.close();
  }

  const of = (g: Group) => costs.filter((c) => c.group === g);
  const avg = (g: Group, f: (c: DeviceCost) => number) => mean(of(g).map(f));
  const med = (g: Group, f: (c: DeviceCost) => number) => median(of(g).map(f));
  const bytes = (c: DeviceCost) => c.bytesSent + c.bytesReceived;
  const direct = {
    requests: avg('http-direct', (c) => c.requests),
    bytes: avg('http-direct', bytes),
    latency: med('http-direct', (c) => c.approvalToToken),
  };
  const bridged = {
    requests: avg('devicegate-bridge', (c) => c.requests),
    bytes: avg('devicegate-bridge', bytes),
    latency: med('devicegate-bridge', (c) => c.approvalToToken),
  };
  const notes = failures.map((f) => `device failed: ${f}`);
  return {
    id: 3,
    title: 'vs. HTTP polling',
    rows: [
      {
        metric: 'requests per device (HTTP requests vs MQTT req/* publishes)',
        unit: '',
        devicegate: bridged.requests,
        baseline: direct.requests,
        ratioOf: 'baseline/devicegate',
        goal: '≥ 5× fewer',
        met: direct.requests / bridged.requests >= 5,
      },
      {
        metric: 'packets sent per device (HTTP requests vs all MQTT packets)',
        unit: '',
        devicegate: avg('devicegate-bridge', (c) => c.packetsSent),
        baseline: direct.requests,
        ratioOf: 'baseline/devicegate',
      },
      {
        metric: 'bytes on the wire per device, both directions',
        unit: 'B',
        devicegate: bridged.bytes,
        baseline: direct.bytes,
        ratioOf: 'baseline/devicegate',
        goal: '≥ 5× fewer',
        met: direct.bytes / bridged.bytes >= 5,
      },
      {
        metric: 'approval → token on the device, median',
        unit: 'ms',
        devicegate: bridged.latency,
        baseline: direct.latency,
        ratioOf: 'baseline/devicegate',
        goal: '≥ 100× lower',
        met: direct.latency / bridged.latency >= 100,
      },
      {
        metric: 'relay mode: approval → token on the device, median',
        unit: 'ms',
        devicegate: med('devicegate-relay', (c) => c.approvalToToken),
        baseline: direct.latency,
        ratioOf: 'baseline/devicegate',
      },
    ],
    setup: {
      devicesPerGroup: perGroup,
      approveAfterMs,
      startsSpreadOverMs: spreadMs,
      upstream: 'node-oidc-provider (src/demo/idp.ts), client_secret_basic, scope openid',
      httpDirect: 'RFC 8628, interval 5 s (provider default), a new TCP connection per request',
      mqtt: 'MQTT 3.1.1, clean session, keepalive 60 s, QoS 1',
    },
    cpu: {},
    details: {
      perGroup: Object.fromEntries(
        (['http-direct', 'devicegate-bridge', 'devicegate-relay'] as const).map((g) => [
          g,
          {
            devices: of(g).length,
            requests: avg(g, (c) => c.requests),
            packetsSent: avg(g, (c) => c.packetsSent),
            bytesSent: avg(g, (c) => c.bytesSent),
            bytesReceived: avg(g, (c) => c.bytesReceived),
            connections: avg(g, (c) => c.connections),
            approvalToTokenMedian: med(g, (c) => c.approvalToToken),
            approvalToTokenMean: avg(g, (c) => c.approvalToToken),
            approvalToTokenMax: Math.max(...of(g).map((c) => c.approvalToToken)),
          },
        ]),
      ),
      devices: costs,
    },
    notes,
  };
}

/** A device without devicegate: RFC 8628 over HTTP, counting what crosses its sockets. */
async function httpDevice(
  meta: { device_authorization_endpoint: string; token_endpoint: string },
  basic: string,
  approveAfterMs: number,
): Promise<DeviceCost> {
  const cost: DeviceCost = {
    group: 'http-direct',
    requests: 0,
    packetsSent: 0,
    bytesSent: 0,
    bytesReceived: 0,
    connections: 0,
    approvalToToken: Number.NaN,
  };
  const post = (url: string, form: Record<string, string>) =>
    new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
      const body = new URLSearchParams(form).toString();
      const req = httpRequest(url, {
        method: 'POST',
        agent: false,
        headers: {
          authorization: basic,
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
          accept: 'application/json',
        },
      });
      req.once('socket', (socket: Socket) => {
        cost.connections++;
        socket.once('close', () => {
          cost.bytesSent += socket.bytesWritten;
          cost.bytesReceived += socket.bytesRead;
        });
      });
      req.once('error', reject);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => {
          res.socket?.destroy(); // count the connection now (it would close anyway: Connection: close)
          try {
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
            });
          } catch (err) {
            reject(err);
          }
        });
      });
      cost.requests++;
      cost.packetsSent++;
      req.end(body);
    });

  const started = nowMs();
  const da = await post(meta.device_authorization_endpoint, { scope: 'openid' });
  if (da.status !== 200) throw new Error(`device authorization answered ${da.status}`);
  const deviceCode = String(da.json.device_code);
  const userCode = String(da.json.user_code);
  let interval = typeof da.json.interval === 'number' ? da.json.interval : 5;
  let approvedAt: number | undefined;
  const person = sleep(Math.max(0, started + approveAfterMs - nowMs()))
    .then(() =>
      approveDeviceCode(String(da.json.verification_uri_complete ?? da.json.verification_uri), userCode),
    )
    .then(() => {
      approvedAt = nowMs();
    });
  for (;;) {
    await sleep(interval * 1000);
    const r = await post(meta.token_endpoint, { grant_type: DEVICE_GRANT, device_code: deviceCode });
    if (r.status === 200) {
      const at = nowMs();
      await person;
      cost.approvalToToken = at - approvedAt!;
      await sleep(50); // the last socket's close event
      return cost;
    }
    if (r.json.error === 'slow_down') interval += 5;
    else if (r.json.error !== 'authorization_pending')
      throw new Error(`token endpoint: ${String(r.json.error)}`);
    if (nowMs() - started > approveAfterMs + 60_000) throw new Error('no token');
  }
}

/** A device with devicegate: MQTT 3.1.1, counting every packet and byte of its connection. */
async function mqttDevice(
  group: Group,
  url: string,
  id: string,
  approveAfterMs: number,
  approve: (
    userCode: string,
    pending: { verification_uri: string; verification_uri_complete?: string },
  ) => Promise<number>,
): Promise<DeviceCost> {
  const t = topics('devicegate/v1');
  const cost: DeviceCost = {
    group,
    requests: 0,
    packetsSent: 0,
    bytesSent: 0,
    bytesReceived: 0,
    connections: 1,
    approvalToToken: Number.NaN,
  };
  const started = nowMs();
  const client = mqtt.connect(url, {
    clientId: id,
    username: id,
    password: devicePassword(FLEET_KEY, id),
    protocolVersion: 4,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
  });
  client.on('packetsend', () => cost.packetsSent++);
  const replies: Array<{ reply: ReturnType<typeof parseReply>; at: number }> = [];
  let wake: (() => void) | undefined;
  client.on('message', (_topic, payload) => {
    replies.push({ reply: parseReply(payload), at: nowMs() });
    wake?.();
  });
  const next = async (status: string, timeoutMs: number) => {
    const deadline = nowMs() + timeoutMs;
    for (;;) {
      const i = replies.findIndex((r) => r.reply?.status === status);
      if (i >= 0) return replies.splice(i, 1)[0]!;
      const error = replies.find((r) => r.reply?.status === 'error');
      if (error?.reply?.status === 'error')
        throw new Error(`${id}: ${error.reply.error}: ${error.reply.error_description}`);
      const left = deadline - nowMs();
      if (left <= 0) throw new Error(`${id}: no ${status} reply`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    (client.stream as Socket).setNoDelay(true);
    await client.subscribeAsync(t.response(id), { qos: 1 });
    const rid = 'r1';
    cost.requests++;
    await client.publishAsync(t.request(id, 'authorize'), JSON.stringify({ rid }), { qos: 1 });
    const pending = (await next('pending', 10_000)).reply;
    if (pending?.status !== 'pending') throw new Error('no pending reply');
    await sleep(Math.max(0, started + approveAfterMs - nowMs()));
    const approvedAt = await approve(pending.user_code, pending);
    const authorized = await next('authorized', 30_000);
    cost.approvalToToken = authorized.at - approvedAt;
    cost.requests++;
    await client.publishAsync(t.request(id, 'ack'), JSON.stringify({ rid }), { qos: 1 });
    const socket = client.stream as Socket;
    cost.bytesSent = socket.bytesWritten;
    cost.bytesReceived = socket.bytesRead;
    return cost;
  } finally {
    await client.endAsync(true);
  }
}
