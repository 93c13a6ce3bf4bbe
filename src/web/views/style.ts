/**
 * The pages' only stylesheet, served from `/static/device.css` (CSP `style-src 'self'`: no inline styles). Kept as a
 * module so the built gateway (dist/) carries it without copying assets. One column, large touch targets, visible
 * focus, WCAG AA contrast in light and dark mode.
 */
export const STYLESHEET = `
:root {
  color-scheme: light dark;
  --bg: #f3f5f8;
  --card: #ffffff;
  --text: #16191f;
  --muted: #474f5c;
  --line: #cfd5de;
  --accent: #1d4ed8;
  --accent-text: #ffffff;
  --focus: #b45309;
  --warn-bg: #fff7e6;
  --warn-line: #b45309;
  --error-bg: #fdecec;
  --error-line: #b42318;
  --ok: #067647;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1217;
    --card: #181c23;
    --text: #eef1f5;
    --muted: #b6bdc8;
    --line: #3a414d;
    --accent: #8fb0ff;
    --accent-text: #0b1020;
    --focus: #fbbf24;
    --warn-bg: #2b2210;
    --warn-line: #fbbf24;
    --error-bg: #2d1515;
    --error-line: #f97066;
    --ok: #47cd89;
  }
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0;
  min-height: 100vh;
  background: var(--bg);
  color: var(--text);
  font: 1.0625rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Liberation Sans", Arial, sans-serif;
}
.page { max-width: 34rem; margin: 0 auto; padding: 1rem 1rem 2rem; }
header.brand {
  display: flex; align-items: center; gap: .5rem;
  padding: .25rem 0 1rem; font-weight: 700; font-size: 1.125rem; letter-spacing: .01em;
}
.mark {
  display: inline-block; width: 1.5rem; height: 1.5rem; border-radius: .4rem;
  background: var(--accent); border: .3rem solid var(--card); outline: 2px solid var(--accent);
}
main.card {
  background: var(--card); border: 1px solid var(--line); border-radius: .75rem;
  padding: 1.5rem 1.25rem; box-shadow: 0 1px 2px rgb(0 0 0 / .06);
}
h1 { font-size: 1.5rem; line-height: 1.25; margin: 0 0 .75rem; }
h2 { font-size: 1.0625rem; margin: 1.5rem 0 .5rem; }
p { margin: 0 0 1rem; }
.muted { color: var(--muted); font-size: .9375rem; }
.issuer { font-weight: 600; overflow-wrap: anywhere; }
label { display: block; font-weight: 600; margin-bottom: .375rem; }
input.code {
  display: block; width: 100%; min-height: 3.5rem; padding: .5rem .75rem;
  font: 600 1.75rem/1.2 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  letter-spacing: .12em; text-transform: uppercase; text-align: center;
  color: var(--text); background: var(--card);
  border: 2px solid var(--muted); border-radius: .5rem;
}
input.code::placeholder { color: var(--muted); opacity: .6; letter-spacing: .12em; }
.hint { margin: .375rem 0 1.25rem; }
.button {
  display: block; width: 100%; min-height: 3.25rem; padding: .75rem 1rem;
  font: inherit; font-size: 1.125rem; font-weight: 700; text-align: center; text-decoration: none;
  border: 2px solid var(--accent); border-radius: .5rem; cursor: pointer;
}
/* the one action the page is for: filled */
.button.primary { color: var(--accent-text); background: var(--accent); }
.button.primary:hover { filter: brightness(1.08); }
/* the way out: outlined, as large as the primary one (a real choice, never hidden) */
.button.secondary { color: var(--accent); background: var(--card); }
.button.secondary:hover { background: var(--bg); }
.choices { display: grid; grid-template-columns: 1fr 1fr; gap: .75rem; margin-top: 1.25rem; }
@media (max-width: 20rem) { .choices { grid-template-columns: 1fr; } }
a { color: var(--accent); text-underline-offset: .15em; }
a:focus-visible, .button:focus-visible, input:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 3px;
}
input.code:focus { border-color: var(--accent); }
.usercode {
  display: block; margin: .25rem 0 .25rem; padding: .5rem .75rem; text-align: center;
  font: 700 2rem/1.2 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  letter-spacing: .14em; background: var(--bg); border: 1px dashed var(--line); border-radius: .5rem;
}
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .375rem 1rem; margin: 0 0 1rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.fact-hint { display: block; margin-top: .125rem; font-size: .875rem; }
@media (max-width: 22rem) { dl.facts { grid-template-columns: 1fr; gap: 0; } dl.facts dd { margin-bottom: .5rem; } }
ul.scopes { margin: 0 0 1rem; padding-left: 1.25rem; }
ul.scopes li { margin-bottom: .25rem; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.notice { border-left: .3rem solid var(--warn-line); background: var(--warn-bg); padding: .75rem 1rem; border-radius: .25rem; margin: 1.25rem 0 0; }
.notice p { margin: 0; }
.notice p + p { margin-top: .375rem; }
.alert { border-left: .3rem solid var(--error-line); background: var(--error-bg); padding: .75rem 1rem; border-radius: .25rem; margin: 0 0 1rem; }
.alert p { margin: 0; }
.ok { color: var(--ok); }
footer { margin-top: 1.25rem; }
main.card > :last-child, footer p:last-child { margin-bottom: 0; }
`;

/** The brand mark as the pages' icon, served from `/static/favicon.svg` (CSP `img-src 'self'`). */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect x="1" y="1" width="30" height="30" rx="7" fill="#1d4ed8"/>
<rect x="8" y="8" width="16" height="16" rx="3" fill="#ffffff"/>
<rect x="12" y="12" width="8" height="8" rx="2" fill="#1d4ed8"/>
</svg>
`;
