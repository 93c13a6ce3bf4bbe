/**
 * The pages' languages (src/web/i18n/): every catalogue has English's keys, nested records included, and the
 * templates hold no words of their own — every sentence a person reads comes from a catalogue. The templates are
 * read from the source with the TypeScript parser: the static text of every `html` tagged template, with its tags
 * taken out, must contain no letters, and neither may the attributes a person reads or hears.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CATALOGUES, negotiate, relativeTime } from '../../src/web/i18n/index.ts';
import { en } from '../../src/web/i18n/en.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
/** The files whose templates render pages. */
const TEMPLATE_FILES = ['src/web/views/pages.ts'];
/** Attributes whose text is shown or read aloud. */
const READ_ATTRIBUTES = /\s(?:placeholder|title|alt|aria-label|aria-description)="([^"]*)"/g;
/** A template that is attributes to go into a tag (`html\` aria-invalid="true"\``), not text. */
const ATTRIBUTES_ONLY = /^(?:\s+[a-z-]+(?:="[^"]*")?)+\s*$/;
const HOLE = '\u{1F532}';

/** Every key path of a catalogue (`scopes.openid`), with the kind of value it holds. */
function shape(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null) {
    return [`${prefix}: ${typeof value}${typeof value === 'function' ? `/${value.length}` : ''}`];
  }
  return Object.keys(value)
    .sort()
    .flatMap((k) => shape((value as Record<string, unknown>)[k], prefix === '' ? k : `${prefix}.${k}`));
}

/** The words found outside tags and in read attributes of every `html` template in `source`. */
function wordsInTemplates(source: string, file = 'pages.ts'): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isTaggedTemplateExpression(node) && node.tag.getText(sf) === 'html') {
      const t = node.template;
      const parts = ts.isNoSubstitutionTemplateLiteral(t)
        ? [t.text]
        : [t.head.text, ...t.templateSpans.map((s) => s.literal.text)];
      const joined = parts.join(HOLE);
      for (const m of joined.matchAll(READ_ATTRIBUTES)) {
        if (/\p{L}/u.test(m[1]!)) found.push(m[0].trim());
      }
      const text = (ATTRIBUTES_ONLY.test(joined) ? '' : joined)
        .replace(/<[^>]*>/g, ' ')
        .replace(/&[a-z]+;|&#\d+;/g, ' ');
      found.push(...(text.match(/\p{L}[\p{L}\p{N}'’-]*/gu) ?? []));
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

describe('the catalogues', () => {
  it('English and German have the same keys, nested records included, and the same functions', () => {
    expect(Object.keys(CATALOGUES).sort()).toEqual(['de', 'en']);
    for (const [lang, catalogue] of Object.entries(CATALOGUES)) {
      expect(shape(catalogue), lang).toEqual(shape(en));
      expect(catalogue.lang).toBe(lang);
    }
  });

  it('no template holds a word of its own: every sentence comes from a catalogue', async () => {
    // the check finds words where there are some
    expect(wordsInTemplates('html`<p>Hello <b>${name}</b></p><input placeholder="Your code" />`')).toEqual([
      'placeholder="Your code"',
      'Hello',
    ]);
    for (const file of TEMPLATE_FILES) {
      const source = await readFile(path.join(ROOT, file), 'utf8');
      expect(source).toContain('html`');
      expect(wordsInTemplates(source, file), file).toEqual([]);
    }
  });
});

describe('negotiate and relativeTime', () => {
  it('falls back to English for a header with nothing we speak', () => {
    expect(negotiate(undefined).lang).toBe('en');
    expect(negotiate('x-klingon;q=1, ;q=, de;q=abc').lang).toBe('de');
    expect(negotiate('tlh').lang).toBe('en');
  });

  it('says times in words in the catalogue language', () => {
    const de = CATALOGUES['de']!;
    const now = Date.UTC(2026, 0, 1, 12);
    expect(relativeTime(en, now - 20_000, now)).toBe('just now');
    expect(relativeTime(en, now - 60_000, now)).toBe('1 minute ago');
    expect(relativeTime(en, now - 150_000, now)).toBe('2 minutes ago');
    expect(relativeTime(en, now + 5 * 60_000, now)).toBe('in 5 minutes');
    expect(relativeTime(en, now + 30_000, now)).toBe('in 1 minute');
    expect(relativeTime(en, now + 2 * 3_600_000, now)).toBe('in 2 hours');
    expect(relativeTime(de, now - 20_000, now)).toBe('gerade eben');
    expect(relativeTime(de, now - 120_000, now)).toBe('vor 2 Minuten');
    expect(relativeTime(de, now + 5 * 60_000, now)).toBe('in 5 Minuten');
  });
});
