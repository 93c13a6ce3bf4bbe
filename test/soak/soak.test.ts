/**
 * The chaos soak of tools/soak (`npm run soak`) in a short version: two instances in relay mode on one Redis (AOF)
 * and one Mosquitto (persistence on), devices running flows in a loop for a minute while an instance is SIGKILLed
 * and restarted and Redis is restarted. The judge must find nothing lost, doubled, crossed or wrong (a token lost in
 * the kill window is reported, not failed). Mosquitto restarts and SIGSTOP are left out here: the current gateway
 * loses requests to both (issue 13, docs/soak.md), which the full run measures.
 */
import { describe, expect, it } from 'vitest';
import { finalLine, runSoak } from '../../tools/soak/run.ts';

describe('soak (short)', () => {
  it('flows under SIGKILL and a Redis restart: 0 lost, 0 double, 0 cross-device, 0 wrong', async () => {
    const result = await runSoak({
      seed: 4242,
      instances: 2,
      devices: 12,
      durationS: 60,
      latencyMs: { min: 1, max: 5 },
      approveDelayMs: { min: 300, max: 1500 },
      thinkMs: { min: 500, max: 2000 },
      leaseMs: 3000,
      killEveryS: { min: 20, max: 30 },
      redisRestarts: 1,
      mosquittoRestarts: 0,
      stopS: 0,
      downS: 2,
    });
    console.log(finalLine(result));
    expect(result.flows).toBeGreaterThan(50);
    expect(result.kills).toBeGreaterThan(0);
    expect({
      lost: result.lost,
      double: result.double,
      cross: result.crossDevice,
      wrong: result.wrong,
    }).toEqual({
      lost: 0,
      double: 0,
      cross: 0,
      wrong: 0,
    });
  }, 480_000);
});
