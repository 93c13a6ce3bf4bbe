/**
 * `npm run soak -- [flags]`: the chaos soak (docs/soak.md). Prints chaos events as they happen and one final line;
 * exits 1 when the judge fails, 2 on bad flags.
 */
import { parseArgs } from 'node:util';
import { runMain, whole } from '../lib/cli.ts';
import { parseRange } from '../lib/rng.ts';
import { finalLine, runSoak } from './run.ts';

const USAGE = `npm run soak -- [--seed N] [--instances 3] [--devices 150] [--duration 480] [--latency 50-250]
  [--approve-delay 500-3000] [--think 1000-5000] [--kill-every 20-40 | --kill-every 0] [--redis-restarts 2]
  [--mosquitto-restarts 1] [--stop 10] [--down 2] [--lease-ms 3000]
Ranges are min-max (ms for latency, approve-delay and think; seconds for kill-every, stop, down and duration).`;

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    instances: { type: 'string', default: '3' },
    devices: { type: 'string', default: '150' },
    duration: { type: 'string', default: '480' },
    latency: { type: 'string', default: '50-250' },
    'approve-delay': { type: 'string', default: '500-3000' },
    think: { type: 'string', default: '1000-5000' },
    'kill-every': { type: 'string', default: '20-40' },
    'redis-restarts': { type: 'string', default: '2' },
    'mosquitto-restarts': { type: 'string', default: '1' },
    stop: { type: 'string', default: '10' },
    down: { type: 'string', default: '2' },
    'lease-ms': { type: 'string', default: '3000' },
    help: { type: 'boolean', default: false },
  },
});

async function main(): Promise<number> {
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const killEvery = parseRange(values['kill-every'], '--kill-every');
  const result = await runSoak({
    seed: whole('seed', values.seed),
    instances: Math.max(1, whole('instances', values.instances)),
    devices: Math.max(1, whole('devices', values.devices)),
    durationS: whole('duration', values.duration),
    latencyMs: parseRange(values.latency, '--latency'),
    approveDelayMs: parseRange(values['approve-delay'], '--approve-delay'),
    thinkMs: parseRange(values.think, '--think'),
    killEveryS: killEvery.max === 0 ? undefined : killEvery,
    redisRestarts: whole('redis-restarts', values['redis-restarts']),
    mosquittoRestarts: whole('mosquitto-restarts', values['mosquitto-restarts']),
    stopS: whole('stop', values.stop),
    downS: whole('down', values.down),
    leaseMs: whole('lease-ms', values['lease-ms']),
    say: (line) => console.log(line),
  });
  console.log(finalLine(result));
  return result.pass ? 0 : 1;
}

runMain(main, USAGE);
