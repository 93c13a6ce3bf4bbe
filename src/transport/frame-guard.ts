/**
 * The embedded broker's frame guard: a connection whose MQTT packet announces more than the cap is closed before the
 * packet's bytes are buffered or parsed (docs/security.md).
 *
 * Why it wraps `socket.read` instead of sitting in front of aedes as a Transform stream: aedes' client pulls from the
 * socket it is given with `read()` in a `'readable'` loop, and uses that same object for its writes, `drain`
 * (`drainTimeout`), `destroy` and `destroyed`, and devicegate reads `remoteAddress` from it. A Transform would need a
 * Duplex around it that forwards all of these, a second buffer per connection, and one more stream hop per chunk on
 * every device's traffic — for the same guarantee. Wrapping `read` sees each chunk as aedes takes it, before aedes'
 * parser does, at the cost of one function call per read.
 */
import type { Duplex } from 'node:stream';

/** Why a connection was closed by the guard (the `reason` label of `devicegate_mqtt_dropped_connections_total`). */
export type FrameProblem = 'packet_too_large' | 'malformed_length';

/**
 * A decoder of MQTT 3.1.1 framing (§2.2) that only counts: each packet's fixed header and Remaining Length are
 * decoded, bodies are skipped by count without copying. Each call answers the first problem in the bytes seen so far.
 */
function frameChecker(maxBytes: number): (chunk: Buffer) => FrameProblem | undefined {
  let state: 'header' | 'length' | 'body' = 'header';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let remaining = 0;

  return (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (state === 'header') {
        i += 1;
        state = 'length';
        length = 0;
        multiplier = 1;
        lengthBytes = 0;
      } else if (state === 'length') {
        const byte = chunk[i]!;
        i += 1;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        lengthBytes += 1;
        if (length > maxBytes) return 'packet_too_large';
        if ((byte & 0x80) !== 0) {
          // the Remaining Length has at most four bytes (§2.2.3)
          if (lengthBytes === 4) return 'malformed_length';
        } else {
          remaining = length;
          state = remaining > 0 ? 'body' : 'header';
        }
      } else {
        const take = Math.min(remaining, chunk.length - i);
        i += take;
        remaining -= take;
        if (remaining === 0) state = 'header';
      }
    }
    return undefined;
  };
}

/**
 * Watches everything read from `socket`: a Remaining Length above `maxBytes`, or one longer than four bytes, destroys
 * the socket (after calling `onProblem` once) before the reader sees those bytes, and every later read returns
 * `null`. Call it before handing the socket to aedes.
 */
export function guardFrames(
  socket: Duplex,
  maxBytes: number,
  onProblem: (problem: FrameProblem) => void,
): void {
  const check = frameChecker(maxBytes);
  const read = socket.read.bind(socket);
  let refused = false;
  socket.read = (size?: number): unknown => {
    if (refused) return null;
    const chunk: unknown = read(size);
    if (!Buffer.isBuffer(chunk)) return chunk;
    const problem = check(chunk);
    if (problem === undefined) return chunk;
    refused = true;
    onProblem(problem);
    socket.destroy();
    return null;
  };
}
