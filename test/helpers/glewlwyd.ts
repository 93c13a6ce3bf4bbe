/**
 * A private Glewlwyd (Debian's `glewlwyd` package, a third-party OpenID provider nobody on this project wrote) set up
 * from nothing: a temp directory with a generated config and an SQLite database initialised from the schema the
 * package ships, started on a free loopback port and stopped by PID. Everything the gateway needs is then created
 * through Glewlwyd's own admin API, as an operator would in its admin app: the OpenID Connect plugin (RS256 keys,
 * device grant and authorization code grant with PKCE), a scope, a user with a password and the gateway's client.
 *
 * {@link GlewlwydPerson} plays the person at Glewlwyd. Its sign-in page is a JavaScript app (`login.html`) that this
 * test does not serve; the person makes the same API calls that app makes (webapp-src/src/Login in Glewlwyd's
 * sources): `POST /api/auth` to sign in, `PUT /api/auth/grant/{client}` to consent, then the `callback_url` it was
 * sent to with `g_continue` added.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { freePort, waitForPort } from './procs.ts';

/** The SQLite schema of Debian's package (what dbconfig-common installs): outside /usr/share/doc, which slim images drop. */
const SCHEMA = '/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3';
const MODULES = '/usr/lib/glewlwyd';
/** The administrator the shipped schema creates. Only reachable on this instance's loopback port. */
const ADMIN = { username: 'admin', password: 'password' };
const PLUGIN = 'oidc';
/** Glewlwyd's session cookie (its `session_key`). */
const SESSION_COOKIE = 'GLEWLWYD2_SESSION_ID';

export interface GlewlwydOptions {
  /** the client's registered redirect URIs (bridge mode: the gateway's exact `/oauth/callback`) */
  redirectUris: string[];
  /**
   * the client secret (default: random hex, nothing RFC 6749 §2.3.1 would encode; Glewlwyd compares the Basic
   * credentials without decoding them)
   */
  clientSecret?: string;
}

export interface Glewlwyd {
  /** `http://127.0.0.1:{port}` */
  readonly url: string;
  /** the OpenID provider's issuer: `{url}/api/oidc` (its discovery document is below it) */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** a user who may grant the scopes below */
  readonly username: string;
  readonly password: string;
  /** scopes the client may ask for and the user holds: `openid` and one of this deployment's own */
  readonly scopes: readonly string[];
  /** SIGKILL by PID, wait for the exit, remove the temp directory. */
  stop(): Promise<void>;
}

