/**
 * The gateway's Prometheus metrics (prom-client), rendered in the text exposition format on `GET /metrics`.
 * What exists is declared in ./metric-table.ts; this file turns the table into prom-client objects.
 *
 * Each {@link Metrics} has its own registry for the gateway's series, so several gateways in one process (the
 * integration tests, the benchmarks) never add to each other's counters. The process metrics (CPU, memory, event
 * loop, GC) and the build info describe the process, not a gateway: they live in one registry per process, made on
 * first use, because prom-client's collectors start an event-loop-delay timer and a GC observer that can never be
 * stopped — one set per gateway would pile up in a process that starts many.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../version.ts';
import {
  METRICS,
  type CounterIncrement,
  type CounterLabels,
  type CounterName,
  type GaugeName,
  type HistogramName,
} from './metric-table.ts';

export type { CounterName, GaugeName, HistogramName } from './metric-table.ts';

let processRegistry: Registry | undefined;

/** The process-wide registry: prom-client's default collectors and `devicegate_build_info`. Never the global one. */
function processMetrics(): Registry {
  if (processRegistry !== undefined) return processRegistry;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const info = METRICS.devicegate_build_info;
  new Gauge({
    name: 'devicegate_build_info',
    help: info.help,
    labelNames: info.labels,
    registers: [registry],
  }).set({ version: VERSION, node: process.version }, 1);
  processRegistry = registry;
  return registry;
}

/**
 * One gateway's metrics. Names (and label names) are checked at compile time against ./metric-table.ts; label
 * values must stay low-cardinality. `render()` and `value()` are async because prom-client reads metrics so.
 */
export class Metrics {
  readonly #registry = new Registry();
  readonly #process = processMetrics();
  // Keyed by plain strings: the methods' parameter types already restrict names to the declared ones.
  readonly #counters = new Map<string, Counter>();
  readonly #histograms = new Map<string, Histogram>();

  /** The `Content-Type` of {@link render}'s text. */
  readonly contentType = this.#registry.contentType;

  constructor() {
    const registers = [this.#registry];
    for (const [name, spec] of Object.entries(METRICS)) {
      if (spec.type === 'counter') {
        this.#counters.set(name, new Counter({ name, help: spec.help, labelNames: spec.labels, registers }));
      } else if (spec.type === 'histogram') {
        this.#histograms.set(
          name,
          new Histogram({ name, help: spec.help, buckets: [...spec.buckets], registers }),
        );
      }
    }
  }

  /** Adds `by` (default 1) to the counter's series for `labels`, which must be exactly the declared label names. */
  inc<N extends CounterName>(name: N, ...[labels, by = 1]: CounterIncrement<N>): void {
    this.#declared(this.#counters, name).inc(labels ?? {}, by);
  }

  /** Records one observation, in seconds, in a histogram. */
  observe(name: HistogramName, seconds: number): void {
    this.#declared(this.#histograms, name).observe(seconds);
  }

  /**
   * A gauge read each time metrics are scraped; it is exposed from the first binding on. Binding it again (an
   * embedded broker restarted on the same Metrics) replaces the reader. `help` is the declared one.
   */
  gauge<N extends GaugeName>(name: N, help: (typeof METRICS)[N]['help'], read: () => number): void {
    this.#registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      registers: [this.#registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** Current value of a counter series, 0 when it was never incremented (for tests and benchmarks). */
  async value<N extends CounterName>(name: N, ...[labels]: CounterLabels<N>): Promise<number> {
    const wanted: Record<string, string> = labels ?? {};
    const { values } = await this.#declared(this.#counters, name).get();
    const series = values.find((v) => {
      const keys = Object.keys(v.labels);
      return (
        keys.length === Object.keys(wanted).length && keys.every((k) => String(v.labels[k]) === wanted[k])
      );
    });
    return series?.value ?? 0;
  }

  /** The text exposition: this gateway's series, then the process metrics. */
  async render(): Promise<string> {
    return Registry.merge([this.#registry, this.#process]).metrics();
  }

  #declared<M>(metrics: ReadonlyMap<string, M>, name: string): M {
    const metric = metrics.get(name);
    // unreachable while the name types above hold; kept so a wrong name fails loudly, not silently
    if (metric === undefined) throw new Error(`${name} is not declared in metric-table.ts`);
    return metric;
  }
}
