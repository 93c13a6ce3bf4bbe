/**
 * A real browser for end-to-end tests: Debian's Chromium driven by playwright-core (no downloaded browser). Each
 * test opens its own context (cookies, storage) and closes the browser in afterAll. Screenshots go to
 * test-results/screenshots/.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join('test-results', 'screenshots');

/** Launches headless Chromium. Close it with `browser.close()` (afterAll). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** The phone viewport the pages are checked at (CSS pixels of a common phone, iPhone 12 to 14). */
export const PHONE = { width: 390, height: 844 } as const;
/** The desktop viewport of the README's desktop screenshot. */
export const DESKTOP = { width: 1280, height: 800 } as const;

/**
 * A phone-sized context (the code page is mostly opened from a phone after scanning the device's QR code). `locale`
 * is also what Chromium sends as `Accept-Language`.
 */
export function phoneContext(browser: Browser, locale = 'en-US'): Promise<BrowserContext> {
  return browser.newContext({
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: false,
    locale,
    colorScheme: 'light',
  });
}

/** A desktop-sized context, like {@link phoneContext}. */
export function desktopContext(browser: Browser, locale = 'en-US'): Promise<BrowserContext> {
  return browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1, locale, colorScheme: 'light' });
}

/**
 * Records what pages of `origin` report as errors: console errors (CSP violations and failed loads appear there),
 * uncaught exceptions and failed requests. Read `problems` after the flow.
 */
export function watchProblems(page: Page, origin: string): { problems: string[] } {
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' && msg.location().url.startsWith(origin)) {
      problems.push(`console: ${msg.text()} (${msg.location().url})`);
    }
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('requestfailed', (req) => {
    if (req.url().startsWith(origin))
      problems.push(`requestfailed: ${req.url()} ${req.failure()?.errorText ?? ''}`);
  });
  return { problems };
}

/** Saves a full-page screenshot as `test-results/screenshots/{name}.png` and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Copies a screenshot into the docs (e.g. `docs/images/device-entry.png`) when `UPDATE_DOC_IMAGES=1`, so a plain
 * `npm test` leaves the checkout unchanged: `UPDATE_DOC_IMAGES=1 npx vitest run test/e2e/bridge.browser.test.ts`.
 */
export async function publishScreenshot(file: string, target: string): Promise<void> {
  if (process.env.UPDATE_DOC_IMAGES !== '1') return;
  await mkdir(path.dirname(target), { recursive: true });
  await copyFile(file, target);
}
