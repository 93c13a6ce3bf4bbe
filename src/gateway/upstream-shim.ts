// TEMPORARY until the upstream re-cut lands: start/ready/close over discover().
import type { Logger } from 'pino';
import type { UpstreamClient as Base } from '../upstream/oauth.ts';

const RETRY_MS = [500, 1000, 2000, 5000, 10_000];

export type UpstreamClient = Base & { start(): void; ready(): Promise<void>; close(): void };

export function withLifecycle(client: Base, log: Logger): UpstreamClient {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  let done: Promise<void> | undefined;
  const run = async () => {
    for (let attempt = 0; !cancelled; attempt++) {
      try {
        await client.discover();
        return;
      } catch (err) {
        const wait = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]!;
        log.warn({ err, retryInMs: wait }, 'upstream discovery failed');
        await new Promise<void>((resolve) => {
          timer = setTimeout(resolve, wait);
        });
      }
    }
  };
  return Object.assign(client, {
    start() {
      done ??= run();
    },
    ready: () => done ?? Promise.resolve(),
    close() {
      cancelled = true;
      clearTimeout(timer);
    },
  });
}
