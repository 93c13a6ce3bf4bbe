/**
 * Reading V8 CPU profiles (the `.cpuprofile` format that `node --cpu-prof` and the inspector's `Profiler.stop`
 * produce): self time per frame and per area (a package under node_modules, a file under src/, Node's core, the
 * garbage collector), as shares of the time the process was not idle.
 */

export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileShare {
  name: string;
  selfMs: number;
  /** share of the busy (non-idle) time, percent */
  pct: number;
}

export interface ProfileSummary {
  /** wall time covered by the profile */
  totalMs: number;
  /** time the event loop was idle, percent of totalMs */
  idlePct: number;
  /** frames with the most self time */
  top: ProfileShare[];
  /** self time by area: `npm:<package>`, `src/<file>`, `node:core`, `(garbage collector)`, `(program)`, `(native)` */
  byArea: ProfileShare[];
}

/** Self time per frame and per area. `topN` frames are kept (default 20). */
export function summarizeProfile(profile: CpuProfile, topN = 20): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i + 1] is the time from sample i to the next one: the time sample i stands for.
    const us = deltas[i + 1] ?? 0;
    self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + us);
  }
  const frames = new Map<string, number>();
  const areas = new Map<string, number>();
  let idleUs = 0;
  let totalUs = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (node === undefined) continue;
    totalUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const area = areaOf(functionName, url);
    const name =
      url === ''
        ? functionName || '(anonymous)'
        : `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`;
    frames.set(name, (frames.get(name) ?? 0) + us);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const rank = (m: Map<string, number>, n: number): ProfileShare[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, selfMs: round(us / 1000), pct: round((100 * us) / busyUs) }));
  return {
    totalMs: round(totalUs / 1000),
    idlePct: round((100 * idleUs) / Math.max(1, totalUs)),
    top: rank(frames, topN),
    byArea: rank(areas, 15),
  };
}

function areaOf(functionName: string, url: string): string {
  if (functionName === '(garbage collector)' || functionName === '(program)') return functionName;
  if (url === '') return '(native)';
  if (url.startsWith('node:')) return 'node:core';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return `npm:${parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  for (const dir of ['/src/', '/bench/', '/firmware-sim/']) {
    const i = url.lastIndexOf(dir);
    if (i >= 0) return url.slice(i + 1);
  }
  return url;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  for (const dir of ['/src/', '/bench/', '/firmware-sim/']) {
    const i = url.lastIndexOf(dir);
    if (i >= 0) return url.slice(i + 1);
  }
  return url;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
