/**
 * Fleet mode (`npm run sim -- --fleet 200`): connect the fleet, run the closed request loop, print the summary (one
 * line for a person, or one JSON line with `--json`).
 */
import { EXIT, type FleetArgs } from './args.ts';
import type { CliIo } from './cli.ts';
import { SimError } from './connection.ts';
import {
  type Fleet,
  type LatencySummary,
  type RoundTripResult,
  connectFleet,
  runRoundTrips,
  summarize,
} from './fleet.ts';
import { keyHint, whereFrom } from './render.ts';

type Say = (line: string) => void;

function printSummary(
  args: FleetArgs,
  io: CliIo,
  say: Say,
  run: { fleet: Fleet; connect: LatencySummary; r: RoundTripResult },
): void {
  const { fleet, connect, r } = run;
  const l = r.latencyMs;
  if (args.json) {
    io.stdout.write(
      `${JSON.stringify({
        devices: args.devices,
        connectMs: fleet.connectMs,
        connectRate: fleet.connectRate,
        connectLatencyMs: connect,
        completed: r.completed,
        errors: r.errors,
        failed: r.failed,
        perSecond: r.perSecond,
        measuredMs: r.measuredMs,
        latencyMs: l,
        replies: Object.fromEntries(r.replies),
        errorCodes: Object.fromEntries(r.errorCodes),
      })}\n`,
    );
    return;
  }
  const replies = [...r.replies].map(([s, n]) => `${s} ${n}`).join(', ') || 'none';
  const codes = [...r.errorCodes].map(([s, n]) => `${s} ${n}`).join(', ');
  say(
    `round trips: ${r.completed} in ${(r.measuredMs / 1000).toFixed(1)} s = ${r.perSecond.toFixed(0)}/s; ` +
      `latency p50 ${l.p50.toFixed(2)} ms, p90 ${l.p90.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, ` +
      `max ${l.max.toFixed(2)} ms`,
  );
  say(`replies: ${replies}; errors ${r.errors} (no reply: ${r.failed}${codes === '' ? '' : `; ${codes}`})`);
}

/** Runs the fleet and resolves with the exit code: 0 when every counted round trip got a non-error reply. */
export async function runFleet(args: FleetArgs, io: CliIo): Promise<number> {
  const say: Say = (line) => void (args.json ? io.stderr : io.stdout).write(`${line}\n`);
  const { conn } = args;
  say(`connecting ${args.devices} devices to ${conn.url}${whereFrom(conn)} (${args.concurrency} at a time)…`);
  let fleet;
  try {
    fleet = await connectFleet({
      url: conn.url,
      fleetKey: conn.fleetKey,
      tls: conn.tls,
      topicPrefix: conn.topicPrefix,
      devices: args.devices,
      connectConcurrency: args.concurrency,
      ...(args.idPrefix !== undefined && { idPrefix: args.idPrefix }),
    });
  } catch (err) {
    if (!(err instanceof SimError)) throw err;
    say(`Could not connect the fleet: ${err.message}`);
    if (err.code.startsWith('refused')) say(`  (used ${keyHint(conn)})`);
    return EXIT.failed;
  }
  try {
    const connect = summarize(fleet.connectLatencies);
    say(
      `connected in ${(fleet.connectMs / 1000).toFixed(2)} s: ${fleet.connectRate.toFixed(0)} connects/s, ` +
        `CONNACK p50 ${connect.p50.toFixed(1)} ms, p99 ${connect.p99.toFixed(1)} ms`,
    );
    const limit =
      args.requestsPerDevice === undefined ? '' : `, at most ${args.requestsPerDevice} per device`;
    say(`running for ${args.durationSeconds} s (warm-up ${args.warmupSeconds} s${limit})…`);
    const r = await runRoundTrips(fleet, {
      durationMs: args.durationSeconds * 1000,
      warmupMs: args.warmupSeconds * 1000,
      cancel: args.cancel,
      ...(args.requestsPerDevice !== undefined && { requestsPerDevice: args.requestsPerDevice }),
      ...(args.scope !== undefined && { scope: args.scope }),
      ...(io.signal !== undefined && { signal: io.signal }),
    });
    printSummary(args, io, say, { fleet, connect, r });
    if (io.signal?.aborted === true) return EXIT.interrupted;
    return r.errors > 0 || r.completed === 0 ? EXIT.failed : EXIT.ok;
  } finally {
    await fleet.close();
  }
}
