/**
 * The rules that span several variables, each a function from the parsed environment to the problems it finds (empty
 * when none), so that `loadConfig` reports all of them in one pass. Rules on one variable alone live in its schema
 * (./schema.ts).
 */
import { type Env, upstreamMode } from './schema.ts';

/** Every cross-variable problem of `e`, in the order the rules below are listed. */
export function crossVariableProblems(e: Env): string[] {
  return [
    ...upstreamPairProblems(e),
    ...productionProblems(e),
    ...redisProblems(e),
    ...mqttCredentialProblems(e),
    ...bridgePortProblems(e),
  ];
}

/** The upstream issuer and the gateway's client id there come together or not at all. */
function upstreamPairProblems(e: Env): string[] {
  const issuerSet = e.DEVICEGATE_UPSTREAM_ISSUER !== undefined;
  const clientIdSet = e.DEVICEGATE_UPSTREAM_CLIENT_ID !== undefined;
  if (issuerSet && !clientIdSet) {
    return ['DEVICEGATE_UPSTREAM_CLIENT_ID: required when DEVICEGATE_UPSTREAM_ISSUER is set'];
  }
  if (!issuerSet && clientIdSet) {
    return ['DEVICEGATE_UPSTREAM_ISSUER: required when DEVICEGATE_UPSTREAM_CLIENT_ID is set'];
  }
  return [];
}

/** `NODE_ENV=production` refuses every demo default: demo upstream, no device auth, demo device key, random secret. */
function productionProblems(e: Env): string[] {
  if (e.NODE_ENV !== 'production') return [];
  const problems: string[] = [];
  if (e.DEVICEGATE_UPSTREAM_ISSUER === undefined) {
    problems.push('DEVICEGATE_UPSTREAM_ISSUER: required in production (no demo upstream)');
  }
  if (e.DEVICEGATE_DEVICE_AUTH === 'none')
    problems.push('DEVICEGATE_DEVICE_AUTH: "none" is refused in production');
  if (e.DEVICEGATE_DEVICE_AUTH === 'hmac' && e.DEVICEGATE_DEVICE_KEY === undefined) {
    problems.push('DEVICEGATE_DEVICE_KEY: required in production');
  }
  if (e.DEVICEGATE_SECRET === undefined) problems.push('DEVICEGATE_SECRET: required in production');
  return problems;
}

/** Instances sharing a Redis must unseal each other's flows, so a random per-start secret cannot do. */
function redisProblems(e: Env): string[] {
  return e.DEVICEGATE_REDIS_URL !== undefined && e.DEVICEGATE_SECRET === undefined
    ? ['DEVICEGATE_SECRET: required with DEVICEGATE_REDIS_URL (every instance must share it)']
    : [];
}

/** The gateway's broker credentials mean nothing to the embedded broker. */
function mqttCredentialProblems(e: Env): string[] {
  return e.DEVICEGATE_MQTT_URL === undefined && (e.DEVICEGATE_MQTT_USERNAME ?? e.DEVICEGATE_MQTT_PASSWORD)
    ? ['DEVICEGATE_MQTT_USERNAME: only used with DEVICEGATE_MQTT_URL']
    : [];
}

/** The redirect URI registered at the upstream is built from the public URL before any port is bound. */
function bridgePortProblems(e: Env): string[] {
  return upstreamMode(e) === 'authorization_code' &&
    e.DEVICEGATE_HTTP_PORT === 0 &&
    e.DEVICEGATE_PUBLIC_URL === undefined
    ? ['DEVICEGATE_PUBLIC_URL: required in bridge mode when DEVICEGATE_HTTP_PORT is 0']
    : [];
}
