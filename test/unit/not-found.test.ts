/**
 * Unknown paths on a gateway without the code-entry page (relay mode: buildApp with `codeEntry: false`, as
 * src/gateway/parts.ts builds it), through the real app over `inject`. Bridge mode's 404 page is checked in
 * test/integration/web-security.test.ts ("unknown paths").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { buildApp } from '../../src/web/app.ts';

let app: FastifyInstance;

beforeAll(async () => {
  app = buildApp({
    log: createLogger('silent'),
    metrics: new Metrics(),
    readiness: {},
    shell: { secure: true, codeEntry: false },
  });
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

describe('unknown paths without a code-entry page', () => {
  it('answer the HTML 404 page in the browser language, with the security headers and HSTS, leading nowhere', async () => {
    for (const [lang, title] of [
      ['en', 'Page not found'],
      ['de', 'Seite nicht gefunden'],
    ] as const) {
      const res = await app.inject({ url: '/device', headers: { 'accept-language': lang } });
      expect(res.statusCode).toBe(404);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.body).toContain(`<html lang="${lang}">`);
      expect(res.body).toContain(`<h1>${title}</h1>`);
      expect(res.body).not.toContain('href="/device"');
      expect(String(res.headers['content-security-policy'])).toContain("default-src 'none'");
      expect(String(res.headers['content-security-policy'])).toContain("form-action 'self';");
      expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('serve the stylesheet the page links to; JSON to a client that asks for JSON only', async () => {
    const css = await app.inject({ url: '/static/device.css' });
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const json = await app.inject({ url: '/v1/nope', headers: { accept: 'application/json' } });
    expect(json.statusCode).toBe(404);
    expect(json.json()).toEqual({ statusCode: 404, error: 'Not Found' });
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
  });
});
