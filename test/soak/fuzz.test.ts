/**
 * A short seeded campaign of tools/fuzz (`npm run fuzz`): mutated JSON on the devices' own request topics and
 * malformed MQTT over raw TCP against one gateway process with its embedded broker. The process must stay up and
 * healthy, a control device must keep getting its pending reply, no reply may reach another device, and heap and
 * descriptors must come back to the baseline.
 */
import { describe, expect, it } from 'vitest';
import { fuzzFinalLine, runFuzz } from '../../tools/fuzz/run.ts';

describe('fuzz (short campaign)', () => {
  it('survives mutated payloads and malformed packets: no crash, no leak, no cross-device reply', async () => {
    const result = await runFuzz({ seed: 1313, json: 3000, packets: 1000, devices: 4, slowloris: 3 });
    console.log(fuzzFinalLine(result));
    expect(result.packets).toBeGreaterThanOrEqual(1000);
    expect(result.replies).toBeGreaterThan(1000);
    expect(result.controlRuns).toBeGreaterThan(1);
    expect({ crashed: result.crashed, leaks: result.leaks, cross: result.crossDevice }).toEqual({
      crashed: false,
      leaks: [],
      cross: 0,
    });
    expect(result.controlOk).toBe(result.controlRuns);
    expect(result.pass).toBe(true);
  }, 400_000);
});
