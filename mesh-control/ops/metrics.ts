// The control service's Prometheus metrics. Names are stable API (documented in README.md).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface ControlMetrics {
  registry: Registry;
  connectedAgents: Gauge;
  convergence: Histogram;
  initialSync: Histogram;
  versionsBehind: Gauge<'node'>;
  nacks: Counter<'node'>;
  pushes: Counter<'type'>;
  storeLatency: Histogram<'verb'>;
}

export function createControlMetrics(): ControlMetrics {
  const registry = new Registry();
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    registry,
    connectedAgents: new Gauge({ name: 'weft_control_connected_agents', help: 'Node agents with an open sync stream', registers: [registry] }),
    convergence: new Histogram({
      name: 'weft_control_push_convergence_seconds',
      help: 'Delay from a store change to the ACK of the update carrying it, per agent',
      buckets,
      registers: [registry],
    }),
    initialSync: new Histogram({
      name: 'weft_control_initial_sync_seconds',
      help: 'Delay from a stream opening to the ACK of its first full snapshot',
      buckets,
      registers: [registry],
    }),
    versionsBehind: new Gauge({
      name: 'weft_control_agent_versions_behind',
      help: 'Store revisions between the newest pushed version and what the agent last ACKed',
      labelNames: ['node'],
      registers: [registry],
    }),
    nacks: new Counter({ name: 'weft_control_nacks_total', help: 'Updates an agent rejected (NACK)', labelNames: ['node'], registers: [registry] }),
    pushes: new Counter({ name: 'weft_control_pushes_total', help: 'Updates sent to agents, by type (full, delta)', labelNames: ['type'], registers: [registry] }),
    storeLatency: new Histogram({
      name: 'weft_control_store_request_seconds',
      help: 'Latency of store writes, by verb',
      labelNames: ['verb'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}
