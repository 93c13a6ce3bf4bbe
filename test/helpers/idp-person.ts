/**
 * Plays the person at the demo identity provider (src/demo/idp.ts) over plain HTTP: a cookie jar, redirects followed
 * by hand, forms read from the HTML and submitted as a browser would (hidden fields included, the pressed button's
 * name and value added). No JavaScript: the only script the provider uses (auto-submitting a `form_post`) is replaced
 * by submitting that form.
 */

export interface PersonOptions {
  username?: string;
  password?: string;
  /** deny at the consent page (default) or press Cancel at the device confirm page */
  deny?: boolean;
  /** where `deny` happens (device flow only); default `consent` */
  denyAt?: 'consent' | 'confirm';
}

/**
 * RFC 8628 §3.3 as a person: opens the verification URI (with `user_code` pre-filled or typed in), compares the code
 * on the confirm page, signs in, and approves (or denies) at the consent page. Resolves when the IdP shows its final
 * page ("Device connected", or "Cancelled" when denying); rejects on any other page, with the page's text.
 */
export async function approveDeviceCode(
  verificationUri: string,
  userCode: string,
  opts: PersonOptions = {},
): Promise<void> {
  const browser = new Browser();
  let step = await browser.open(new URL(verificationUri));
  for (let hops = 0; hops < 12; hops++) {
    const page = expectPage(step);
    switch (page.name) {
      case 'code':
        step = await browser.submit(page.form('op.deviceInputForm'), { user_code: userCode });
        break;
      case 'confirm': {
        // the person compares the code on the page with the one on the device
        if (normalizeCode(page.text).includes(normalizeCode(userCode)) === false) {
          throw new Error(`the confirm page does not show the code ${userCode}`);
        }
        const form = page.form('op.deviceConfirmForm');
        const cancel = opts.deny === true && opts.denyAt === 'confirm';
        step = await browser.submit(form, {}, cancel ? page.button('abort') : undefined);
        break;
      }
      case 'login':
        step = await signIn(browser, page, opts);
        break;
      case 'consent':
        step = await browser.submit(
          page.form('consent'),
          {},
          page.button('decision', opts.deny === true ? 'deny' : 'approve'),
        );
        break;
      case 'done':
        if (opts.deny === true) throw new Error('the IdP connected the device although the person denied');
        return;
      case 'cancelled':
        if (opts.deny !== true) throw new Error('the IdP cancelled although the person approved');
        return;
      case undefined:
        // oidc-provider's form_post page (GET /device?user_code=...): submit it as its script would
        step = await browser.submit(page.onlyForm());
        break;
      default:
        throw new Error(`unexpected ${page.name} page (HTTP ${page.status}): ${page.text}`);
    }
  }
  throw new Error('too many steps at the identity provider');
}

/**
 * Authorization code flow as a person: opens `authorizeUrl`, signs in, approves (or denies) and resolves with the
 * final redirect to the client's `redirect_uri` (not followed), which carries `code` and `state`, or `error`.
 */
export async function authorizeInBrowserlessFlow(
  authorizeUrl: string,
  opts: Omit<PersonOptions, 'denyAt'> = {},
): Promise<URL> {
  const redirectUri = new URL(authorizeUrl).searchParams.get('redirect_uri');
  if (redirectUri === null) throw new Error('the authorize URL has no redirect_uri');
  const target = new URL(redirectUri);
  const browser = new Browser((url) => url.origin === target.origin && url.pathname === target.pathname);
  let step = await browser.open(new URL(authorizeUrl));
  for (let hops = 0; hops < 8; hops++) {
    if (step.kind === 'stopped') return step.url;
    const page = expectPage(step);
    switch (page.name) {
      case 'login':
        step = await signIn(browser, page, opts);
        break;
      case 'consent':
        step = await browser.submit(
          page.form('consent'),
          {},
          page.button('decision', opts.deny === true ? 'deny' : 'approve'),
        );
        break;
      default:
        throw new Error(`unexpected ${page.name ?? 'unnamed'} page (HTTP ${page.status}): ${page.text}`);
    }
  }
  throw new Error('too many steps at the identity provider');
}

async function signIn(browser: Browser, page: Page, opts: PersonOptions): Promise<Step> {
  if (/wrong username or password/i.test(page.text))
    throw new Error('the identity provider refused the sign-in');
  return browser.submit(page.form('login'), {
    username: opts.username ?? 'demo',
    password: opts.password ?? 'demo',
  });
}

function expectPage(step: Step): Page {
  if (step.kind === 'stopped')
    throw new Error(`unexpected redirect to ${step.url.origin}${step.url.pathname}`);
  return step.page;
}

function normalizeCode(text: string): string {
  return text.toUpperCase().replace(/[^A-Z0-9]/g, '');
}

type Step = { kind: 'page'; page: Page } | { kind: 'stopped'; url: URL };

interface Form {
  id: string | undefined;
  action: URL;
  method: string;
  fields: Array<[string, string]>;
}

interface Button {
  name: string;
  value: string;
}

class Page {
  readonly url: URL;
  readonly status: number;
  readonly html: string;
  /** `<body data-page>`: the demo IdP's page name; `undefined` for pages it did not render */
  readonly name: string | undefined;

  constructor(url: URL, status: number, html: string) {
    this.url = url;
    this.status = status;
    this.html = html;
    this.name = /<body\b[^>]*\bdata-page="([a-z]+)"/i.exec(html)?.[1];
  }

