/**
 * What the simulator shows a person: the code box, the terminal QR code, token fingerprints (a token is never shown
 * whole, on screen or in `--json` output), and where the connection settings came from.
 */
import QRCode from 'qrcode';
import { DEMO_STATE_FILE } from '../src/demo/state.ts';
import type { ConnectionSettings } from './args.ts';
import type { SimReply } from './replies.ts';

/** A short, non-secret fingerprint of a token: its first 6 characters and its length. */
export function fingerprint(token: string): string {
  const shown = token.slice(0, Math.min(6, Math.floor(token.length / 3)));
  return `${shown}… (${token.length} chars)`;
}

/** A reply with every token replaced by its {@link fingerprint}, for `--json`. */
export function redact(reply: SimReply): Record<string, unknown> {
  const out: Record<string, unknown> = { ...reply };
  for (const k of ['access_token', 'id_token', 'refresh_token', 'jwe']) {
    const v = out[k];
    if (typeof v === 'string') out[k] = fingerprint(v);
  }
  return out;
}

/** `42 s` below a minute and a half, whole minutes above. */
export function minutes(seconds: number): string {
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

/** Where the broker URL came from, as a suffix for the "broker" line. */
export function whereFrom(c: ConnectionSettings): string {
  if (c.urlFrom === 'demo-file') return ` (from ${DEMO_STATE_FILE})`;
  if (c.urlFrom === 'default') return ' (default; is the gateway running? start it with `npm start`)';
  return '';
}

/** Which fleet key was used (never the key itself), for a refused connection. */
export function keyHint(c: ConnectionSettings): string {
  switch (c.keyFrom) {
    case 'flag':
      return 'the fleet key given with --key';
    case 'env':
      return 'the fleet key in DEVICEGATE_DEVICE_KEY';
    case 'demo-file':
      return `the demo fleet key from ${DEMO_STATE_FILE}`;
    case 'demo-default':
      return 'the public demo fleet key (set --key or DEVICEGATE_DEVICE_KEY to the gateway’s DEVICEGATE_DEVICE_KEY)';
  }
}

/** The user code in a double-lined box; `bold` adds the ANSI bold escape (only on a colour terminal). */
export function codeBox(code: string, bold: boolean): string[] {
  const inner = `   ${code}   `;
  const bar = '═'.repeat(inner.length);
  const text = bold ? `\x1b[1m${inner}\x1b[22m` : inner;
  return [`      ╔${bar}╗`, `      ║${text}║`, `      ╚${bar}╝`];
}

/** Modules of light margin around the code on every side (ISO/IEC 18004 asks for four). */
export const QUIET_ZONE = 4;

/** Explicit colours (SGR): black and bright white, never the terminal's own, so light and dark themes scan alike. */
const DARK = { fg: '30', bg: '40' };
const LIGHT = { fg: '97', bg: '107' };

/**
 * `text` as a terminal QR code, indented by four spaces: two module rows per line with the upper half block, its
 * foreground the upper module and its background the lower one, every cell coloured explicitly (a terminal's default
 * colours are dark on light or light on dark, which would invert the code on one of them).
 */
export function qr(text: string): string {
  const { modules } = QRCode.create(text, { errorCorrectionLevel: 'M' });
  const size = modules.size + 2 * QUIET_ZONE;
  const dark = (x: number, y: number): boolean => {
    const mx = x - QUIET_ZONE;
    const my = y - QUIET_ZONE;
    return mx >= 0 && my >= 0 && mx < modules.size && my < modules.size && modules.get(my, mx) === 1;
  };
  const lines: string[] = [];
  for (let y = 0; y < size; y += 2) {
    let line = '    ';
    for (let x = 0; x < size; x++) {
      const top = dark(x, y) ? DARK : LIGHT;
      const bottom = y + 1 < size && dark(x, y + 1) ? DARK : LIGHT;
      line += `\x1b[${top.fg};${bottom.bg}m▀`;
    }
    lines.push(`${line}\x1b[0m`);
  }
  return lines.join('\n');
}

/** The lines shown for a new user code: where to go, the code box, the QR code of the complete URI, the expiry. */
export function pendingLines(r: Extract<SimReply, { status: 'pending' }>, bold: boolean): string[] {
  const lines = ['', '  On your phone or computer, open', '', `      ${r.verification_uri}`, ''];
  lines.push('  and enter the code', '', ...codeBox(r.user_code, bold), '');
  const complete = r.verification_uri_complete;
  if (complete !== undefined) {
    lines.push('  or scan this QR code (it opens the page that asks you to confirm this device):', '');
    lines.push(qr(complete), `  ${complete}`, '');
  }
  lines.push(
    `  The code expires in ${minutes(r.expires_in)}.`,
    '',
    'Waiting for approval… (Ctrl-C to cancel)',
  );
  return lines;
}

/** The lines shown once authorized: token type, expiry, scope and token fingerprints. `now` is ms since the epoch. */
export function authorizedLines(r: Extract<SimReply, { status: 'authorized' }>, now: number): string[] {
  const lines = ['', 'Authorized ✓'];
  if (r.token_type !== undefined) lines.push(`  token type     ${r.token_type}`);
  if (r.expires_in !== undefined) {
    const at = new Date(now + r.expires_in * 1000).toLocaleTimeString();
    lines.push(`  expires in     ${minutes(r.expires_in)} (at ${at})`);
  }
  if (r.scope !== undefined) lines.push(`  scope          ${r.scope}`);
  if (r.access_token !== undefined) lines.push(`  access token   ${fingerprint(r.access_token)}`);
  if (r.id_token !== undefined) lines.push(`  id token       ${fingerprint(r.id_token)}`);
  if (r.encrypted === true)
    lines.push('  (the token arrived encrypted to this device and was decrypted here)');
  return lines;
}
