/**
 * The MQTT 5 Response Topic rule (`isOwnReplyTopic`, src/transport/topics.ts): a device's request may name where
 * its answer goes only within its own `res` subtree.
 */
import { describe, expect, it } from 'vitest';
import { isOwnReplyTopic, topics } from '../../src/transport/topics.ts';

const PREFIX = 'devicegate/v1';
const t = topics(PREFIX);

describe('isOwnReplyTopic', () => {
  it.each([`${PREFIX}/tv-1/res`, `${PREFIX}/tv-1/res/rpc-1`, `${PREFIX}/tv-1/res/a/b/c`])(
    'accepts %s for tv-1',
    (topic) => {
      expect(t.isOwnReplyTopic('tv-1', topic)).toBe(true);
    },
  );

  it.each([
    ['another device res', `${PREFIX}/tv-2/res`],
    ['below another device res', `${PREFIX}/tv-2/res/rpc-1`],
    ['a device id that only starts like it', `${PREFIX}/tv-10/res`],
    ['a sibling of res that only starts like it', `${PREFIX}/tv-1/result`],
    ['its own request topic (the gateway consumes it)', `${PREFIX}/tv-1/req/authorize`],
    ['elsewhere in its subtree', `${PREFIX}/tv-1/other`],
    ['outside the prefix', 'elsewhere/tv-1/res'],
    ['a system topic', '$SYS/broker/clients'],
    ['a single-level wildcard', `${PREFIX}/tv-1/res/+`],
    ['a multi-level wildcard', `${PREFIX}/tv-1/res/#`],
    ['a NUL', `${PREFIX}/tv-1/res/a\u0000b`],
    ['an empty level', `${PREFIX}/tv-1/res//x`],
    ['a trailing slash', `${PREFIX}/tv-1/res/`],
    ['the empty string', ''],
    ['over the MQTT topic length', `${PREFIX}/tv-1/res/${'x'.repeat(65_536)}`],
  ])('refuses %s', (_, topic) => {
    expect(t.isOwnReplyTopic('tv-1', topic)).toBe(false);
  });

  it('follows the configured prefix', () => {
    expect(topics('acme/gw').isOwnReplyTopic('tv-1', 'acme/gw/tv-1/res/x')).toBe(true);
    expect(topics('acme/gw').isOwnReplyTopic('tv-1', `${PREFIX}/tv-1/res/x`)).toBe(false);
    expect(isOwnReplyTopic('p/tv-1/res', 'p/tv-1/res')).toBe(true);
  });
});
