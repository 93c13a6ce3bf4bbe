/** `redactUrl`: the one way a configured URL is shown (logs, banner, `/readyz`, errors, `config check`). */
import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/observability/redact.ts';

describe('redactUrl', () => {
  it.each([
    ['mqtt://user:pass@broker:1883', 'mqtt://***@broker:1883'],
    ['redis://:pw@127.0.0.1:6379/0', 'redis://***@127.0.0.1:6379/0'],
    ['mqtts://token@broker.example', 'mqtts://***@broker.example'],
    // a raw `@`, `/` or `:` inside the password is still hidden
    ['mqtt://u:p@ss/w:rd@broker', 'mqtt://***@broker'],
    ['redis+sentinel://:pw@s1:26379,s2/master', 'redis+sentinel://***@s1:26379,s2/master'],
  ])('hides the userinfo of %s', (url, shown) => {
    expect(redactUrl(url)).toBe(shown);
  });

  it.each(['mqtt://broker:1883', 'redis://127.0.0.1:6379', 'not a url with a @ sign'])(
    'leaves %s as it is',
    (url) => {
      expect(redactUrl(url)).toBe(url);
    },
  );
});
