/**
 * Relay mode: the upstream has an RFC 8628 device authorization endpoint, and the gateway passes the flow through —
 * it starts the device authorization and polls the token endpoint on the device's behalf.
 */
import * as oauth from 'oauth4webapi';
import { UnavailableError } from '../core/errors.ts';
import { MAX_INTERVAL_S } from './deviations.ts';
import { asPollResult, exchange, orThrow } from './exchange.ts';
import { type UpstreamContext, refresh, revoke, signIn } from './tokens.ts';
import type { DeviceAuthorization, RelayUpstream } from './types.ts';

/** RFC 8628 §3.2: the poll interval when the upstream sends none. */
export const DEFAULT_INTERVAL_S = 5;
export { MAX_INTERVAL_S };
/** Longest device-code lifetime accepted from an upstream; longer ones are cut to this. */
export const MAX_EXPIRES_IN_S = 1800;
/** Sanity limits on device authorization values (they travel to devices over MQTT, 4 KiB per message). */
const MAX_USER_CODE_LENGTH = 64;
const MAX_URI_LENGTH = 1024;
const MAX_DEVICE_CODE_LENGTH = 4096;

/**
 * The relay upstream. `defaultIntervalSeconds` is the poll interval when the upstream sends none (default
 * {@link DEFAULT_INTERVAL_S}).
 */
export function relayUpstream(
  ctx: UpstreamContext,
  defaultIntervalSeconds = DEFAULT_INTERVAL_S,
): RelayUpstream {
  return {
    kind: 'device',
    refresh: (refreshToken) => refresh(ctx, refreshToken),
    revoke: (refreshToken) => revoke(ctx, refreshToken),

    async startDeviceAuthorization(scope) {
      const as = ctx.metadata.require();
      const result = await exchange(
        ctx,
        'device_authorization',
        (options) =>
          oauth.deviceAuthorizationRequest(
            as,
            ctx.client,
            ctx.clientAuth,
            scope === '' ? {} : { scope },
            options,
          ),
        (res) => oauth.processDeviceAuthorizationResponse(as, ctx.client, res),
      );
      return deviceAuthorization(orThrow('device_authorization', result), defaultIntervalSeconds);
    },

    async pollDeviceToken(deviceCode) {
      const as = ctx.metadata.current();
      if (as === undefined) return { kind: 'unreachable' };
      const result = await exchange(
        ctx,
        'token_poll',
        (options) => oauth.deviceCodeGrantRequest(as, ctx.client, ctx.clientAuth, deviceCode, options),
        async (res) => signIn(await oauth.processDeviceCodeResponse(as, ctx.client, res)),
      );
      return asPollResult(result);
    },
  };
}

/** RFC 8628 §3.2 values, checked and clamped. */
function deviceAuthorization(
  da: oauth.DeviceAuthorizationResponse,
  defaultInterval: number,
): DeviceAuthorization {
  const expiresIn = Math.floor(da.expires_in);
  if (!(expiresIn >= 1)) throw unusable('expires_in');
  const interval =
    da.interval === undefined || da.interval < 1
      ? defaultInterval
      : Math.min(MAX_INTERVAL_S, Math.ceil(da.interval));
  const userCode = da.user_code;
  if (userCode.length === 0 || userCode.length > MAX_USER_CODE_LENGTH || hasControlChars(userCode)) {
    throw unusable('user_code');
  }
  if (da.device_code.length === 0 || da.device_code.length > MAX_DEVICE_CODE_LENGTH)
    throw unusable('device_code');
  if (!isWebUrl(da.verification_uri)) throw unusable('verification_uri');
  const result: DeviceAuthorization = {
    deviceCode: da.device_code,
    userCode,
    verificationUri: da.verification_uri,
    expiresIn: Math.min(expiresIn, MAX_EXPIRES_IN_S),
    interval,
  };
  if (da.verification_uri_complete !== undefined && isWebUrl(da.verification_uri_complete)) {
    result.verificationUriComplete = da.verification_uri_complete;
  }
  return result;
}

function unusable(member: string): UnavailableError {
  return new UnavailableError('upstream', `the device authorization response has an unusable ${member}`);
}

function hasControlChars(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function isWebUrl(value: string): boolean {
  return value.length <= MAX_URI_LENGTH && URL.canParse(value) && /^https?:$/.test(new URL(value).protocol);
}
