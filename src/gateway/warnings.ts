/** Dangerous knobs are loud: one warning at start for each demo setting in use (docs/security.md). */
import type { Logger } from 'pino';
import { configWarnings } from '../config/checks.ts';
import type { Config } from '../config/index.ts';

export function warnAboutDemoKnobs(config: Config, log: Logger, demoUpstream: boolean): void {
  if (demoUpstream) {
    log.warn(
      'DEMO MODE: no DEVICEGATE_UPSTREAM_ISSUER; using the built-in demo identity provider. Not for production.',
    );
  }
  if (config.deviceAuth === 'none') {
    log.warn('DEVICEGATE_DEVICE_AUTH=none: any MQTT client can act as any device. Demos only.');
  } else if (config.deviceKey === undefined) {
    log.warn(
      'DEVICEGATE_DEVICE_KEY is unset: using the published demo fleet key. Anyone can derive device passwords.',
    );
  }
  if (config.secret === undefined) {
    log.warn('DEVICEGATE_SECRET is unset: a random secret is used; pending flows do not survive a restart.');
  }
  for (const warning of configWarnings(config)) log.warn(warning);
  const issuer = config.upstream?.issuer;
  if (issuer !== undefined && new URL(issuer).protocol === 'http:') {
    log.warn({ issuer }, 'the upstream is plain http: tokens cross the network unencrypted');
  }
}
