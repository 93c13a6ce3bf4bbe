/**
 * examples/python/devicegate_device.py on paho-mqtt (Debian's python3-paho-mqtt, run with the system Python), a
 * client library nobody on this project wrote, passes the example devices' suite (device-kit.ts): the embedded
 * broker, a restart resumed with req/status, TLS through Mosquitto.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { exampleDeviceSuite } from './device-kit.ts';

const SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../examples/python/devicegate_device.py',
);
/** Debian's python3-paho-mqtt is installed for the system interpreter, whatever else is first on PATH. */
const PYTHON = '/usr/bin/python3';

describe('a Python paho-mqtt device (examples/python)', () => {
  exampleDeviceSuite('python', () => Promise.resolve([PYTHON, SCRIPT]));
});