  /** The visible text, squeezed (for error messages and comparisons). */
  get text(): string {
    return decode(
      this.html
        .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ')
        .replace(/<[^>]+>/g, ' ')
        .replace(/\s+/g, ' ')
        .trim(),
    ).slice(0, 500);
  }

  forms(): Form[] {
    const out: Form[] = [];
    for (const m of this.html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      const attrs = attributes(m[1] ?? '');
      const fields: Array<[string, string]> = [];
      for (const input of (m[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
        const a = attributes(input[1] ?? '');
        const type = (a.type ?? 'text').toLowerCase();
        if (a.name === undefined || type === 'submit' || type === 'button' || type === 'image') continue;
        if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
        fields.push([a.name, a.value ?? '']);
      }
      out.push({
        id: attrs.id,
        action: new URL(attrs.action ?? this.url.href, this.url),
        method: (attrs.method ?? 'get').toUpperCase(),
        fields,
      });
    }
    return out;
  }

  form(id: string): Form {
    const form = this.forms().find((f) => f.id === id);
    if (form === undefined)
      throw new Error(`no form #${id} on the ${this.name ?? 'unnamed'} page: ${this.text}`);
    return form;
  }

  onlyForm(): Form {
    const forms = this.forms();
    if (forms.length !== 1)
      throw new Error(`expected one form on the page (HTTP ${this.status}): ${this.text}`);
    return forms[0]!;
  }

  /** A submit button by name (and value). */
  button(name: string, value?: string): Button {
    for (const m of this.html.matchAll(/<button\b([^>]*)>/gi)) {
      const a = attributes(m[1] ?? '');
      if (a.name === name && (value === undefined || a.value === value))
        return { name, value: a.value ?? '' };
    }
    throw new Error(
      `no ${name}${value === undefined ? '' : `=${value}`} button on the ${this.name ?? 'unnamed'} page`,
    );
  }
}

interface Cookie {
  name: string;
  value: string;
  origin: string;
  path: string;
}

/** Just enough browser: cookies (host-only, path-scoped), manual redirects, form submission. */
class Browser {
  readonly #jar = new Map<string, Cookie>();
  readonly #stopAt: ((url: URL) => boolean) | undefined;

  constructor(stopAt?: (url: URL) => boolean) {
    this.#stopAt = stopAt;
  }

  open(url: URL): Promise<Step> {
    return this.#navigate(url, 'GET');
  }

  submit(form: Form, values: Record<string, string> = {}, button?: Button): Promise<Step> {
    const fields = new URLSearchParams();
    const overridden = new Set(Object.keys(values));
    for (const [name, value] of form.fields) if (!overridden.has(name)) fields.append(name, value);
    for (const [name, value] of Object.entries(values)) fields.append(name, value);
    if (button !== undefined) fields.append(button.name, button.value);
    if (form.method === 'GET') {
      const url = new URL(form.action);
      url.search = fields.toString();
      return this.#navigate(url, 'GET');
    }
    return this.#navigate(form.action, 'POST', fields);
  }

  async #navigate(start: URL, method: 'GET' | 'POST', body?: URLSearchParams): Promise<Step> {
    let url = start;
    for (let redirects = 0; redirects < 20; redirects++) {
      if (this.#stopAt?.(url) === true) return { kind: 'stopped', url };
      const headers: Record<string, string> = { accept: 'text/html' };
      const cookie = this.#cookieHeader(url);
      if (cookie !== '') headers.cookie = cookie;
      if (body !== undefined && method === 'POST') {
        headers['content-type'] = 'application/x-www-form-urlencoded';
        headers.origin = url.origin;
      }
      const res = await fetch(url, {
        method,
        headers,
        redirect: 'manual',
        ...(method === 'POST' && body !== undefined && { body: body.toString() }),
      });
      this.#store(url, res.headers.getSetCookie());
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location !== null) {
        await res.body?.cancel();
        url = new URL(location, url);
        if (res.status !== 307 && res.status !== 308) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      return { kind: 'page', page: new Page(url, res.status, await res.text()) };
    }
    throw new Error('too many redirects');
  }

  #cookieHeader(url: URL): string {
    const out: string[] = [];
    for (const c of this.#jar.values()) {
      if (c.origin !== url.origin) continue;
      if (!(url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)))
        continue;
      out.push(`${c.name}=${c.value}`);
    }
    return out.join('; ');
  }

  #store(url: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = url.pathname.slice(0, url.pathname.lastIndexOf('/')) || '/';
      let expired = false;
      for (const attr of attrs) {
        const [k = '', v = ''] = attr.split('=', 2).map((s) => s.trim());
        const key = k.toLowerCase();
        if (key === 'path' && v.startsWith('/')) path = v;
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const key = `${url.origin} ${path} ${name}`;
      if (expired || value === '') this.#jar.delete(key);
      else this.#jar.set(key, { name, value, origin: url.origin, path });
    }
  }
}

function attributes(source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of source.matchAll(
    /([a-zA-Z_:][-\w:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g,
  )) {
    const name = (m[1] ?? '').toLowerCase();
    out[name] = decode(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function decode(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    const e = entity.toLowerCase();
    if (e === 'amp') return '&';
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    return String.fromCodePoint(e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}
