/**
 * examples/c (libmosquitto), compiled with its Makefile into a temporary directory, passes the example devices'
 * suite (device-kit.ts): the embedded broker, a restart resumed with req/status, TLS through Mosquitto.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe } from 'vitest';
import { exampleDeviceSuite } from './device-kit.ts';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/c');

describe('a C libmosquitto device (examples/c)', () => {
  exampleDeviceSuite('c', async (dir) => {
    await promisify(execFile)('make', ['-s', '-C', SOURCE, `OUT=${dir}`]);
    return [path.join(dir, 'devicegate-device')];
  });
});
