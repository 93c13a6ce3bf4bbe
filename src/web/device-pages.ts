/**
 * Bridge mode's web surface (docs/architecture.md): the code-entry page, the confirm step, the decision, the OAuth
 * callback and the outcome page. The flow logic is in BridgeFlows and the failed-entry limits in CodeEntryGuard;
 * this scope does HTTP: headers, cookies, forms, CSRF, the flood guard, and one file per route in ./routes/.
 *
 * Rules it enforces (docs/security.md, "web page"; RFC 8628 §5; RFC 9700):
 * - pages carry no script, cannot be framed or cached, and leak no URL through a referrer
 *   (./plugins/security-headers.ts);
 * - every POST is a form of declared fields (./plugins/forms.ts) and passes the CSRF checks (./plugins/csrf.ts);
 * - `?user_code=` only pre-fills the input: the person submits it and then confirms (RFC 8628 §5.4); the device's
 *   scanned link (`&k=`, src/core/scan-link.ts) opens the confirm page at once and is never counted as a failure;
 * - one answer (status and body) for unknown, expired, used and denied codes; failed entries are limited per client
 *   address and globally (RFC 8628 §5.1, src/core/limits.ts);
 * - every POST that changes state answers 303, never 307 (RFC 9700 §4.12);
 * - `state` is bound to the browser session that approved (./plugins/csrf.ts) and checked by BridgeFlows.callback;
 *   page cookies are `__Host-` prefixed on https (./plugins/cookies.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { Keys } from '../core/crypto.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { BridgeFlows } from '../service/bridge.ts';
import type { CodeEntryGuard } from '../service/code-entry-guard.ts';
import { pageErrorHandler } from './errors.ts';
import { cookies } from './plugins/cookies.ts';
import { CsrfSessions } from './plugins/csrf.ts';
import { floodGuard } from './plugins/flood-guard.ts';
import { forms } from './plugins/forms.ts';
import { FormTargets, securityHeaders } from './plugins/security-headers.ts';
import { callbackRoute } from './routes/callback.ts';
import { codeEntryRoute } from './routes/code-entry.ts';
import { negotiate } from './i18n/index.ts';
import type { PageContext } from './routes/context.ts';
import { decisionRoute } from './routes/decision.ts';
import { doneRoute } from './routes/done.ts';
import { entryPageRoute } from './routes/entry-page.ts';
import { notAllowedRoutes } from './routes/not-allowed.ts';
import { useZod } from './zod.ts';

export interface DevicePagesDeps {
  bridge: BridgeFlows;
  /** the failed-entry limits (RFC 8628 §5.1) */
  guard: CodeEntryGuard;
  /** the effective public base URL (no trailing slash): the only origin POSTs are accepted from */
  publicUrl: string;
  /** the upstream issuer, named on every page (RFC 8628 §5.3) */
  issuer: string;
  /** the upstream's authorize endpoint once known: forms may lead there (CSP `form-action`) */
  authorizeEndpoint: () => string | undefined;
  keys: Keys;
  /** the flood guard: POSTs (and callbacks) per client address per minute on each form route */
  requestsPerMinute: number;
  /** letters per user code */
  userCodeLength: number;
  metrics: Metrics;
  log: Logger;
  /** time for "asked 3 minutes ago" */
  clock: Clock;
}

/**
 * Registers `GET /device`, `POST /device`, `POST /device/decision`, `GET /oauth/callback` and `GET /device/done` (the
 * stylesheet and icon are ./shell.ts's), in their own encapsulated scope (the headers, form parser, cookies and limits apply to these
 * routes only). Other methods on these paths answer 405.
 */
export async function devicePages(app: FastifyInstance, deps: DevicePagesDeps): Promise<void> {
  const publicUrl = new URL(deps.publicUrl);
  const secure = publicUrl.protocol === 'https:';
  const formTargets = new FormTargets(deps.issuer, deps.authorizeEndpoint);
  const ctx: PageContext = {
    bridge: deps.bridge,
    guard: deps.guard,
    keys: deps.keys,
    userCodeLength: deps.userCodeLength,
    csrf: new CsrfSessions({ cookieSecret: deps.keys.cookieSecret, publicOrigin: publicUrl.origin, secure }),
    formTargets,
    issuerHost: new URL(deps.issuer).host,
    publicOrigin: publicUrl.origin,
    secure,
    requestsPerMinute: deps.requestsPerMinute,
    metrics: deps.metrics,
    log: deps.log,
    clock: deps.clock,
  };

  await app.register(async (plain) => {
    const scope = useZod(plain);
    await scope.register(forms, {});
    await scope.register(cookies, { secret: deps.keys.cookieSecret });
    await scope.register(securityHeaders, { formTargets, secure });
    await scope.register(floodGuard, { requestsPerMinute: deps.requestsPerMinute });
    scope.decorateRequest('csrfSession', '');
    scope.setErrorHandler(pageErrorHandler((req) => negotiate(req.headers['accept-language']), deps.log));

    entryPageRoute(scope, ctx);
    codeEntryRoute(scope, ctx);
    decisionRoute(scope, ctx);
    callbackRoute(scope, ctx);
    doneRoute(scope, ctx);
    notAllowedRoutes(scope, ctx);
  });
}
