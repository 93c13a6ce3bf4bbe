/**
 * The code-entry pages as functions from data to HTML strings. No page has a script; the only stylesheet is
 * `/static/device.css`. Every value is escaped by {@link html}; every sentence comes from the request's catalogue
 * (../i18n/): test/unit/i18n.test.ts checks that the templates here hold no words of their own.
 */
import type { Flow } from '../../core/flow.ts';
import { type Catalogue, relativeTime } from '../i18n/index.ts';
import { type Html, html } from './html.ts';

/** Where the stylesheet is served. */
export const STYLESHEET_PATH = '/static/device.css';
/** Where the icon is served. */
export const FAVICON_PATH = '/static/favicon.svg';

/** The outcomes `/device/done` can show (a fixed list: nothing from the query string is echoed). */
export const RESULTS = ['authorized', 'denied', 'expired', 'failed', 'capped'] as const;
export type Result = (typeof RESULTS)[number];
/**
 * Why a sign-in failed, in the device's error code (src/upstream/errors.ts maps the identity provider's `error` to
 * one): each has a sentence of its own on the `failed` page. Nothing the provider wrote is shown.
 */
export const FAILURE_REASONS = [
  'invalid_scope',
  'unauthorized_client',
  'expired_token',
  'invalid_request',
  'server_error',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

/** What every page of a request shows around its content. */
export interface Frame {
  /** host of the upstream identity provider (RFC 8628 §5.3: say where the person will sign in) */
  issuerHost: string;
  /** the catalogue of the request's language (../i18n/index.ts `negotiate`) */
  t: Catalogue;
}

function layout(t: Catalogue, title: string, body: Html): string {
  return `<!doctype html>\n${html`<html lang="${t.lang}">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <meta name="referrer" content="no-referrer" />
      <meta name="robots" content="noindex, nofollow" />
      <title>${title} · ${t.brand}</title>
      <link rel="stylesheet" href="${STYLESHEET_PATH}" />
      <link rel="icon" type="image/svg+xml" href="${FAVICON_PATH}" />
    </head>
    <body>
      <div class="page">
        <header class="brand"><span class="mark" aria-hidden="true"></span><span>${t.brand}</span></header>
        <main class="card">${body}</main>
        <footer><p class="muted">${t.footer}</p></footer>
      </div>
    </body>
  </html> `}`;
}

function signInLine(frame: Frame): Html {
  return html`<p class="muted issuer">${frame.t.signInAt(frame.issuerHost)}</p>`;
}

export interface EntryView {
  csrfToken: string;
  /** the shape of a code, `XXXX-XXXX` for 8 letters (src/core/codes.ts `userCodePlaceholder`) */
  placeholder: string;
  /**
   * what `?user_code=` carried, or what the person typed before a refusal (bounded in length); only ever shown as the
   * input's value, on a page that is never cached
   */
  prefill?: string;
  /** show the one generic "not valid" message */
  invalid?: boolean;
}

/** `GET /device`, and the answer to a code that is not usable. */
export function entryPage(frame: Frame, view: EntryView): string {
  const { t } = frame;
  const body = html`<h1>${t.entryTitle}</h1>
    ${view.invalid === true && html`<div class="alert" role="alert"><p>${t.invalidCode}</p></div>`}
    <p>${t.entryIntro}</p>
    <form method="post" action="/device" autocomplete="off">
      <input type="hidden" name="csrf" value="${view.csrfToken}" />
      <label for="user_code">${t.codeLabel}</label>
      <input
        class="code"
        id="user_code"
        name="user_code"
        type="text"
        value="${view.prefill ?? ''}"
        placeholder="${view.placeholder}"
        required
        maxlength="20"
        autocomplete="off"
        autocapitalize="characters"
        autocorrect="off"
        spellcheck="false"
        inputmode="text"
        aria-describedby="code-hint"
        ${view.invalid === true && html` aria-invalid="true"`}${(view.prefill === undefined || view.invalid === true) && html` autofocus`}
      />
      <p class="hint muted" id="code-hint">${t.codeHint}</p>
      <button class="button primary" type="submit">${t.continue}</button>
    </form>
    <footer>${signInLine(frame)}</footer>`;
  return layout(t, t.entryTitle, body);
}

export interface ConfirmView {
  csrfToken: string;
  flow: Flow;
  /** the scanned link's proof (src/core/scan-link.ts), sent back with the decision so it skips the failed-entry guard */
  proof?: string;
  /** ms since the epoch, for "3 minutes ago" and "in 7 minutes" */
  now: number;
}

/**
 * `POST /device` with a usable code, or the scanned link: the device, what it asks for, and Approve / Deny (RFC 8628
 * §5.4). Deny comes first in the form, so Enter denies; Approve is the primary button, Deny the secondary one.
 */
export function confirmPage(frame: Frame, view: ConfirmView): string {
  const { t } = frame;
  const { flow } = view;
  const body = html`<h1>${t.confirmTitle}</h1>
    <p>
      <span class="muted">${t.confirmCodeLabel}</span>
      <strong class="usercode">${flow.secrets.userCode}</strong>
      <span class="muted">${t.confirmCodeHint}</span>
    </p>
    <h2>${t.deviceHeading}</h2>
    <p class="muted">${t.deviceReported}</p>
    ${deviceFacts(t, flow, view.now)}
    <h2>${t.scopesHeading}</h2>
    <ul class="scopes">
      ${scopeItems(t, flow.scope)}
    </ul>
    <div class="notice" role="note">
      <p><strong>${t.warning}</strong></p>
      <p>${t.warningDetail}</p>
    </div>
    <form method="post" action="/device/decision">
      <input type="hidden" name="csrf" value="${view.csrfToken}" />
      <input type="hidden" name="user_code" value="${flow.secrets.userCode}" />
      ${view.proof !== undefined && html`<input type="hidden" name="k" value="${view.proof}" />`}
      <div class="choices">
        <button class="button secondary" type="submit" name="decision" value="deny">${t.deny}</button>
        <button class="button primary" type="submit" name="decision" value="approve">${t.approve}</button>
      </div>
    </form>
    <footer>${signInLine(frame)}</footer>`;
  return layout(t, t.confirmTitle, body);
}

/** What the device says about itself, and when and from where it asked, in words. */
function deviceFacts(t: Catalogue, flow: Flow, now: number): Html {
  const device = flow.device ?? {};
  const notReported = html`<span class="muted">${t.notReported}</span>`;
  return html`<dl class="facts">
    <dt>${t.fieldName}</dt>
    <dd>${device.name ?? notReported}</dd>
    <dt>${t.fieldModel}</dt>
    <dd>${device.model ?? notReported}</dd>
    <dt>${t.fieldFirmware}</dt>
    <dd>${device.firmware ?? notReported}</dd>
    <dt>${t.fieldDeviceId}</dt>
    <dd><code>${flow.deviceId}</code></dd>
    <dt>${t.fieldRequested}</dt>
    <dd>${relativeTime(t, flow.createdAt, now)}</dd>
    <dt>${t.fieldExpires}</dt>
    <dd>${relativeTime(t, flow.expiresAt, now)}</dd>
    <dt>${t.fieldNetwork}</dt>
    <dd>
      ${
        flow.network === undefined
          ? html`<span class="muted">${t.unknownNetwork}</span>`
          : html`${t.networkAddress(flow.network)}<span class="muted fact-hint">${t.networkHint}</span>`
      }
    </dd>
  </dl>`;
}

function scopeItems(t: Catalogue, scope: string): Html[] {
  return scope
    .split(' ')
    .filter((s) => s.length > 0)
    .map((s) => {
      const sentence = t.scopes[s];
      return sentence === undefined
        ? html`<li>${t.unknownScope}<code>${s}</code></li> `
        : html`<li>${sentence}</li> `;
    });
}

/** The device an outcome page names: its id, and its name as it reported it (../routes/done-link.ts). */
export interface DoneDevice {
  id: string;
  name?: string;
}

/** `GET /device/done?result=…[&reason=…][&d=…]`; `reason` only changes the `failed` page. */
export function outcomePage(
  t: Catalogue,
  result: Result,
  o: { reason?: FailureReason | undefined; device?: DoneDevice | undefined } = {},
): string {
  const pages: Record<Result, readonly [string, string]> = {
    authorized: [t.doneAuthorizedTitle, t.doneAuthorized],
    denied: [t.doneDeniedTitle, t.doneDenied],
    expired: [t.doneExpiredTitle, t.doneExpired],
    failed: [t.doneFailedTitle, o.reason === undefined ? t.doneFailed : t.doneFailedBecause[o.reason]],
    capped: [t.doneCappedTitle, t.doneCapped],
  };
  const [title, message] = pages[result];
  const { device } = o;
  const body = html`<h1${result === 'authorized' ? html` class="ok"` : ''}>${title}</h1>
    <p>${message}</p>
    ${
      device !== undefined &&
      html`<dl class="facts">
        ${
          device.name !== undefined &&
          html`<dt>${t.fieldName}</dt>
            <dd>${device.name}</dd>`
        }
        <dt>${t.fieldDeviceId}</dt>
        <dd><code>${device.id}</code></dd>
      </dl>`
    }`;
  return layout(t, title, body);
}

export type ErrorKind =
  'csrf' | 'callback' | 'tooMany' | 'badRequest' | 'notFound' | 'unavailable' | 'serverError';

/**
 * A page for something that went wrong; `retryAfter` (seconds) only for `tooMany`. `codeEntry`: there is a
 * code-entry page to send the person back to (bridge mode).
 */
export function errorPage(
  t: Catalogue,
  kind: ErrorKind,
  o: { retryAfter?: number; codeEntry?: boolean } = {},
): string {
  const pages: Record<ErrorKind, readonly [string, string]> = {
    csrf: [t.csrfTitle, t.csrf],
    callback: [t.callbackInvalidTitle, t.callbackInvalid],
    tooMany: [t.tooManyTitle, t.tooMany(o.retryAfter ?? 60)],
    badRequest: [t.badRequestTitle, t.badRequest],
    notFound: [t.notFoundTitle, t.notFound],
    unavailable: [t.unavailableTitle, t.unavailable],
    serverError: [t.serverErrorTitle, t.serverError],
  };
  const [title, message] = pages[kind];
  const back = o.codeEntry !== false && kind !== 'callback';
  const body = html`<h1>${title}</h1>
    <p>${message}</p>
    ${back && html`<p><a class="button secondary" href="/device">${t.startAgain}</a></p>`}`;
  return layout(t, title, body);
}
