/**
 * The HTTP surface (docs/architecture.md) as a fastify instance. `buildApp` only builds; the gateway listens. The
 * code-entry pages and the OAuth callback are registered by bridge mode (./device-pages.ts); the pages' assets and
 * the HTML "not found" page by ./shell.ts in every mode.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.ts';
import { type ShellOptions, pageShell } from './shell.ts';
import { type WebSocketDeviceHandler, endAnsweredUpgrades, mqttWebSocket } from './mqtt-websocket.ts';

export interface Readiness {
  /** name → check; each resolves to `{ ok, detail }` and must not hang (the caller bounds it). */
  [component: string]: () => Promise<{ ok: boolean; detail: string }>;
}

export interface AppDeps {
  log: Logger;
  metrics: Metrics;
  readiness: Readiness;
  /** Registers more routes (the bridge-mode page) before the app is ready. */
  register?: (app: FastifyInstance) => Promise<void>;
  /** The assets and the "not found" page (./shell.ts); default: plain http, no code-entry page. */
  shell?: ShellOptions;
  /** `false`: `/readyz` and `/metrics` live on the operations port instead (./admin.ts); default true */
  operations?: boolean;
  /** Proxies whose X-Forwarded-For is trusted (fastify `trustProxy`); default: none. */
  trustProxy?: boolean | number | string | string[];
  /** The embedded broker's WebSocket entry: set, `GET /mqtt` upgrades devices to MQTT over WebSocket. */
  mqttWebSocket?: { handler: WebSocketDeviceHandler; maxPayload: number };
}

const READY_TIMEOUT_MS = 2000;

/** Builds the app; plugins and routes load on `ready()` / `listen()` / the first `inject()`. */
export function buildApp(deps: AppDeps): FastifyInstance {
  const app = newFastify(deps.log, { trustProxy: trustProxyOption(deps.trustProxy) });
  // before every route: @fastify/websocket must see the routes to answer upgrades on the others with 404
  if (deps.mqttWebSocket !== undefined) {
    void app.register(mqttWebSocket, deps.mqttWebSocket);
    endAnsweredUpgrades(app);
  }
  healthRoute(app);
  if (deps.operations !== false) operationsRoutes(app, deps);
  void app.register(pageShell, deps.shell ?? { secure: false, codeEntry: false });
  if (deps.register !== undefined) void app.register(deps.register);
  return app;
}

/** A fastify instance with the gateway's logger; request lines are never logged. */
export function newFastify(log: Logger, options: { trustProxy?: TrustProxy } = {}): FastifyInstance {
  return Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    // Request lines would carry URLs with user codes and OAuth codes: never logged.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: options.trustProxy ?? false,
    bodyLimit: 16 * 1024,
  });
}

/** `/healthz`: the process is up (on the public port and the operations port). */
export function healthRoute(app: FastifyInstance): void {
  app.get('/healthz', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
    return { status: 'ok' };
  });
}

/** `/readyz` and `/metrics`: on the public port, or only on the operations port when there is one. */
export function operationsRoutes(app: FastifyInstance, deps: Pick<AppDeps, 'metrics' | 'readiness'>): void {
  app.get('/readyz', async (_req, reply) => {
    const results = await Promise.all(
      Object.entries(deps.readiness).map(async ([name, check]) => {
        const r = await withTimeout(check(), READY_TIMEOUT_MS).catch((err: unknown) => ({
          ok: false,
          detail: err instanceof Error ? err.message : String(err),
        }));
        return [name, r] as const;
      }),
    );
    const ok = results.every(([, r]) => r.ok);
    reply.code(ok ? 200 : 503).header('cache-control', 'no-store');
    return { status: ok ? 'ready' : 'not ready', checks: Object.fromEntries(results) };
  });

  app.get('/metrics', async (_req, reply) => {
    const text = await deps.metrics.render();
    reply.header('content-type', deps.metrics.contentType).header('cache-control', 'no-store');
    return text;
  });
}

type TrustProxy = boolean | string | string[] | ((address: string, hop: number) => boolean);

/** A hop count becomes "trust the nearest n hops" (what proxy-addr does with a number). */
function trustProxyOption(value: AppDeps['trustProxy']): TrustProxy {
  if (value === undefined) return false;
  if (typeof value === 'number') return (_address, hop) => hop < value;
  return value;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
