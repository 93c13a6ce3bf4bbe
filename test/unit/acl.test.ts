import { describe, expect, it } from 'vitest';
import { devicePassword } from '../../src/core/crypto.ts';
import {
  type AclPolicy,
  CONNACK_RETURN_CODE,
  decideConnect,
  decideForward,
  decidePublish,
  decideSubscribe,
} from '../../src/transport/acl.ts';
import { topics } from '../../src/transport/topics.ts';

const KEY = 'acl-test-fleet-key';
const PREFIX = 'devicegate/v1';
const hmac: AclPolicy = { topics: topics(PREFIX), deviceAuth: 'hmac', deviceKey: KEY };
const none: AclPolicy = { ...hmac, deviceAuth: 'none' };
const cert: AclPolicy = { ...hmac, deviceAuth: 'cert' };
const ALLOW = { allow: true };
const refused = (reason: string) => ({ allow: false, reason });

const pw = (id: string, key = KEY) => Buffer.from(devicePassword(key, id));
const attempt = (id: string, over: Partial<Parameters<typeof decideConnect>[1]> = {}) => ({
  clientId: id,
  username: id,
  password: pw(id),
  certificateId: undefined,
  will: undefined,
  ...over,
});

describe('decideConnect', () => {
  it('accepts username = client id = a valid device id with its fleet-key password', () => {
    expect(decideConnect(hmac, attempt('tv-1'))).toEqual(ALLOW);
    expect(decideConnect(hmac, attempt('A.b_c-9'.padEnd(64, 'x')))).toEqual(ALLOW);
  });

  it.each<[string, Parameters<typeof decideConnect>[1]]>([
    ['no username', attempt('tv-1', { username: undefined })],
    ['an empty username', attempt('', { clientId: '' })],
    ['a username with a slash', attempt('tv/1')],
    ['a username with a wildcard', attempt('tv+1')],
    ['a 65-character username', attempt('x'.repeat(65))],
  ])('refuses %s as bad_username', (_what, a) => {
    expect(decideConnect(hmac, a)).toEqual(refused('bad_username'));
  });

  it('refuses a client id that differs from the username, even with the right password', () => {
    expect(decideConnect(hmac, attempt('tv-1', { clientId: 'tv-2' }))).toEqual(refused('client_id_mismatch'));
    expect(decideConnect(hmac, attempt('tv-1', { clientId: '' }))).toEqual(refused('client_id_mismatch'));
  });

  it('refuses a missing, wrong, borrowed or other-fleet password in hmac mode', () => {
    expect(decideConnect(hmac, attempt('tv-1', { password: undefined }))).toEqual(refused('bad_password'));
    expect(decideConnect(hmac, attempt('tv-1', { password: Buffer.from('nope') }))).toEqual(
      refused('bad_password'),
    );
    expect(decideConnect(hmac, attempt('tv-1', { password: pw('tv-2') }))).toEqual(refused('bad_password'));
    expect(decideConnect(hmac, attempt('tv-1', { password: pw('tv-1', 'other-key') }))).toEqual(
      refused('bad_password'),
    );
  });

  it('in none mode accepts any password but keeps the id rules', () => {
    expect(decideConnect(none, attempt('tv-1', { password: undefined }))).toEqual(ALLOW);
    expect(decideConnect(none, attempt('tv-1', { password: Buffer.from('x') }))).toEqual(ALLOW);
    expect(decideConnect(none, attempt('tv-1', { clientId: 'tv-2' }))).toEqual(refused('client_id_mismatch'));
    expect(decideConnect(none, attempt('tv 1'))).toEqual(refused('bad_username'));
  });

  describe('cert mode', () => {
    const byCert = (id: string, over: Partial<Parameters<typeof decideConnect>[1]> = {}) =>
      attempt(id, { certificateId: id, username: undefined, password: undefined, ...over });

    it('takes the device id from the verified certificate: no username or password needed', () => {
      expect(decideConnect(cert, byCert('tv-1'))).toEqual(ALLOW);
      expect(decideConnect(cert, byCert('tv-1', { username: 'tv-1' }))).toEqual(ALLOW);
      // a password, right or wrong, is not what identifies the device here
      expect(decideConnect(cert, byCert('tv-1', { password: Buffer.from('anything') }))).toEqual(ALLOW);
    });

    it('refuses a connection without a verified certificate, even with the right fleet-key password', () => {
      expect(decideConnect(cert, attempt('tv-1'))).toEqual(refused('no_certificate'));
      expect(decideConnect(cert, byCert('tv-1', { certificateId: 'tv 1' }))).toEqual(
        refused('no_certificate'),
      );
    });

    it("refuses a client id or username that is not the certificate's CN", () => {
      expect(decideConnect(cert, byCert('tv-1', { clientId: 'tv-2' }))).toEqual(
        refused('client_id_mismatch'),
      );
      expect(decideConnect(cert, byCert('tv-1', { username: 'tv-2' }))).toEqual(refused('bad_username'));
    });

    it("applies the Will rule to the certificate's device", () => {
      const will = { topic: `${PREFIX}/tv-2/req/authorize`, retain: false };
      expect(decideConnect(cert, byCert('tv-1', { will }))).toEqual(refused('will_not_allowed'));
    });
  });

  it('accepts a Will only where the device may publish itself', () => {
    const will = (topic: string, retain = false) => attempt('tv-1', { will: { topic, retain } });
    expect(decideConnect(hmac, will(`${PREFIX}/tv-1/req/authorize`))).toEqual(ALLOW);
    for (const bad of [
      will(`${PREFIX}/tv-2/req/authorize`),
      will(`${PREFIX}/tv-1/res`),
      will(`${PREFIX}/tv-1/req/authorize`, true),
      will('$SYS/x'),
    ]) {
      expect(decideConnect(hmac, bad)).toEqual(refused('will_not_allowed'));
    }
  });

  it('checks the credentials before the Will', () => {
    const a = attempt('tv-1', { password: undefined, will: { topic: `${PREFIX}/tv-2/req/x` } });
    expect(decideConnect(hmac, a)).toEqual(refused('bad_password'));
  });

  it('maps refusals to CONNACK 4 (bad credentials) and 5 (not authorized)', () => {
    expect(CONNACK_RETURN_CODE).toEqual({
      bad_username: 4,
      bad_password: 4,
      client_id_mismatch: 5,
      will_not_allowed: 5,
      no_certificate: 5,
    });
  });
});

