/**
 * The demo identity provider's own `/interaction/{uid}` pages: sign-in (prompt `login`) and consent (prompt
 * `consent`). node-oidc-provider sends the browser here (`interactions.url` in `provider-config.ts`); a finished
 * step hands back to it with `interactionFinished`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InteractionDetails, Provider } from 'oidc-provider';
import type { Logger } from 'pino';
import { DEMO_CLIENT_NAME, DEMO_USERNAME, isDemoUser } from './account.ts';
import { PAGE_HEADERS, consentPage, errorPage, loginPage } from './pages.ts';

/** Largest sign-in/consent form body read (bytes). */
const MAX_FORM_BYTES = 8 * 1024;

/** One request to an interaction page, with the provider's view of the interaction it belongs to. */
interface Step {
  provider: Provider;
  req: IncomingMessage;
  res: ServerResponse;
  uid: string;
  details: InteractionDetails;
}

/**
 * A handler for requests whose path starts with `/interaction/`. It never rejects: an expired or foreign session
 * gets an error page, anything else is logged and answered with a 500 page.
 */
export function interactionHandler(provider: Provider, log: Logger) {
  return async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    try {
      await handleInteraction(provider, req, res, path);
    } catch (err) {
      if (err instanceof Error && err.name === 'SessionNotFound') {
        return send(
          res,
          400,
          errorPage('Sign-in expired', 'This sign-in has expired or began in another browser.'),
        );
      }
      log.error({ err }, 'demo identity provider page failed');
      if (!res.headersSent) send(res, 500, errorPage('Error', 'Something went wrong. Start again.'));
      else res.destroy();
    }
  };
}

async function handleInteraction(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  const m = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm))?$/.exec(path);
  if (m === null) return send(res, 404, errorPage('Not found', 'There is no such page.'));
  const [, uid = '', step] = m;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    return send(res, 400, errorPage('Sign-in expired', 'This sign-in page is out of date. Start again.'));
  }
  const s: Step = { provider, req, res, uid, details };
  if (req.method === 'GET' && step === undefined) return showPrompt(s);
  if (req.method !== 'POST' || step === undefined) {
    return send(res, 405, errorPage('Not allowed', 'Use the form on the page.'));
  }
  const form = await readForm(req);
  if (form === undefined) return send(res, 400, errorPage('Bad request', 'The form could not be read.'));
  const prompt = details.prompt.name;
  if (step === 'login' && prompt === 'login') return submitLogin(s, form);
  if (step === 'confirm' && prompt === 'consent') return submitConsent(s, form);
  return send(res, 400, errorPage('Sign-in expired', 'This sign-in page is out of date. Start again.'));
}

/** GET: the page for the prompt the provider is at. */
function showPrompt({ res, uid, details }: Step): void {
  const clientName = DEMO_CLIENT_NAME;
  if (details.prompt.name === 'login') {
    return send(res, 200, loginPage({ action: `/interaction/${uid}/login`, clientName }));
  }
  if (details.prompt.name === 'consent') {
    const scopes = details.prompt.details.missingOIDCScope ?? [];
    return send(res, 200, consentPage({ action: `/interaction/${uid}/confirm`, clientName, scopes }));
  }
  return send(res, 400, errorPage('Sign-in failed', 'This step is not supported by the demo.'));
}

/** POST `/login`: the demo user signs in, or sees the form again. */
async function submitLogin({ provider, req, res, uid }: Step, form: URLSearchParams): Promise<void> {
  const username = form.get('username') ?? '';
  if (!isDemoUser(username, form.get('password') ?? '')) {
    const action = `/interaction/${uid}/login`;
    const error = 'Wrong username or password.';
    return send(res, 401, loginPage({ action, clientName: DEMO_CLIENT_NAME, error, username }));
  }
  return provider.interactionFinished(
    req,
    res,
    { login: { accountId: DEMO_USERNAME } },
    { mergeWithLastSubmission: false },
  );
}

/** POST `/confirm`: the person approves (the missing scopes and claims are granted) or denies. */
async function submitConsent({ provider, req, res, details }: Step, form: URLSearchParams): Promise<void> {
  const decision = form.get('decision');
  if (decision === 'deny') {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the person denied the request' },
      { mergeWithLastSubmission: false },
    );
  }
  if (decision !== 'approve') return send(res, 400, errorPage('Bad request', 'Choose Approve or Deny.'));
  const accountId = details.session?.accountId;
  const clientId = details.params.client_id;
  if (accountId === undefined || typeof clientId !== 'string') {
    return send(res, 400, errorPage('Sign-in expired', 'Sign in again.'));
  }
  const existing = details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId);
  const grant = existing ?? new provider.Grant({ accountId, clientId });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
  if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(
    req,
    res,
    { consent: existing === undefined ? { grantId } : {} },
    { mergeWithLastSubmission: true },
  );
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** An `application/x-www-form-urlencoded` body of at most {@link MAX_FORM_BYTES}, or `undefined`. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
