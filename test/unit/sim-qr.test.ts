/**
 * The simulator's terminal QR code (firmware-sim/render.ts) really scans: the text it prints is turned back into
 * pixels the way a terminal draws it — under a light theme (dark text on white) and a dark one (light text on black),
 * where any cell without an explicit colour takes the theme's — and decoded with jsQR, a pure-JS decoder.
 */
import jsqr from 'jsqr';
import { describe, expect, it } from 'vitest';
import { QUIET_ZONE, pendingLines, qr } from '../../firmware-sim/render.ts';

type Rgb = readonly [number, number, number];
interface Theme {
  fg: Rgb;
  bg: Rgb;
}
const LIGHT_THEME: Theme = { fg: [20, 20, 20], bg: [250, 250, 250] };
const DARK_THEME: Theme = { fg: [230, 230, 230], bg: [10, 10, 10] };
/** The 16 basic SGR colours the renderer may use, as a typical palette draws them. */
const PALETTE: Record<string, Rgb> = {
  '30': [0, 0, 0],
  '40': [0, 0, 0],
  '97': [255, 255, 255],
  '107': [255, 255, 255],
};
const PX = 4;
// jsqr is CommonJS: its function is both `module.exports` and `.default`; the types know only the latter
const jsQR = jsqr.default;
/** an SGR escape (its parameters in group 1) or one printed character (group 2) */
const SGR_OR_CHAR = new RegExp(String.raw`\u001b\[([\d;]*)m|(.)`, 'gsu');

/** Each printed line as rows of module colours: two module rows per character cell (upper/lower half block). */
function modulesOf(text: string, theme: Theme): Rgb[][] {
  const rows: Rgb[][] = [];
  for (const line of text.split('\n')) {
    const top: Rgb[] = [];
    const bottom: Rgb[] = [];
    let fg = theme.fg;
    let bg = theme.bg;
    for (const m of line.matchAll(SGR_OR_CHAR)) {
      if (m[1] !== undefined) {
        for (const code of m[1].split(';')) {
          if (code === '0' || code === '') [fg, bg] = [theme.fg, theme.bg];
          else if (code === '39') fg = theme.fg;
          else if (code === '49') bg = theme.bg;
          else if (/^3\d$|^9\d$/.test(code)) fg = PALETTE[code] ?? expect.fail(`colour ${code}`);
          else bg = PALETTE[code] ?? expect.fail(`colour ${code}`);
        }
        continue;
      }
      const ch = m[2]!;
      const cell: [Rgb, Rgb] =
        ch === '▀'
          ? [fg, bg]
          : ch === '▄'
            ? [bg, fg]
            : ch === '█'
              ? [fg, fg]
              : ch === ' '
                ? [bg, bg]
                : expect.fail(ch);
      top.push(cell[0]);
      bottom.push(cell[1]);
    }
    rows.push(top, bottom);
  }
  return rows;
}

function decode(text: string, theme: Theme): string | undefined {
  // the four spaces of indentation are the terminal's background, not part of the code
  const rows = modulesOf(text.replace(/^ {4}/gm, ''), theme);
  const width = rows[0]!.length * PX;
  const height = rows.length * PX;
  const data = new Uint8ClampedArray(width * height * 4);
  rows.forEach((row, y) =>
    row.forEach((rgb, x) => {
      for (let dy = 0; dy < PX; dy++)
        for (let dx = 0; dx < PX; dx++) data.set([...rgb, 255], ((y * PX + dy) * width + x * PX + dx) * 4);
    }),
  );
  return jsQR(data, width, height, { inversionAttempts: 'dontInvert' })?.data;
}

const LINK = 'http://192.168.1.20:8080/device?user_code=WDJB-MJHT&k=AZSm9Hnwb3r1Dw4vX0tqgM2c7yEp1f';

describe('the simulator’s terminal QR code', () => {
  it('decodes to the verification_uri_complete on a light and on a dark terminal', () => {
    const text = qr(LINK);
    expect(decode(text, LIGHT_THEME)).toBe(LINK);
    expect(decode(text, DARK_THEME)).toBe(LINK);
  });

  it('has a light quiet zone of four modules on every side', () => {
    const rows = modulesOf(qr(LINK).replace(/^ {4}/gm, ''), DARK_THEME);
    const white = (c: Rgb) => c.every((v) => v === 255);
    const size = rows[0]!.length;
    for (let i = 0; i < QUIET_ZONE; i++) {
      expect(rows[i]!.every(white)).toBe(true);
      expect(rows.every((r) => white(r[i]!) && white(r[size - 1 - i]!))).toBe(true);
    }
    // the last printed line may carry one padding row below the code's own margin
    expect(rows.slice(-QUIET_ZONE).every((r) => r.every(white))).toBe(true);
    expect(rows[QUIET_ZONE]!.some((c) => !white(c))).toBe(true);
  });

  it('is what the simulator prints for a pending reply', () => {
    const lines = pendingLines(
      {
        v: 1,
        status: 'pending',
        rid: 'r1',
        user_code: 'WDJB-MJHT',
        verification_uri: 'http://x/device',
        verification_uri_complete: LINK,
        expires_in: 600,
      },
      false,
    );
    expect(lines).toContain(qr(LINK));
  });
});
