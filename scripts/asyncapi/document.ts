/**
 * docs/asyncapi.yaml, built from the device contract's own zod schemas (src/core/protocol.ts) and error table
 * (src/core/errors.ts): `npm run asyncapi` writes it, test/unit/asyncapi.test.ts checks that the committed file is
 * what this builds and that @asyncapi/parser accepts it. The document describes the gateway: it receives the
 * device's requests and sends the replies.
 */
import { z } from 'zod';
import { stringify } from 'yaml';
import { DEVICE_ACTIONS, type DeviceAction, MAX_PAYLOAD_BYTES } from '../../src/core/protocol.ts';
import {
  authorizeRequest,
  authorizedReplySchema,
  errorReplySchema,
  pendingReplySchema,
  ridRequest,
} from '../../src/core/protocol.ts';
import { OAUTH_ERROR_CODES, OAUTH_ERROR_MEANINGS } from '../../src/core/errors.ts';

type Json = Record<string, unknown>;

/** A zod schema as an AsyncAPI Schema Object (a superset of JSON Schema draft-07), without the `$schema` key. */
function payload(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-07', io: 'input' });
  return rest;
}

const ACTION_DOCS: Readonly<Record<DeviceAction, string>> = {
  authorize:
    'Start a flow. The same `rid` again answers with the same flow (after a reconnect, or `slow_down`), never a new one.',
  status: 'Send me the current state of this flow again (after a reboot or reconnect).',
  ack: 'The token arrived; the gateway forgets its copy.',
  cancel: 'Abandon a pending flow (answered `access_denied`).',
  refresh:
    'A fresh access token from the refresh token the gateway keeps for this device (answered `authorized`, or `expired_token` when there is none). Refresh tokens never travel over MQTT.',
};

const REQUEST_BINDINGS = { mqtt: { qos: 1, retain: false, bindingVersion: '0.2.0' } };
const REPLY_BINDINGS = { mqtt: { qos: 1, retain: false, bindingVersion: '0.2.0' } };

const MQTT5_REPLY =
  "MQTT 5 (external broker, `DEVICEGATE_MQTT_PROTOCOL_VERSION=5`): a request that carries a Response Topic and Correlation Data is answered on that topic with the same Correlation Data, but only when the topic is the device's own `{prefix}/{deviceId}/res` or below it (`res/…`); any other topic gets the answer on `res`. Only the direct answer follows the Response Topic; results pushed later (the token after approval) always go to `res`.";

function errorDoc(): string {
  const lines = OAUTH_ERROR_CODES.map((code) => `- \`${code}\`: ${OAUTH_ERROR_MEANINGS[code]}`);
  return ['Error codes (`error`):', '', ...lines].join('\n');
}

function messages(): Json {
  const request = (name: string, schema: z.ZodType, summary: string) => ({
    name,
    title: name,
    summary,
    contentType: 'application/json',
    payload: payload(schema),
    bindings: { mqtt: { payloadFormatIndicator: 1, bindingVersion: '0.2.0' } },
  });
  return {
    authorizeRequest: request('authorizeRequest', authorizeRequest, ACTION_DOCS.authorize),
    ridRequest: request('ridRequest', ridRequest, 'A request that names a flow by its `rid`.'),
    pendingReply: request('pendingReply', pendingReplySchema, 'The person has a code to enter.'),
    authorizedReply: request('authorizedReply', authorizedReplySchema, 'The token.'),
    errorReply: { ...request('errorReply', errorReplySchema, 'An error.'), description: errorDoc() },
  };
}

/** What each request is answered with on `res` (an `ack` that succeeds is not answered). */
const REPLIES: Readonly<Record<DeviceAction, readonly string[]>> = {
  authorize: ['pendingReply', 'authorizedReply', 'errorReply'],
  status: ['pendingReply', 'authorizedReply', 'errorReply'],
  ack: ['errorReply'],
  cancel: ['errorReply'],
  refresh: ['authorizedReply', 'errorReply'],
};

const msgRef = (channel: string, name: string) => ({ $ref: `#/channels/${channel}/messages/${name}` });
const channelRef = (channel: string) => ({ $ref: `#/channels/${channel}` });
const PARAMETERS = {
  prefix: { $ref: '#/components/parameters/prefix' },
  deviceId: { $ref: '#/components/parameters/deviceId' },
};

