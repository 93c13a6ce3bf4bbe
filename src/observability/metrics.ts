/**
 * A small Prometheus registry: counters and one latency summary per name, rendered in the text exposition format on
 * `GET /metrics`. Labels are fixed, low-cardinality values (never device ids, codes or tokens).
 */

type Labels = Record<string, string>;

const HELP: Record<string, string> = {
  devicegate_device_requests_total: 'Device requests by action.',
  devicegate_device_errors_total: 'Error replies sent to devices, by OAuth error code.',
  devicegate_replies_total: 'Replies published to devices, by status.',
  devicegate_flows_started_total: 'Flows created, by upstream mode.',
  devicegate_flows_finished_total: 'Flows that reached a result, by state.',
  devicegate_user_code_collisions_total: 'User codes drawn again because another live flow held them.',
  devicegate_upstream_polls_total: 'Relay-mode token requests to the upstream, by outcome.',
  devicegate_code_entry_failures_total: 'Code entries on the page that matched no live flow.',
  devicegate_mqtt_refused_connects_total: 'MQTT CONNECTs the embedded broker refused, by reason.',
  devicegate_mqtt_denied_total:
    'Device publishes, subscriptions and forwards refused (embedded broker) or dropped (external broker: retained replays), by op and reason.',
  devicegate_mqtt_dropped_connections_total:
    'Connections the embedded broker closed for a bad MQTT frame, by reason.',
  devicegate_refreshes_total: 'Access tokens refreshed for devices (req/refresh).',
  devicegate_code_entry_limited_total: 'Code entries refused because a brute-force limit was reached.',
  devicegate_device_request_seconds: 'Time to handle one device request.',
  devicegate_approval_to_device_seconds: 'Time from the person approving to the device being sent its token.',
};

export class Metrics {
  readonly #counters = new Map<string, Map<string, number>>();
  readonly #summaries = new Map<string, { count: number; sum: number }>();
  readonly #gauges = new Map<string, () => number>();

  inc(name: string, labels: Labels = {}, by = 1): void {
    let series = this.#counters.get(name);
    if (series === undefined) {
      series = new Map();
      this.#counters.set(name, series);
    }
    const key = renderLabels(labels);
    series.set(key, (series.get(key) ?? 0) + by);
  }

  observe(name: string, value: number): void {
    const s = this.#summaries.get(name) ?? { count: 0, sum: 0 };
    s.count += 1;
    s.sum += value;
    this.#summaries.set(name, s);
  }

  /** A gauge read when metrics are scraped. */
  gauge(name: string, help: string, read: () => number): void {
    HELP[name] = help;
    this.#gauges.set(name, read);
  }

  /** Current value of a counter series (for tests and benchmarks). */
  value(name: string, labels: Labels = {}): number {
    return this.#counters.get(name)?.get(renderLabels(labels)) ?? 0;
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, series] of this.#counters) {
      lines.push(`# HELP ${name} ${HELP[name] ?? name}`, `# TYPE ${name} counter`);
      for (const [labels, v] of series) lines.push(`${name}${labels} ${v}`);
    }
    for (const [name, s] of this.#summaries) {
      lines.push(`# HELP ${name} ${HELP[name] ?? name}`, `# TYPE ${name} summary`);
      lines.push(`${name}_sum ${s.sum}`, `${name}_count ${s.count}`);
    }
    for (const [name, read] of this.#gauges) {
      lines.push(`# HELP ${name} ${HELP[name] ?? name}`, `# TYPE ${name} gauge`, `${name} ${read()}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

function renderLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/["\\\n]/g, '_')}"`)
    .join(',')}}`;
}
