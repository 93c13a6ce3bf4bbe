/**
 * Bridge mode end to end, in a real browser: the real gateway (startGateway: embedded aedes broker, HTTP on a free
 * port, authorization_code mode) in front of the demo identity provider (node-oidc-provider, code + PKCE only), an
 * mqtt.js device with its HMAC credential, and Debian's Chromium at a 390×844 phone viewport (and 1280×800 for the
 * desktop screenshot), in English and German. Saves a screenshot of every page to test-results/screenshots/ and,
 * with UPDATE_DOC_IMAGES=1, the README's to docs/images/.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import {
  PHONE,
  desktopContext,
  launchBrowser,
  phoneContext,
  publishScreenshot,
  screenshot,
  watchProblems,
} from '../helpers/browser.ts';
import { type TestDevice, closeAllDevices, connectDevice } from '../helpers/device.ts';
import { freePort } from '../helpers/procs.ts';

const FLEET_KEY = 'e2e-fleet-key-0123456789abcdef';
const log = createLogger('silent');

let idp: DemoIdp;
let gw: Gateway;
let browser: Browser;
let publicUrl: string;

beforeAll(async () => {
  const httpPort = await freePort();
  publicUrl = `http://localhost:${httpPort}`;
  idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [`${publicUrl}/oauth/callback`],
    deviceFlow: false,
    log,
  });
  const config = loadConfig({
    DEVICEGATE_HTTP_HOST: '127.0.0.1',
    DEVICEGATE_HTTP_PORT: String(httpPort),
    DEVICEGATE_MQTT_HOST: '127.0.0.1',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_PUBLIC_URL: publicUrl,
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
    DEVICEGATE_DEVICE_KEY: FLEET_KEY,
    DEVICEGATE_SECRET: 'e2e-gateway-secret-0123456789abcdef0123',
    DEVICEGATE_DEFAULT_SCOPE: 'openid profile',
    DEVICEGATE_LOG_LEVEL: 'silent',
    // the attackers of the tripped-limit test come "through" this proxy from their own addresses; the browser sends
    // no X-Forwarded-For, so it is 127.0.0.1 as before
    DEVICEGATE_TRUST_PROXY: '127.0.0.1',
  });
  gw = await startGateway(config, { log });
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await idp?.close();
});

afterEach(async () => {
  await closeAllDevices();
});

interface Started {
  device: TestDevice;
  rid: string;
  userCode: string;
  complete: string;
}

async function startDevice(deviceId: string, rid: string): Promise<Started> {
  const device = await connectDevice({ url: gw.mqttUrl, deviceId, key: FLEET_KEY });
  const reply = await device.ask(
    'authorize',
    { rid, scope: 'openid profile', device: { name: 'Living room TV', model: 'TV-9000', firmware: '4.2.1' } },
    { status: 'pending' },
  );
  const body = reply.json as {
    user_code: string;
    verification_uri: string;
    verification_uri_complete: string;
  };
  expect(body.verification_uri).toBe(`${publicUrl}/device`);
  return { device, rid, userCode: body.user_code, complete: body.verification_uri_complete };
}

/**
 * Reaches the confirm page: typed (the person opens `verification_uri` and types the code, then Continue) or scanned
 * (the person opens `verification_uri_complete`, the QR link, which shows the confirm page at once).
 */
