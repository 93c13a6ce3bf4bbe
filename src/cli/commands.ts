/**
 * The command line (`devicegate …`). Every subcommand is a function from its arguments and the environment to the text
 * it prints and its exit code, so tests run them without a process; `src/main.ts` only dispatches.
 */
import { configWarnings } from '../config/checks.ts';
import { ConfigError, loadConfig } from '../config/index.ts';
import { redactUrl } from '../observability/redact.ts';
import { VERSION } from '../version.ts';
import type { DestinationStream } from 'pino';
import { credentialsCommand } from './credentials.ts';
import { devicesCommand } from './devices.ts';

export interface CommandResult {
  out: string;
  /** 0 success, 2 usage or configuration error */
  code: number;
}

export const USAGE = `usage: devicegate [command]

  (no command)                 run the gateway, configured by DEVICEGATE_* variables (see the README)
  config check                 validate the environment's configuration, print every problem, exit 2 on any
  credentials [--mosquitto] <deviceId>...
                               print device MQTT credentials derived from DEVICEGATE_DEVICE_KEY
  devices revoke|restore <deviceId>...
                               revoke a device on every instance (or let it back); needs DEVICEGATE_REDIS_URL
  devices list-revoked         print the revoked devices
  --version                    print the version
  --help                       print this help
`;

/**
 * Runs any subcommand, including those that reach the store (`devices`); `undefined` when `args` asks to run the
 * gateway. Audit lines of store changes go to `logTo`.
 */
export async function runCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  logTo?: DestinationStream,
): Promise<CommandResult | undefined> {
  return args[0] === 'devices' ? devicesCommand(args.slice(1), env, logTo) : runCommand(args, env);
}

/** Runs a subcommand that needs no I/O; `undefined` when `args` asks to run the gateway. */
export function runCommand(args: readonly string[], env: NodeJS.ProcessEnv): CommandResult | undefined {
  const [command, ...rest] = args;
  switch (command) {
    case undefined:
      return undefined;
    case '--help':
    case '-h':
    case 'help':
      return { out: USAGE, code: 0 };
    case '--version':
    case '-v':
      return { out: `devicegate ${VERSION}\n`, code: 0 };
    case 'credentials':
      return credentialsCommand(rest, env);
    case 'config':
      return rest.length === 1 && rest[0] === 'check' ? configCheck(env) : usage();
    default:
      return usage();
  }
}

function usage(): CommandResult {
  return { out: USAGE, code: 2 };
}

/** `devicegate config check`: every problem at once, or a one-screen summary of what the gateway would run. */
function configCheck(env: NodeJS.ProcessEnv): CommandResult {
  try {
    const c = loadConfig(env);
    const lines = [
      'configuration OK',
      `  mode      ${c.mode === 'device' ? 'relay (RFC 8628 upstream)' : 'bridge (authorization code + PKCE)'}`,
      `  upstream  ${c.upstream?.issuer ?? 'the built-in demo identity provider'}`,
      `  broker    ${c.mqtt.kind === 'embedded' ? `embedded, ${c.mqtt.host}:${c.mqtt.port}` : `external, ${redactUrl(c.mqtt.url)}`}`,
      `  store     ${c.redis === undefined ? 'memory (one instance)' : `redis, ${redactUrl(c.redis.url)}`}`,
      `  web       ${c.http.host}:${c.http.port}${c.publicUrl === undefined ? '' : `, public URL ${c.publicUrl}`}`,
    ];
    if (c.admin !== undefined) {
      lines.push(
        `  admin     ${c.admin.host}:${c.admin.port}${c.admin.token === undefined ? ', no admin API' : ''}`,
      );
    }
    if (c.production) lines.push('  NODE_ENV  production');
    for (const warning of configWarnings(c)) lines.push(`warning: ${warning}`);
    return { out: `${lines.join('\n')}\n`, code: 0 };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { out: `${err.message}\n`, code: 2 };
  }
}
