/**
 * `devicegate credentials <deviceId>...`: prints each device's MQTT username and password (README.md, "Device
 * credentials"), derived from DEVICEGATE_DEVICE_KEY, for provisioning devices and for Mosquitto password files.
 */
import { DEMO_DEVICE_KEY, devicePassword } from '../core/crypto.ts';
import { ID_PATTERN } from '../core/protocol.ts';

export function credentialsCommand(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): { out: string; code: number } {
  const key = env.DEVICEGATE_DEVICE_KEY;
  const ids = args.filter((a) => a !== '--mosquitto');
  const mosquitto = args.includes('--mosquitto');
  if (ids.length === 0) {
    return { out: 'usage: devicegate credentials [--mosquitto] <deviceId>...\n', code: 2 };
  }
  const bad = ids.filter((id) => !ID_PATTERN.test(id));
  if (bad.length > 0)
    return { out: `invalid device id(s): ${bad.join(', ')} (^[A-Za-z0-9._-]{1,64}$)\n`, code: 2 };
  const lines: string[] = [];
  if (key === undefined) lines.push('# DEVICEGATE_DEVICE_KEY is unset: these are DEMO credentials');
  if (env.DEVICEGATE_DEVICE_KEY_PREVIOUS !== undefined) {
    lines.push(
      '# a fleet-key rotation is under way: these passwords derive from the new DEVICEGATE_DEVICE_KEY',
    );
  }
  for (const id of ids) {
    const pw = devicePassword(key ?? DEMO_DEVICE_KEY, id);
    // --mosquitto: `username:password` lines for `mosquitto_passwd -U` (which hashes them in place)
    lines.push(mosquitto ? `${id}:${pw}` : `${id}\tusername=${id}\tclient_id=${id}\tpassword=${pw}`);
  }
  return { out: `${lines.join('\n')}\n`, code: 0 };
}