/** Starts and provisions a Glewlwyd; call `stop()` in afterAll. */
export async function startGlewlwyd(o: GlewlwydOptions): Promise<Glewlwyd> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-glewlwyd-'));
  let child: ChildProcess | undefined;
  let out = '';
  const stop = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const db = path.join(dir, 'glewlwyd.db');
    await run('sqlite3', [db], await readFile(SCHEMA));
    const conf = path.join(dir, 'glewlwyd.conf');
    await writeFile(conf, config(port, url, db));
    child = spawn('glewlwyd', ['--config-file', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    const append = (chunk: Buffer): void => {
      out = (out + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    await waitForPort(port);
    const issuer = `${url}/api/${PLUGIN}`;
    const clientSecret = o.clientSecret ?? randomBytes(24).toString('hex');
    const user = { username: 'alice', password: randomBytes(12).toString('hex') };
    await provision(url, issuer, { ...o, clientSecret, user });
    return {
      url,
      issuer,
      clientId: 'devicegate',
      clientSecret,
      username: user.username,
      password: user.password,
      scopes: ['openid', 'tv'],
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`Glewlwyd did not start: ${String(err)}\n${out}`, { cause: err });
  }
}

/** libconfig syntax (what /etc/glewlwyd/glewlwyd.conf uses); only what this instance needs. */
function config(port: number, url: string, db: string): string {
  return `${[
    `port=${port}`,
    'bind_address="127.0.0.1"',
    `external_url="${url}"`,
    'login_url="login.html"',
    'api_prefix="api"',
    'log_mode="console"',
    'log_level="ERROR"',
    'cookie_secure=0',
    `session_key="${SESSION_COOKIE}"`,
    'session_expiration=3600',
    'admin_scope="g_admin"',
    'profile_scope="g_profile"',
    `user_module_path="${MODULES}/user"`,
    `client_module_path="${MODULES}/client"`,
    `user_auth_scheme_module_path="${MODULES}/scheme"`,
    `plugin_module_path="${MODULES}/plugin"`,
    'hash_algorithm="SHA512"',
    `database = { type = "sqlite3"; path = "${db}"; };`,
  ].join('\n')}\n`;
}

/** The admin API calls that create the OpenID plugin, the scope, the user and the gateway's client. */
async function provision(
  url: string,
  issuer: string,
  o: GlewlwydOptions & { clientSecret: string; user: { username: string; password: string } },
): Promise<void> {
  const admin = new CookieJar();
  await admin.json(`${url}/api/auth/`, 'POST', ADMIN);
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'devicegate-test', alg: 'RS256', use: 'sig' };
  await admin.json(`${url}/api/mod/plugin/`, 'POST', {
    module: 'oidc',
    name: PLUGIN,
    display_name: 'OpenID Connect',
    enabled: true,
    parameters: {
      iss: issuer,
      'jwks-private': JSON.stringify({ keys: [jwk] }),
      'default-kid': jwk.kid,
      'jwks-show': true,
      'code-duration': 600,
      'access-token-duration': 3600,
      'refresh-token-duration': 1209600,
      'allow-non-oidc': false,
      'auth-type-code-enabled': true,
      'auth-type-device-enabled': true,
      'auth-type-refresh-enabled': true,
      'auth-type-token-enabled': false,
      'auth-type-implicit-enabled': false,
      'auth-type-password-enabled': false,
      'auth-type-client-enabled': false,
      'pkce-allowed': true,
      'pkce-method-plain-allowed': false,
      'device-authorization-expiration': 600,
      'device-authorization-interval': 1,
    },
  });
  // a scope of the deployment's own, that only a password sign-in grants
  await admin.json(`${url}/api/scope/`, 'POST', {
    name: 'tv',
    display_name: 'Television',
    description: 'Use the television app',
    password_required: true,
    password_max_age: 0,
    scheme: {},
  });
  await admin.json(`${url}/api/user/`, 'POST', {
    ...o.user,
    name: 'Alice',
    email: 'alice@example.test',
    enabled: true,
    scope: ['openid', 'tv'],
  });
  await admin.json(`${url}/api/client/`, 'POST', {
    client_id: 'devicegate',
    client_name: 'devicegate',
    client_secret: o.clientSecret,
    confidential: true,
    enabled: true,
    redirect_uri: o.redirectUris,
    authorization_type: ['code', 'device_authorization', 'refresh_token'],
    // both: Glewlwyd refuses a method the client is not registered for (403 unauthorized_client)
    token_endpoint_auth_method: ['client_secret_basic', 'client_secret_post'],
    scope: [],
  });
}

/**
 * The person at Glewlwyd, over its HTTP API with a cookie jar (see the file comment): signs in with the user's
 * password on the first page that needs it and consents to the scopes the client asked for.
 */
export class GlewlwydPerson {
  readonly #idp: Glewlwyd;
  readonly #jar = new CookieJar();

  constructor(idp: Glewlwyd) {
    this.#idp = idp;
  }

  /**
   * RFC 8628 §3.3: opens the verification URI with the code (`verification_uri_complete`), signs in, consents, and
   * continues; resolves when Glewlwyd says the device is connected (its `prompt=deviceComplete` page).
   */
  async approveDevice(verificationUriComplete: string): Promise<void> {
    const login = await this.#toLoginPage(new URL(verificationUriComplete));
    const done = await this.#continue(login);
    if (done.searchParams.get('prompt') !== 'deviceComplete')
      throw new Error(`Glewlwyd did not connect the device: ${done.href}`);
  }

  /**
   * Authorization code flow: opens `authorizeUrl`, signs in, consents, continues, and resolves with Glewlwyd's
   * redirect to the client's `redirect_uri` (not followed).
   */
  async authorize(authorizeUrl: string): Promise<URL> {
    const login = await this.#toLoginPage(new URL(authorizeUrl));
    return this.#continue(login);
  }

  /** Glewlwyd sends a person without a session (or with one it must confirm) to `login.html?…&callback_url=…`. */
  async #toLoginPage(start: URL): Promise<URL> {
    const to = await this.#jar.redirect(start);
    if (to.pathname !== '/login.html') throw new Error(`expected Glewlwyd's sign-in page, got ${to.href}`);
    return to;
  }

  /** What the sign-in app does: sign in, grant the client the scopes it asked for, then `callback_url&g_continue`. */
  async #continue(login: URL): Promise<URL> {
    const callback = login.searchParams.get('callback_url');
    if (callback === null) throw new Error(`no callback_url on the sign-in page: ${login.href}`);
    const base = this.#idp.url;
    await this.#jar.json(`${base}/api/auth/`, 'POST', {
      username: this.#idp.username,
      password: this.#idp.password,
    });
    const clientId = login.searchParams.get('client_id');
    const scope = login.searchParams.get('scope');
    if (clientId !== null && scope !== null)
      await this.#jar.json(`${base}/api/auth/grant/${encodeURIComponent(clientId)}`, 'PUT', { scope });
    return this.#jar.redirect(new URL(`${callback}${callback.includes('?') ? '&' : '?'}g_continue`));
  }
}

/** Glewlwyd's one cookie (`Path=/`), for one origin: all the jar the admin and the person need. */
class CookieJar {
  #session: string | undefined;

  /** A JSON API call; throws unless 2xx. */
  async json(url: string, method: 'POST' | 'PUT', body: unknown): Promise<void> {
    const res = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json', ...this.#header() },
      body: JSON.stringify(body),
    });
    this.#keep(res);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${new URL(url).pathname} → HTTP ${res.status} ${text}`);
  }

  /** A GET that must answer with a redirect; resolves with its target. */
  async redirect(url: URL): Promise<URL> {
    const res = await fetch(url, { redirect: 'manual', headers: this.#header() });
    this.#keep(res);
    const location = res.headers.get('location');
    await res.body?.cancel();
    if (res.status < 300 || res.status >= 400 || location === null)
      throw new Error(`GET ${url.pathname} → HTTP ${res.status}, not a redirect`);
    return new URL(location, url);
  }

  #header(): Record<string, string> {
    return this.#session === undefined ? {} : { cookie: `${SESSION_COOKIE}=${this.#session}` };
  }

  #keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      if (pair.slice(0, eq).trim() === SESSION_COOKIE) this.#session = pair.slice(eq + 1).trim();
    }
  }
}

/** Runs a command with `input` on stdin; rejects on a non-zero exit, with its stderr. */
function run(cmd: string, args: string[], input: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}: ${err}`)),
    );
    p.stdin.end(input);
  });
}