async function toConfirmPage(
  page: Page,
  s: Started,
  how: 'typed' | 'scanned',
  shots: { entry?: string; confirm?: string } = {},
): Promise<void> {
  if (how === 'typed') {
    await page.goto(`${publicUrl}/device`);
    expect(await page.locator('h1').innerText()).toBe('Connect a device');
    expect(await page.locator('#user_code').getAttribute('placeholder')).toBe('XXXX-XXXX');
    await page.locator('#user_code').fill(s.userCode);
    // the stylesheet loaded (CSP style-src 'self'): the code input is a large touch target
    const input = await page.locator('#user_code').boundingBox();
    expect(input?.height).toBeGreaterThanOrEqual(48);
    await expectFits(page, 'entry');
    if (shots.entry !== undefined) await screenshot(page, shots.entry);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${publicUrl}/device`);
  } else {
    await page.goto(s.complete);
  }
  expect(await page.locator('h1').innerText()).toBe('Is this your device?');
  expect(await page.locator('.usercode').innerText()).toBe(s.userCode);
  const facts = await page.locator('dl.facts').innerText();
  expect(facts).toContain('Living room TV');
  expect(facts).toContain('TV-9000');
  expect(facts).toContain(s.device.id);
  expect(await page.locator('main').innerText()).toContain(
    'Continue only if this device is in front of you.',
  );
  expect(facts).toMatch(/Asked\s+(just now|1 minute ago)/);
  expect(facts).toMatch(/Code expires\s+in \d+ minutes/);
  expect(facts).toContain('the network address 127.0.0.1');
  await expectChoices(page, 'Approve', 'Deny');
  await expectFits(page, 'confirm');
  if (shots.confirm !== undefined) await screenshot(page, shots.confirm);
}

/**
 * Approve is the primary button (filled) and Deny the secondary one (outlined), both as large as each other and
 * large enough to touch; Deny comes first in the form, so Enter denies.
 */
async function expectChoices(page: Page, approveName: string, denyName: string): Promise<void> {
  const approve = page.getByRole('button', { name: approveName });
  const deny = page.getByRole('button', { name: denyName });
  const [a, d] = [await approve.boundingBox(), await deny.boundingBox()];
  expect(a?.height).toBeGreaterThanOrEqual(44);
  expect(d?.height).toBe(a?.height);
  expect(d?.width).toBe(a?.width);
  const background = (value: string) =>
    page.evaluate<string>(
      `getComputedStyle(document.querySelector('button[value=${value}]')).backgroundColor`,
    );
  const card = await page.evaluate<string>(
    `getComputedStyle(document.querySelector('main')).backgroundColor`,
  );
  expect(await background('approve')).toBe('rgb(29, 78, 216)'); // the accent
  expect(await background('deny')).toBe(card);
  expect(await page.locator('form button').first().getAttribute('value')).toBe('deny');
}

/**
 * At the context's viewport nothing overflows sideways and every button lies wholly inside the viewport's width at
 * a touchable height: readable and usable without zooming. Text inputs are at least 16 px (phones zoom into
 * smaller ones).
 */
async function expectFits(page: Page, what: string): Promise<void> {
  const viewport = page.viewportSize()!;
  expect(await page.evaluate<number>('document.documentElement.scrollWidth'), what).toBeLessThanOrEqual(
    viewport.width,
  );
  for (const button of await page.locator('.button').all()) {
    const box = (await button.boundingBox())!;
    expect(box.x, what).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width, what).toBeLessThanOrEqual(viewport.width);
    expect(box.height, what).toBeGreaterThanOrEqual(44);
  }
  const inputFont = await page.evaluate<string>(
    `[...document.querySelectorAll('input[type=text]')].map((i) => getComputedStyle(i).fontSize).join(' ')`,
  );
  for (const size of inputFont.split(' ').filter((f) => f !== '')) {
    expect(Number.parseFloat(size), what).toBeGreaterThanOrEqual(16);
  }
}

/** Approve on our confirm page, sign in and consent at the demo IdP: ends on our "Device connected" page. */
async function approveAndSignIn(page: Page, shots = false): Promise<void> {
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`));
  await page.locator('#username').waitFor();
  if (shots) await screenshot(page, 'idp-login');
  await page.locator('#username').fill(idp.username);
  await page.locator('#password').fill(idp.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Approve' }).waitFor();
  if (shots) await screenshot(page, 'idp-consent');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForURL(
    (u) => u.pathname === '/device/done' && u.searchParams.get('result') === 'authorized',
  );
  expect(await page.locator('h1').innerText()).toBe('Device connected');
}

/**
 * Types `code` on the entry page as a client at `from` would (behind the trusted proxy: X-Forwarded-For), outside the
 * browser, and returns the status: 200 confirm page, 400 not valid, 429 limited.
 */
async function typeCode(code: string, from?: string): Promise<number> {
  const headers: Record<string, string> = from === undefined ? {} : { 'x-forwarded-for': from };
  const entry = await fetch(`${publicUrl}/device`, { headers });
  const cookie = entry.headers
    .getSetCookie()
    .map((c) => c.split(';', 1)[0])
    .join('; ');
  const csrf = /name="csrf" value="([^"]+)"/.exec(await entry.text())![1]!;
  const res = await fetch(`${publicUrl}/device`, {
    method: 'POST',
    headers: {
      ...headers,
      cookie,
      origin: publicUrl,
      'sec-fetch-site': 'same-origin',
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ csrf, user_code: code }).toString(),
  });
  await res.arrayBuffer();
  return res.status;
}

async function userinfoStatus(accessToken: string): Promise<number> {
  const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
    userinfo_endpoint: string;
  };
  const res = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  return res.status;
}

