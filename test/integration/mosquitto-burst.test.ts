/**
 * Issue 10, finding 4: the shipped Mosquitto config dropped requests in a burst (300 devices at once, 120 answered;
 * "Outgoing messages are being dropped for client devicegate-1"). Here a private Mosquitto runs the shipped
 * deploy/mosquitto files (only ports and paths adapted, ./cluster.ts), the gateway's external transport
 * (ExternalBroker, the production client) answers every request, and 1000 mqtt.js devices connect and ask at once:
 * every one must be answered. Also: the shipped TLS listener serves a device with the certificates of
 * deploy/gen-certs.sh.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ExternalBroker } from '../../src/transport/external.ts';
import { topics } from '../../src/transport/topics.ts';
import {
  type TestDevice,
  closeAllDevices,
  connectDevice,
  fixedPendingReply,
  ridOf,
} from '../helpers/device.ts';
import { freePort, stopAll } from '../helpers/procs.ts';
import {
  type Broker,
  DEPLOY_DIR,
  GATEWAY_PASSWORD,
  PREFIX,
  shippedTlsListener,
  startBroker,
} from './cluster.ts';

const KEY = 'mosquitto-burst-test-fleet-key';
const BURST = 1000;
/** connects in flight at once while the fleet comes up (Mosquitto checks a PBKDF2 password per connect) */
const CONNECT_CONCURRENCY = 100;
const ids = Array.from({ length: BURST }, (_, i) => `burst-${i}`);

let broker: Broker;
let transport: ExternalBroker;
let certDir: string;
let tlsPort: number;
const answered = new Set<string>();

beforeAll(async () => {
  certDir = await mkdtemp(path.join(tmpdir(), 'dg-mosq-certs-'));
  await new Promise<void>((resolve, reject) =>
    execFile('bash', [path.join(DEPLOY_DIR, '..', 'gen-certs.sh'), certDir], (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  tlsPort = await freePort();
  broker = await startBroker({
    key: KEY,
    devices: ['tv-tls'],
    fleet: ids,
    extraConfig: await shippedTlsListener(tlsPort, certDir),
  });
  transport = new ExternalBroker({
    url: broker.url,
    username: 'devicegate-1',
    password: GATEWAY_PASSWORD,
    clientId: 'devicegate-1',
    shareGroup: `devicegate-${randomBytes(8).toString('hex')}`,
    topics: topics(PREFIX),
    log: createLogger('silent'),
    metrics: new Metrics(),
  });
  // The reply is not awaited inside the handler: with the handler holding its slot until Mosquitto's PUBACK, the
  // transport's own in-flight bound stalls a burst (finding 1, fixed in the transport on its own); this test is about
  // what the broker's queues let through.
  await transport.start(async (req) => {
    answered.add(req.deviceId);
    transport.publish(req.deviceId, fixedPendingReply(ridOf(req.payload))).catch(() => undefined);
  });
}, 60_000);

afterAll(async () => {
  await closeAllDevices();
  await transport?.close();
  await stopAll();
  await rm(certDir, { recursive: true, force: true });
});

async function connectFleet(): Promise<TestDevice[]> {
  const devices: TestDevice[] = [];
  for (let i = 0; i < ids.length; i += CONNECT_CONCURRENCY) {
    const batch = ids.slice(i, i + CONNECT_CONCURRENCY);
    devices.push(
      ...(await Promise.all(batch.map((id) => connectDevice({ url: broker.url, deviceId: id, key: KEY })))),
    );
  }
  return devices;
}

describe('the shipped Mosquitto config', () => {
  it(`answers every one of ${BURST} devices that ask at once`, async () => {
    const devices = await connectFleet();
    // every request is on the wire before the first reply can come back
    await Promise.all(devices.map((d) => d.request('authorize', { rid: `r-${d.id}` })));
    const replies = await Promise.allSettled(
      devices.map((d) => d.waitForReply({ rid: `r-${d.id}`, status: 'pending' }, { timeoutMs: 60_000 })),
    );
    const unanswered = devices.filter((_, i) => replies[i]!.status === 'rejected').map((d) => d.id);
    const log = await broker.log();
    expect({ unanswered: unanswered.length, reached: answered.size }).toEqual({
      unanswered: 0,
      reached: BURST,
    });
    expect(log).not.toMatch(/Outgoing messages are being dropped/);
  }, 120_000);

  it('serves devices on its TLS listener (8883) with the certificates of deploy/gen-certs.sh', async () => {
    const device = await connectDevice({
      url: `mqtts://localhost:${tlsPort}`,
      deviceId: 'tv-tls',
      key: KEY,
      tls: { ca: await readFile(path.join(certDir, 'ca.crt')) },
    });
    const reply = await device.ask('authorize', { rid: 'r-tls' });
    expect(reply.json).toMatchObject({ rid: 'r-tls', status: 'pending' });
  });
});
