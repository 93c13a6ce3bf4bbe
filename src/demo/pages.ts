/**
 * The demo identity provider's pages: sign-in, consent, and the RFC 8628 code entry / confirm / done pages. Plain
 * HTML forms without scripts; every value is escaped. Each page's `<body data-page="...">` names it (people ignore
 * it; the test helper that plays the person reads it).
 */

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

export type PageName = 'login' | 'consent' | 'code' | 'confirm' | 'done' | 'cancelled' | 'error';

/** Headers every page is sent with: no caching, no framing, no referrer (URLs may carry a user code). */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f4f6;margin:0;padding:2rem 1rem}
main{max-width:26rem;margin:0 auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;box-shadow:0 1px 3px #0003}
h1{font-size:1.4rem;margin-top:0}.note{color:#555;font-size:.9rem}.error{color:#b00020}
label{display:block;margin:.8rem 0 .3rem}input[type=text],input[type=password]{width:100%;box-sizing:border-box;
font-size:1.1rem;padding:.5rem}.code{font-family:ui-monospace,monospace;font-size:1.6rem;letter-spacing:.15rem}
.buttons{display:flex;gap:.8rem;margin-top:1.2rem}button{flex:1;font-size:1rem;padding:.6rem;border-radius:4px;
border:1px solid #333;background:#fff;cursor:pointer}button.primary{background:#1f4fd1;color:#fff;border-color:#1f4fd1}
.demo{background:#fff4ce;border:1px solid #e0c060;padding:.4rem .6rem;font-size:.85rem}`;

/** A whole page. `body` is trusted markup built from escaped parts. */
export function page(name: PageName, title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · demo identity provider</title><style>${STYLE}</style></head>
<body data-page="${name}"><main>
<p class="demo">Demo identity provider: for trying devicegate out, not for production.</p>
<h1>${escapeHtml(title)}</h1>
${body}
</main></body>
</html>`;
}

export function loginPage(o: {
  action: string;
  clientName: string;
  error?: string;
  username?: string;
}): string {
  return page(
    'login',
    'Sign in',
    `<p><strong>${escapeHtml(o.clientName)}</strong> asks you to sign in.</p>
${o.error === undefined ? '' : `<p class="error" role="alert">${escapeHtml(o.error)}</p>`}
<form method="post" action="${escapeHtml(o.action)}" id="login">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autofocus required value="${escapeHtml(o.username ?? '')}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="buttons"><button type="submit" class="primary">Sign in</button></div>
</form>
<p class="note">Demo account: username <code>demo</code>, password <code>demo</code>.</p>`,
  );
}

export function consentPage(o: { action: string; clientName: string; scopes: string[] }): string {
  const scopes =
    o.scopes.length === 0
      ? '<li>nothing beyond signing in</li>'
      : o.scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  return page(
    'consent',
    'Allow access?',
    `<p><strong>${escapeHtml(o.clientName)}</strong> asks for:</p>
<ul>${scopes}</ul>
<form method="post" action="${escapeHtml(o.action)}" id="consent">
<div class="buttons">
<button type="submit" name="decision" value="deny">Deny</button>
<button type="submit" name="decision" value="approve" class="primary">Approve</button>
</div>
</form>`,
  );
}

/** RFC 8628 §3.3 code entry. `form` is oidc-provider's own form (hidden CSRF token and the code field). */
export function codePage(o: { form: string; message?: string; error?: boolean }): string {
  const message = o.message ?? 'Enter the code shown on your device.';
  return page(
    'code',
    'Connect a device',
    `<p class="${o.error === true ? 'error' : 'note'}"${o.error === true ? ' role="alert"' : ''}>${escapeHtml(message)}</p>
${o.form}
<div class="buttons"><button type="submit" form="op.deviceInputForm" class="primary">Continue</button></div>`,
  );
}

/** RFC 8628 §5.4: show the device and the code to compare; Cancel as prominent as Continue. */
export function confirmPage(o: { form: string; clientName: string; userCode: string }): string {
  return page(
    'confirm',
    'Confirm the device',
    `<p><strong>${escapeHtml(o.clientName)}</strong> wants to connect a device to your account.</p>
<p>The device should show this code:</p>
<p class="code">${escapeHtml(o.userCode)}</p>
<p class="note">Continue only if this device is in front of you and shows the same code. If you did not start this,
cancel.</p>
${o.form}
<div class="buttons">
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>
<button type="submit" form="op.deviceConfirmForm" class="primary">Continue</button>
</div>`,
  );
}

export function donePage(clientName: string | undefined): string {
  return page(
    'done',
    'Device connected',
    `<p>You signed in${clientName === undefined ? '' : ` to <strong>${escapeHtml(clientName)}</strong>`}. Your device
will continue by itself; you can close this page.</p>`,
  );
}

export function cancelledPage(): string {
  return page(
    'cancelled',
    'Cancelled',
    '<p>Nothing was connected, and the device was told. You can close this page.</p>',
  );
}

export function errorPage(title: string, message: string): string {
  return page('error', title, `<p class="error" role="alert">${escapeHtml(message)}</p>`);
}
