/**
 * A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with openssl for tests that need TLS
 * (ECDSA P-256, valid for a day).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

export interface TestCerts {
  ca: string;
  cert: string;
  key: string;
}

const openssl = (args: string[]) => promisify(execFile)('openssl', args);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Writes ca.crt, server.crt and server.key into `dir` and returns their paths. */
export async function makeTestCerts(dir: string): Promise<TestCerts> {
  const f = (name: string) => path.join(dir, name);
  await openssl(
    ['req', '-x509', ...EC, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1'].concat([
      '-subj',
      '/CN=devicegate test CA',
    ]),
  );
  await openssl([
    'req',
    ...EC,
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
    '-subj',
    '/CN=localhost',
  ]);
  await writeFile(f('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await openssl(
    ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key')].concat([
      '-CAcreateserial',
      '-out',
      f('server.crt'),
      '-days',
      '1',
      '-extfile',
      f('server.ext'),
    ]),
  );
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}