describe('bridge mode in Chromium', () => {
  it('enter the code, confirm, sign in at the IdP, consent: the device gets a token the IdP accepts', async () => {
    const s = await startDevice('tv-e2e-approve', 'r-approve');
    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      expect(page.viewportSize()).toEqual(PHONE); // 390×844: every page below is checked to fit it
      const watched = watchProblems(page, publicUrl);
      await toConfirmPage(page, s, 'typed', { entry: 'device-entry', confirm: 'device-confirm' });
      await approveAndSignIn(page, true);
      const done = await page.locator('main').innerText();
      expect(done).toContain('Your device is connected;');
      expect(done).toContain('you can close this page');
      // the outcome page names the device as the confirm page did
      expect(done).toMatch(/Name\s+Living room TV\s+Device id\s+tv-e2e-approve/);
      await expectFits(page, 'done');
      await screenshot(page, 'device-done');

      const reply = await s.device.waitForReply({ rid: s.rid, status: 'authorized' });
      const token = reply.json?.['access_token'];
      expect(typeof token).toBe('string');
      expect(await userinfoStatus(token as string)).toBe(200);
      // the token never reached the browser
      expect(await page.content()).not.toContain(token as string);
      expect(watched.problems).toEqual([]);
    } finally {
      await context.close();
    }
    await publishScreenshot('test-results/screenshots/device-entry.png', 'docs/images/device-entry.png');
    await publishScreenshot('test-results/screenshots/device-confirm.png', 'docs/images/device-confirm.png');
    await publishScreenshot('test-results/screenshots/device-done.png', 'docs/images/device-done.png');
  }, 60_000);

  it('a typo: the refused code stays in the field, one letter fixed and Continue reaches the confirm page', async () => {
    const s = await startDevice('tv-e2e-typo', 'r-typo');
    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(`${publicUrl}/device`);
      const typo = `${s.userCode.slice(0, -1)}${s.userCode.endsWith('B') ? 'C' : 'B'}`;
      await page.locator('#user_code').fill(typo.toLowerCase().replace('-', ' '));
      await page.getByRole('button', { name: 'Continue' }).click();
      await expect.poll(() => page.locator('[role=alert]').innerText()).toContain('That code is not valid');
      // kept, in the code's own shape, and never in the URL (the page was POSTed)
      expect(await page.locator('#user_code').inputValue()).toBe(typo);
      expect(page.url()).toBe(`${publicUrl}/device`);
      await expectFits(page, 'refused');
      await screenshot(page, 'typo-kept');
      await page.locator('#user_code').press('End');
      await page.locator('#user_code').press('Backspace');
      await page.locator('#user_code').pressSequentially(s.userCode.slice(-1));
      await page.getByRole('button', { name: 'Continue' }).click();
      await expect.poll(() => page.locator('h1').innerText()).toBe('Is this your device?');
      expect(await page.locator('.usercode').innerText()).toBe(s.userCode);
    } finally {
      await context.close();
    }
  }, 60_000);

  it('in German (Accept-Language from the browser): scan, confirm, deny, the outcome names the device; the 404 page', async () => {
    const s = await startDevice('tv-e2e-de', 'r-de');
    const context = await phoneContext(browser, 'de-DE');
    try {
      const page = await context.newPage();
      const watched = watchProblems(page, publicUrl);
      await page.goto(s.complete);
      expect(await page.locator('html').getAttribute('lang')).toBe('de');
      expect(await page.locator('h1').innerText()).toBe('Ist das Ihr Gerät?');
      const facts = await page.locator('dl.facts').innerText();
      expect(facts).toMatch(/Angefragt\s+(gerade eben|vor 1 Minute)/);
      expect(facts).toMatch(/Code läuft ab\s+in \d+ Minuten/);
      expect(facts).toContain('der Netzwerkadresse 127.0.0.1');
      await expectChoices(page, 'Zustimmen', 'Ablehnen');
      await expectFits(page, 'confirm (de)');
      await screenshot(page, 'device-confirm-de');
      await page.getByRole('button', { name: 'Ablehnen' }).click();
      await page.waitForURL((u) => u.pathname === '/device/done');
      expect(await page.locator('h1').innerText()).toBe('Anfrage abgelehnt');
      expect(await page.locator('main').innerText()).toMatch(/Name\s+Living room TV\s+Geräte-ID\s+tv-e2e-de/);
      const reply = await s.device.waitForReply({ rid: s.rid, status: 'error' });
      expect(reply.json?.['error']).toBe('access_denied');
      expect(watched.problems).toEqual([]);

      const missing = await page.goto(`${publicUrl}/gibt-es-nicht`);
      expect(missing?.status()).toBe(404);
      expect(await page.locator('h1').innerText()).toBe('Seite nicht gefunden');
      await page.getByRole('link', { name: 'Code eingeben' }).click();
      await page.waitForURL(`${publicUrl}/device`);
      expect(await page.locator('h1').innerText()).toBe('Gerät verbinden');
      await expectFits(page, 'entry (de)');
    } finally {
      await context.close();
    }
  }, 60_000);

  it('on a desktop viewport: the scanned confirm page and the 404 page fit', async () => {
    const s = await startDevice('tv-e2e-desktop', 'r-desktop');
    const context = await desktopContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(s.complete);
      expect(await page.locator('h1').innerText()).toBe('Is this your device?');
      await expectChoices(page, 'Approve', 'Deny');
      await expectFits(page, 'confirm (desktop)');
      await screenshot(page, 'device-confirm-desktop');
      await page.goto(`${publicUrl}/nope`);
      expect(await page.locator('h1').innerText()).toBe('Page not found');
      await expectFits(page, '404 (desktop)');
      await screenshot(page, 'not-found-desktop');
    } finally {
      await context.close();
    }
    await publishScreenshot(
      'test-results/screenshots/device-confirm-desktop.png',
      'docs/images/device-confirm-desktop.png',
    );
  }, 60_000);

  it('Deny on our confirm page: the device is told access_denied at once', async () => {
    const s = await startDevice('tv-e2e-deny', 'r-deny');
    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      const watched = watchProblems(page, publicUrl);
      await toConfirmPage(page, s, 'scanned');
      await page.getByRole('button', { name: 'Deny' }).click();
      await page.waitForURL(
        (u) => u.pathname === '/device/done' && u.searchParams.get('result') === 'denied',
      );
      expect(await page.locator('h1').innerText()).toBe('Request denied');
      expect(await page.locator('main').innerText()).toContain('Living room TV');
      await screenshot(page, 'denied');
      const reply = await s.device.waitForReply({ rid: s.rid, status: 'error' });
      expect(reply.json?.['error']).toBe('access_denied');
      expect(watched.problems).toEqual([]);
      // the code is dead now: the scanned link falls back to the pre-filled entry form, and the code is refused
      // (the refusal is a 400, which the console reports as a failed load)
      await page.goto(s.complete);
      expect(await page.locator('#user_code').inputValue()).toBe(s.userCode);
      await page.getByRole('button', { name: 'Continue' }).click();
      await expect.poll(() => page.locator('[role=alert]').innerText()).toContain('That code is not valid');
      expect(await page.locator('#user_code').inputValue()).toBe(s.userCode);
      await screenshot(page, 'invalid-code');
    } finally {
      await context.close();
    }
  }, 60_000);

  it('Deny at the IdP consent: the device is told access_denied', async () => {
    const s = await startDevice('tv-e2e-idp-deny', 'r-idp-deny');
    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      await toConfirmPage(page, s, 'typed');
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.locator('#username').waitFor();
      await page.locator('#username').fill(idp.username);
      await page.locator('#password').fill(idp.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Deny' }).click();
      await page.waitForURL(
        (u) => u.pathname === '/device/done' && u.searchParams.get('result') === 'denied',
      );
      expect(await page.locator('h1').innerText()).toBe('Request denied');
      await screenshot(page, 'idp-denied');
      const reply = await s.device.waitForReply({ rid: s.rid, status: 'error' });
      expect(reply.json?.['error']).toBe('access_denied');
      expect(s.device.received.some((r) => r.json?.['status'] === 'authorized')).toBe(false);
    } finally {
      await context.close();
    }
  }, 60_000);
  it('a scan during a tripped global limit: the confirm page at once, approve, sign in, the device gets its token', async () => {
    const s = await startDevice('tv-e2e-scan', 'r-scan');
    // the limits count fixed one-minute windows: start early in one, so the whole test runs inside it
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 20_000) await new Promise((resolve) => setTimeout(resolve, left + 100));
    // two addresses spend the global budget (10 a minute, 5 per address: the defaults) on wrong codes; a failure
    // an earlier test made in this window (the dead code after Deny) may trip it one entry sooner
    let failures = 0;
    for (const from of ['198.51.100.1', '198.51.100.2']) {
      for (let i = 0; i < 5; i++) {
        const status = await typeCode('BCDF-GHJK', from);
        expect([400, 429]).toContain(status);
        if (status === 400) failures++;
      }
    }
    expect(failures).toBeGreaterThanOrEqual(8);
    // now nobody can type a code, even the right one
    expect(await typeCode(s.userCode, '198.51.100.3')).toBe(429);
    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      const watched = watchProblems(page, publicUrl);
      await toConfirmPage(page, s, 'scanned');
      await screenshot(page, 'scan-confirm-while-limited');
      // still tripped for typed codes, from this very address too
      expect(await typeCode(s.userCode)).toBe(429);
      await approveAndSignIn(page);
      const reply = await s.device.waitForReply({ rid: s.rid, status: 'authorized' });
      const token = reply.json?.['access_token'];
      expect(typeof token).toBe('string');
      expect(await userinfoStatus(token as string)).toBe(200);
      expect(watched.problems).toEqual([]);
    } finally {
      await context.close();
    }
  }, 90_000);

  it("a planted authorize link: the victim signs in, the callback is refused, the attacker's device gets nothing (finding 5)", async () => {
    const s = await startDevice('tv-e2e-attacker', 'r-attacker');
    // the attacker approves their own device in their own browser, up to the IdP, and keeps the authorize link
    const attacker = await phoneContext(browser);
    let authorizeUrl: string;
    let attackerCookies: Awaited<ReturnType<BrowserContext['cookies']>>;
    try {
      const page = await attacker.newPage();
      await toConfirmPage(page, s, 'scanned');
      const authorize = page.waitForRequest((r) => r.url().startsWith(`${idp.issuer}/`));
      await page.getByRole('button', { name: 'Approve' }).click();
      authorizeUrl = (await authorize).url();
      await page.locator('#username').waitFor();
      attackerCookies = await attacker.cookies(); // every path: the old cookie was scoped to the callback
    } finally {
      await attacker.close();
    }
    const state = new URL(authorizeUrl).searchParams.get('state')!;
    // the old per-flow cookie as the attacker's browser had it, else as the attacker would forge it
    const planted = attackerCookies.filter((c) => c.name === 'dg_state');
    const stateCookie =
      planted.length > 0 ? planted : [{ name: 'dg_state', value: state, url: `${publicUrl}/oauth/callback` }];

    for (const withCookie of [true, false]) {
      const victim = await phoneContext(browser);
      try {
        if (withCookie) await victim.addCookies(stateCookie);
        const page = await victim.newPage();
        // the victim follows the attacker's link and signs in, never having seen our confirm page
        await page.goto(authorizeUrl);
        await page.locator('#username').fill(idp.username);
        await page.locator('#password').fill(idp.password);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('button', { name: 'Approve' }).click();
        await page.waitForURL((u) => u.origin === publicUrl);
        expect(
          s.device.received.some((r) => r.json?.['status'] === 'authorized'),
          `cookie: ${withCookie}`,
        ).toBe(false);
        expect(page.url().startsWith(`${publicUrl}/oauth/callback?`)).toBe(true);
        expect(await page.locator('h1').innerText()).toBe('This sign-in link is no longer valid');
        if (withCookie) await screenshot(page, 'planted-state-refused');
      } finally {
        await victim.close();
      }
      expect(
        s.device.received.some((r) => r.json?.['status'] === 'authorized'),
        `cookie: ${withCookie}`,
      ).toBe(false);
    }
  }, 90_000);

  it('two devices approved from one browser, in two tabs: both devices get their tokens (finding 6)', async () => {
    const one = await startDevice('tv-e2e-tab-1', 'r-tab-1');
    const two = await startDevice('tv-e2e-tab-2', 'r-tab-2');
    const context = await phoneContext(browser);
    try {
      const tab1 = await context.newPage();
      const tab2 = await context.newPage();
      // scanned links: the scan test above may have tripped the typed-code limit for this minute
      await toConfirmPage(tab1, one, 'scanned');
      await toConfirmPage(tab2, two, 'scanned');
      // both approved before either sign-in comes back
      for (const tab of [tab1, tab2]) {
        await tab.getByRole('button', { name: 'Approve' }).click();
        await tab.locator('#username').waitFor();
      }
      for (const tab of [tab1, tab2]) {
        await tab.locator('#username').fill(idp.username);
        await tab.locator('#password').fill(idp.password);
        await tab.getByRole('button', { name: 'Sign in' }).click();
        // the IdP asks for consent again, or remembers the one just given: either is fine here
        const done = (u: URL) =>
          u.pathname === '/device/done' && u.searchParams.get('result') === 'authorized';
        const consent = tab.getByRole('button', { name: 'Approve' });
        await Promise.race([tab.waitForURL(done), consent.waitFor()]);
        if (!done(new URL(tab.url()))) await consent.click();
        await tab.waitForURL(done);
      }
      for (const s of [one, two]) {
        const reply = await s.device.waitForReply({ rid: s.rid, status: 'authorized' });
        expect(await userinfoStatus(reply.json?.['access_token'] as string)).toBe(200);
      }
    } finally {
      await context.close();
    }
  }, 90_000);
});