function channels(): Json {
  const out: Json = {};
  for (const action of DEVICE_ACTIONS) {
    const message = action === 'authorize' ? 'authorizeRequest' : 'ridRequest';
    out[action] = {
      address: `{prefix}/{deviceId}/req/${action}`,
      title: `req/${action}`,
      description: `${ACTION_DOCS[action]} Published by the device only on its own topic.`,
      parameters: PARAMETERS,
      messages: { [message]: { $ref: `#/components/messages/${message}` } },
    };
  }
  out.res = {
    address: '{prefix}/{deviceId}/res',
    title: 'res',
    description: `Every reply to the device, QoS 1, never retained; \`rid\` says which request it answers. Subscribe before the first request: a reply sent before the subscription is lost (or kept in a persistent session). ${MQTT5_REPLY}`,
    parameters: PARAMETERS,
    messages: Object.fromEntries(
      ['pendingReply', 'authorizedReply', 'errorReply'].map((m) => [
        m,
        { $ref: `#/components/messages/${m}` },
      ]),
    ),
  };
  return out;
}

function operations(): Json {
  const out: Json = {};
  for (const action of DEVICE_ACTIONS) {
    const message = action === 'authorize' ? 'authorizeRequest' : 'ridRequest';
    out[action] = {
      action: 'receive',
      channel: channelRef(action),
      title: `device → gateway: req/${action}`,
      summary: ACTION_DOCS[action],
      description:
        'QoS 1; a request published with the retain flag is dropped (the embedded broker disconnects the device).',
      messages: [msgRef(action, message)],
      bindings: REQUEST_BINDINGS,
      reply: { channel: channelRef('res'), messages: REPLIES[action].map((m) => msgRef('res', m)) },
    };
  }
  out.reply = {
    action: 'send',
    channel: channelRef('res'),
    title: 'gateway → device: res',
    summary: 'Replies, and results pushed later (the token once the person approved, an expiry, a denial).',
    messages: ['pendingReply', 'authorizedReply', 'errorReply'].map((m) => msgRef('res', m)),
    bindings: REPLY_BINDINGS,
  };
  return out;
}

const CREDENTIALS =
  'username = client id = device id; password = base64url(HMAC-SHA256(key = DEVICEGATE_DEVICE_KEY, msg = deviceId)) without padding, printed by `devicegate credentials <deviceId>` for provisioning (a device holds its own password, never the fleet key). A device may publish only to its own `req/+` and subscribe only to its own `res` (and below it).';

function servers(): Json {
  const security = [{ $ref: '#/components/securitySchemes/devicePassword' }];
  return {
    gateway: {
      host: 'localhost:1883',
      protocol: 'mqtt',
      protocolVersion: '3.1.1',
      title: 'the embedded broker',
      description:
        "The gateway's own broker (`DEVICEGATE_MQTT_HOST` / `_PORT`); MQTT 3.1.1 only, keepalive 1 to 3600 s.",
      security,
    },
    broker: {
      host: 'mosquitto:8883',
      protocol: 'secure-mqtt',
      protocolVersion: '5',
      title: 'an external broker over TLS',
      description:
        'A broker of your own in front of the gateways (`DEVICEGATE_MQTT_URL`), as in docker-compose.yml: Mosquitto with TLS and the ACL of deploy/mosquitto. Devices may use MQTT 3.1.1 or 5.',
      security,
    },
  };
}

function components(): Json {
  return {
    messages: messages(),
    parameters: {
      prefix: { default: 'devicegate/v1', description: 'The topic prefix, `DEVICEGATE_TOPIC_PREFIX`.' },
      deviceId: {
        description: 'The device id, `^[A-Za-z0-9._-]{1,64}$`: the identity the broker authenticated.',
      },
    },
    securitySchemes: { devicePassword: { type: 'userPassword', description: CREDENTIALS } },
  };
}

/** The AsyncAPI 3 document of the device contract, as a plain object. */
export function asyncApiDocument(): Json {
  return {
    asyncapi: '3.1.0',
    info: {
      title: 'devicegate device contract',
      version: '1.0.0',
      description: `The OAuth 2.0 Device Authorization Grant (RFC 8628) over MQTT: a device publishes a request on its own \`req/…\` topic and gets every reply pushed on its own \`res\` topic. Payloads are JSON, UTF-8, at most ${MAX_PAYLOAD_BYTES} bytes; unknown request fields are refused (\`invalid_request\`), unknown reply fields must be ignored. \`v\` in a reply is the payload version. Nothing is retained. See the README, "The device contract" and "Writing a device".`,
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    defaultContentType: 'application/json',
    servers: servers(),
    channels: channels(),
    operations: operations(),
    components: components(),
  };
}

/** docs/asyncapi.yaml's text. */
export function asyncApiYaml(): string {
  const header =
    '# Generated from src/core/protocol.ts and src/core/errors.ts by `npm run asyncapi`; do not edit.\n';
  return header + stringify(asyncApiDocument(), { lineWidth: 0, aliasDuplicateObjects: false });
}
