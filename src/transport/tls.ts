/**
 * The embedded broker's TLS listener: its options (TLS 1.2 or newer; client certificates requested and verified when
 * a CA is configured) and the device identity a verified client certificate carries. The files are read by
 * src/config/tls-files.ts, at start and again on reload.
 */
import type { Duplex } from 'node:stream';
import { TLSSocket, type TlsOptions } from 'node:tls';
import type { TlsMaterial } from '../config/tls-files.ts';

/** A device that has not finished the TLS handshake by then is dropped (aedes' connectTimeout starts after it). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Options of `tls.createServer` and `setSecureContext` for `material`. With a CA, every client must present a
 * certificate it verifies: a client without one, or with another CA's, fails the handshake before any MQTT byte.
 */
export function tlsServerOptions(material: TlsMaterial): TlsOptions {
  const withCa = material.ca !== undefined;
  return {
    cert: material.cert,
    key: material.key,
    ...(withCa && { ca: material.ca }),
    minVersion: 'TLSv1.2',
    requestCert: withCa,
    rejectUnauthorized: withCa,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * The subject CN of the client certificate `conn` presented, when it is a TLS connection whose certificate the
 * configured CA verified and the CN is exactly one string; `undefined` otherwise (plain TCP, WebSocket, no CA).
 */
export function certificateId(conn: Duplex): string | undefined {
  if (!(conn instanceof TLSSocket) || !conn.authorized) return undefined;
  const cn: unknown = conn.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
