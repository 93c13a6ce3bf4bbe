/**
 * `npm run fuzz -- [flags]`: seeded fuzz campaigns against one gateway process (docs/soak.md). Prints one final line
 * with the seed and the counts; exits 1 when the judge fails, 2 on bad flags.
 */
import { parseArgs } from 'node:util';
import { runMain, whole } from '../lib/cli.ts';
import { fuzzFinalLine, runFuzz } from './run.ts';

const USAGE = 'npm run fuzz -- [--seed N] [--json 100000] [--packets 10000] [--devices 8] [--slowloris 20]';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    json: { type: 'string', default: '100000' },
    packets: { type: 'string', default: '10000' },
    devices: { type: 'string', default: '8' },
    slowloris: { type: 'string', default: '20' },
    help: { type: 'boolean', default: false },
  },
});

async function main(): Promise<number> {
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const result = await runFuzz({
    seed: whole('seed', values.seed),
    json: whole('json', values.json),
    packets: whole('packets', values.packets),
    devices: Math.max(1, whole('devices', values.devices)),
    slowloris: whole('slowloris', values.slowloris),
    say: (line) => console.log(line),
  });
  console.log(fuzzFinalLine(result));
  return result.pass ? 0 : 1;
}

runMain(main, USAGE);
