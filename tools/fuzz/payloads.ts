/**
 * Mutated JSON request payloads for the devices' own request topics: each starts from a valid `req/authorize`,
 * `req/status`, `req/ack`, `req/refresh` or `req/cancel` body and is bent by one to three mutations — wrong types,
 * sizes, unicode, nesting, huge numbers, prototype-pollution keys — either on the value or on its JSON text.
 */
import type { DeviceAction } from '../../src/core/protocol.ts';
import type { Rng } from '../lib/rng.ts';

export interface FuzzPayload {
  action: DeviceAction;
  payload: Buffer;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const ACTIONS: readonly DeviceAction[] = ['authorize', 'status', 'ack', 'refresh', 'cancel'];
const POLLUTING_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
];
const ODD_STRINGS = [
  '',
  ' ',
  '\u0000',
  '\u202e',
  '\ufeff',
  '😀'.repeat(40),
  'é',
  'a'.repeat(65),
  'a'.repeat(4096),
  '../../res',
  '+',
  '#',
  '$share/x/y',
  'devicegate/v1/other-device/res',
  'null',
  '<script>',
  '%00',
];
const ODD_NUMBERS = [
  0,
  -0,
  -1,
  1e308,
  -1e308,
  5e-324,
  2 ** 53 + 2,
  Number.MAX_SAFE_INTEGER,
  4294967296,
  3.14,
];

/** A valid body for `action`, with a rid this device may legitimately use. */
function validBody(action: DeviceAction, rid: string, rng: Rng): { [k: string]: Json } {
  if (action !== 'authorize') return { rid };
  const body: { [k: string]: Json } = {
    rid,
    scope: rng.pick(['openid', 'openid offline_access', 'profile']),
  };
  if (rng.chance(0.5)) body.device = { name: 'Fuzz TV', model: 'FZ-1', firmware: '1.0.0' };
  return body;
}

function oddValue(rng: Rng, depth = 0): Json {
  switch (rng.int(0, 7)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(ODD_NUMBERS);
    case 3:
      return rng.pick(ODD_STRINGS);
    case 4:
      return depth > 3 ? [] : [oddValue(rng, depth + 1), oddValue(rng, depth + 1)];
    case 5:
      return depth > 3 ? {} : { [rng.pick(POLLUTING_KEYS)]: oddValue(rng, depth + 1) };
    case 6:
      return nested(rng.int(10, 400), rng.chance(0.5));
    default:
      return String.fromCodePoint(
        ...Array.from({ length: rng.int(1, 30) }, () => rng.int(0x20, 0x10ffff) & 0x10f7ff),
      );
  }
}

function nested(depth: number, arrays: boolean): Json {
  let v: Json = 'deep';
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { a: v };
  return v;
}

/** One mutation of the value: replace, add or delete a member, or wrap the whole body. */
function mutateValue(body: { [k: string]: Json }, rng: Rng): Json {
  const keys = Object.keys(body);
  switch (rng.int(0, 4)) {
    case 0:
      body[rng.pick(keys.length > 0 ? keys : ['rid'])] = oddValue(rng);
      return body;
    case 1:
      // defineProperty: a plain assignment to `__proto__` would set the prototype, not add the member
      Object.defineProperty(body, rng.pick([...POLLUTING_KEYS, 'extra', 'v', 'status']), {
        value: oddValue(rng),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      return body;
    case 2:
      if (keys.length > 0) delete body[rng.pick(keys)];
      return body;
    case 3:
      return rng.chance(0.5) ? [body] : rng.pick([null, 1, 'x', true]);
    default:
      if (typeof body.device === 'object' || rng.chance(0.5))
        body.device = { name: oddValue(rng), [rng.pick(POLLUTING_KEYS)]: oddValue(rng) };
      else
        body.jwk = {
          kty: rng.pick(['EC', 'RSA', 'OKP', 'oct', 'x']),
          crv: oddValue(rng),
          x: oddValue(rng),
          d: 'private',
        };
      return body;
  }
}

/** One mutation of the JSON text: truncation, a flipped byte, invalid UTF-8, duplicate keys, huge literals, padding. */
function mutateText(text: Buffer, rng: Rng): Buffer {
  switch (rng.int(0, 6)) {
    case 0:
      return text.subarray(0, rng.int(0, text.length));
    case 1: {
      const copy = Buffer.from(text);
      if (copy.length > 0) copy[rng.int(0, copy.length - 1)] = rng.int(0, 255);
      return copy;
    }
    case 2:
      return Buffer.concat([
        text,
        Buffer.from(rng.pick([[0xc3], [0xff, 0xfe], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]])),
      ]);
    case 3:
      return Buffer.from(text.toString('utf8').replace('{', '{"rid":"dup","__proto__":{"polluted":1},'));
    case 4:
      return Buffer.from(
        text
          .toString('utf8')
          .replace(
            /"rid":("[^"]*")?/,
            `"rid":${rng.pick(['1e999999', '-', '0x10', '[]', '{}', '"\\ud800"', '"\\u0000"'])}`,
          ),
      );
    case 5:
      return Buffer.concat([Buffer.from(rng.pick(['\ufeff', ' '.repeat(rng.int(1, 5000)), '\n'])), text]);
    default:
      return Buffer.from(text.toString('utf8').repeat(rng.int(2, 40)));
  }
}

/**
 * The `n`th fuzz payload of a device whose legitimate rids start with `ridPrefix`. Mostly mutated; one in twenty is
 * left valid so that the handlers behind validation are reached too.
 */
export function fuzzPayload(rng: Rng, ridPrefix: string, n: number): FuzzPayload {
  const action = rng.pick(ACTIONS);
  let value: Json = validBody(action, `${ridPrefix}${n}`, rng);
  if (rng.chance(0.05)) return { action, payload: Buffer.from(JSON.stringify(value)) };
  const rounds = rng.int(1, 3);
  for (let i = 0; i < rounds && typeof value === 'object' && value !== null && !Array.isArray(value); i++) {
    value = mutateValue(value, rng);
  }
  let text: Buffer = Buffer.from(JSON.stringify(value) ?? 'undefined');
  if (rng.chance(0.3)) text = mutateText(text, rng);
  // stay under the broker's 64 KiB packet limit: a larger packet closes the connection, which is a packet-level case
  return { action, payload: Buffer.from(text.subarray(0, 60_000)) };
}
