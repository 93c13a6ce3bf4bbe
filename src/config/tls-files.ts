/**
 * The embedded broker's TLS files (`DEVICEGATE_MQTT_TLS_*`): read and checked as one secure context, at config load
 * (so a wrong path or a key that does not match its certificate fails the start, naming the variable) and again by
 * the broker at start and on SIGHUP.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile?: string;
}

/** The PEM contents of the files, as `tls.createServer` / `setSecureContext` take them. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

/**
 * Reads the files and proves they make a secure context (the key matches the certificate, the PEM parses). Throws
 * an `Error` whose message names the variable at fault and never contains the key.
 */
export function readTlsFiles(files: TlsFiles): TlsMaterial {
  const material: TlsMaterial = {
    cert: readPem('DEVICEGATE_MQTT_TLS_CERT', files.certFile),
    key: readPem('DEVICEGATE_MQTT_TLS_KEY', files.keyFile),
    ...(files.caFile !== undefined && { ca: readPem('DEVICEGATE_MQTT_TLS_CA', files.caFile) }),
  };
  try {
    // a CA file without a certificate would be taken as no CA at all, and then refuse every device
    if (material.ca !== undefined) new X509Certificate(material.ca);
    createSecureContext(material);
  } catch (err) {
    // OpenSSL's reason ("key values mismatch", "no start line") names no secret
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`DEVICEGATE_MQTT_TLS_CERT/_KEY/_CA: not a usable certificate and key (${reason})`);
  }
  return material;
}

function readPem(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : 'unreadable';
    throw new Error(`${variable}: cannot read ${file} (${code})`);
  }
}
