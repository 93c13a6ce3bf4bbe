/**
 * Every metric the gateway exposes, declared once: name, help, type and label names. The names form literal unions
 * ({@link CounterName}, {@link HistogramName}, {@link GaugeName}) so a misspelt metric or label is a compile error
 * rather than a series nobody scrapes (prom-client would also throw at run time on an undeclared label).
 * Label values are fixed, low-cardinality words: never device ids, codes or tokens.
 */

interface CounterSpec {
  readonly type: 'counter';
  readonly help: string;
  readonly labels: readonly string[];
}

interface HistogramSpec {
  readonly type: 'histogram';
  readonly help: string;
  /** Upper bounds in seconds; prom-client adds `+Inf`. */
  readonly buckets: readonly number[];
}

/** A value read when `/metrics` is scraped, bound by the component that owns it (`Metrics.gauge`). */
interface GaugeSpec {
  readonly type: 'gauge';
  readonly help: string;
}

/** A constant 1 whose labels describe the running build. */
interface InfoSpec {
  readonly type: 'info';
  readonly help: string;
  readonly labels: readonly string[];
}

type MetricSpec = CounterSpec | HistogramSpec | GaugeSpec | InfoSpec;

export const METRICS = {
  devicegate_device_requests_total: {
    type: 'counter',
    help: 'Device requests by action.',
    labels: ['action'],
  },
  devicegate_device_errors_total: {
    type: 'counter',
    help: 'Error replies sent to devices, by OAuth error code.',
    labels: ['error'],
  },
  devicegate_replies_total: {
    type: 'counter',
    help: 'Replies published to devices, by status.',
    labels: ['status'],
  },
  devicegate_flows_started_total: {
    type: 'counter',
    help: 'Flows created, by upstream mode.',
    labels: ['mode'],
  },
  devicegate_flows_finished_total: {
    type: 'counter',
    help: 'Flows that reached a result, by state.',
    labels: ['state'],
  },
  devicegate_user_code_collisions_total: {
    type: 'counter',
    help: 'User codes drawn again because another live flow held them.',
    labels: [],
  },
  devicegate_upstream_polls_total: {
    type: 'counter',
    help: 'Relay-mode token requests to the upstream, by outcome.',
    labels: ['outcome'],
  },
  devicegate_code_entry_failures_total: {
    type: 'counter',
    help: 'Code entries on the page that matched no live flow.',
    labels: [],
  },
  devicegate_code_entry_limited_total: {
    type: 'counter',
    help: 'Code entries refused because a brute-force limit was reached.',
    labels: [],
  },
  devicegate_approvals_capped_total: {
    type: 'counter',
    help: 'Bridge-mode sign-ins refused because the person reached DEVICEGATE_APPROVALS_PER_PERSON this hour.',
    labels: [],
  },
  devicegate_refreshes_total: {
    type: 'counter',
    help: 'Access tokens refreshed for devices (req/refresh).',
    labels: [],
  },
  devicegate_mqtt_refused_connects_total: {
    type: 'counter',
    help: 'MQTT CONNECTs the embedded broker refused, by reason.',
    labels: ['reason'],
  },
  devicegate_previous_key_connects_total: {
    type: 'counter',
    help: 'Device CONNECTs accepted with a password from DEVICEGATE_DEVICE_KEY_PREVIOUS: a fleet-key rotation is complete once this stops growing.',
    labels: [],
  },
  devicegate_mqtt_denied_total: {
    type: 'counter',
    help: 'Device publishes, subscriptions and forwards refused (embedded broker) or dropped (external broker: retained replays), by op and reason.',
    labels: ['op', 'reason'],
  },
  devicegate_mqtt_dropped_connections_total: {
    type: 'counter',
    help: 'Connections the embedded broker closed for a bad MQTT frame, by reason.',
    labels: ['reason'],
  },
  devicegate_requests_dropped_total: {
    type: 'counter',
    help: "Device requests dropped unanswered, by reason: over the device's share of the request queue or the queue full (external broker), or refused by the throttle again within the window it was answered slow_down in.",
    labels: ['reason'],
  },
  devicegate_mqtt_unacked_dropped_total: {
    type: 'counter',
    help: 'Replies the embedded broker did not store because the persistent session already held its maximum of unacknowledged messages (a connected device is then disconnected).',
    labels: [],
  },
  devicegate_device_request_seconds: {
    type: 'histogram',
    help: 'Time to handle one device request.',
    // Most requests are a store round trip (milliseconds); a relay-mode authorize waits for the upstream (seconds).
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  },
  devicegate_approval_to_device_seconds: {
    type: 'histogram',
    help: 'Time from the person approving to the device being sent its token.',
    // Bridge mode pushes at once (sub-second); relay mode learns of the approval at its next poll (an interval of
    // seconds, longer after slow_down, RFC 8628 §3.5).
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120],
  },
  devicegate_mqtt_clients: {
    type: 'gauge',
    help: 'Devices connected to the embedded broker.',
  },
  devicegate_request_queue_length: {
    type: 'gauge',
    help: 'Device requests waiting for a processing slot.',
  },
  devicegate_build_info: {
    type: 'info',
    help: 'The running build: devicegate version and Node.js version. Always 1.',
    labels: ['version', 'node'],
  },
} as const satisfies Record<string, MetricSpec>;

type Table = typeof METRICS;
type NamesOf<T extends MetricSpec['type']> = {
  [N in keyof Table]: Table[N]['type'] extends T ? N : never;
}[keyof Table];

export type CounterName = NamesOf<'counter'>;
export type HistogramName = NamesOf<'histogram'>;
export type GaugeName = NamesOf<'gauge'>;

/** The label names a counter was declared with. */
export type CounterLabel<N extends CounterName> = Table[N]['labels'][number];

/**
 * The label set a counter takes: exactly its declared labels, or none (optional) for a counter without labels.
 * `[...] extends [never]` keeps the conditional from distributing over the union of label names.
 */
export type CounterLabels<N extends CounterName> = [CounterLabel<N>] extends [never]
  ? [labels?: Record<string, never>]
  : [labels: Record<CounterLabel<N>, string>];

/** {@link CounterLabels} followed by the amount to add. */
export type CounterIncrement<N extends CounterName> = [CounterLabel<N>] extends [never]
  ? [labels?: Record<string, never>, by?: number]
  : [labels: Record<CounterLabel<N>, string>, by?: number];