describe('decidePublish', () => {
  it('allows a device its own request topics, any action level', () => {
    expect(decidePublish(hmac, 'tv-1', { topic: `${PREFIX}/tv-1/req/authorize` })).toEqual(ALLOW);
    expect(decidePublish(hmac, 'tv-1', { topic: `${PREFIX}/tv-1/req/whatever`, retain: false })).toEqual(
      ALLOW,
    );
  });

  it.each<[string, string, boolean, string]>([
    ['a $ topic', '$SYS/broker/x', false, 'reserved'],
    ['a $ topic shaped like a request', `$${PREFIX}/tv-1/req/authorize`, false, 'reserved'],
    ['a # wildcard', `${PREFIX}/tv-1/req/#`, false, 'wildcard'],
    ['a + wildcard', `${PREFIX}/+/req/authorize`, false, 'wildcard'],
    ['a NUL character', `${PREFIX}/tv-1/req/a\0b`, false, 'wildcard'],
    ['a retained request', `${PREFIX}/tv-1/req/authorize`, true, 'retain'],
    ["another device's request", `${PREFIX}/tv-2/req/authorize`, false, 'not_own_request'],
    ['its own res topic', `${PREFIX}/tv-1/res`, false, 'not_own_request'],
    ['a deeper request topic', `${PREFIX}/tv-1/req/a/b`, false, 'not_own_request'],
    ['another prefix', `other/tv-1/req/authorize`, false, 'not_own_request'],
  ])('refuses %s', (_what, topic, retain, reason) => {
    expect(decidePublish(hmac, 'tv-1', { topic, retain })).toEqual(refused(reason));
  });

  it('refuses QoS 2 on its own request topic and takes QoS 0 and 1 (issue 10: aedes let resent QoS 2 copies through)', () => {
    const topic = `${PREFIX}/tv-1/req/authorize`;
    expect(decidePublish(hmac, 'tv-1', { topic, qos: 2 })).toEqual(refused('qos2'));
    expect(decidePublish(hmac, 'tv-1', { topic, qos: 1 })).toEqual(ALLOW);
    expect(decidePublish(hmac, 'tv-1', { topic, qos: 0 })).toEqual(ALLOW);
  });

  it('refuses a publish with no device as not_own_request', () => {
    expect(decidePublish(hmac, undefined, { topic: `${PREFIX}/tv-1/req/authorize` })).toEqual(
      refused('not_own_request'),
    );
  });
});

describe('decideSubscribe and decideForward', () => {
  it('allow exactly the device own res topic', () => {
    expect(decideSubscribe(hmac, 'tv-1', `${PREFIX}/tv-1/res`)).toEqual(ALLOW);
    expect(decideForward(hmac, 'tv-1', `${PREFIX}/tv-1/res`)).toEqual(ALLOW);
  });

  it.each([
    `${PREFIX}/tv-2/res`,
    `${PREFIX}/+/res`,
    `${PREFIX}/#`,
    '#',
    `${PREFIX}/tv-1/req/authorize`,
    '$SYS/#',
  ])('refuse %s as not_own_response', (topic) => {
    expect(decideSubscribe(hmac, 'tv-1', topic)).toEqual(refused('not_own_response'));
    expect(decideForward(hmac, 'tv-1', topic)).toEqual(refused('not_own_response'));
  });
});
