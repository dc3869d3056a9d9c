// The agent's Prometheus metrics, named after kube-proxy's (`kubeproxy_` → `weft_proxy_`) so
// dashboards carry over. One registry per agent: no module-level singletons.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';

export function createProxyMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const buckets = exponentialBuckets(0.001, 2, 15);
  const registers = [registry];
  return {
    registry,
    syncDuration: new Histogram({ name: 'weft_proxy_sync_proxy_rules_duration_seconds', help: 'Duration of a sync of the proxy rules (render + apply)', buckets, registers }),
    fullSyncDuration: new Histogram({ name: 'weft_proxy_sync_full_proxy_rules_duration_seconds', help: 'Duration of full syncs of the proxy rules', buckets, registers }),
    partialSyncDuration: new Histogram({ name: 'weft_proxy_sync_partial_proxy_rules_duration_seconds', help: 'Duration of partial syncs of the proxy rules', buckets, registers }),
    lastSync: new Gauge({ name: 'weft_proxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers }),
    lastQueued: new Gauge({ name: 'weft_proxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers }),
    syncs: new Counter({ name: 'weft_proxy_sync_proxy_rules_total', help: 'Successful syncs of the proxy rules, by type (full or partial)', labelNames: ['type'], registers }),
    rulesWritten: new Gauge({ name: 'weft_proxy_sync_proxy_rules_last', help: 'Rules, chains and elements written by the last sync, by table', labelNames: ['table'], registers }),
    servicePorts: new Gauge({ name: 'weft_proxy_sync_proxy_rules_service_ports', help: 'Service ports programmed by the last sync', registers }),
    iptablesRestoreFailures: new Counter({ name: 'weft_proxy_sync_proxy_rules_iptables_restore_failures_total', help: 'Failed full iptables-restore runs', registers }),
    iptablesPartialRestoreFailures: new Counter({ name: 'weft_proxy_sync_proxy_rules_iptables_partial_restore_failures_total', help: 'Failed partial iptables-restore runs (the next sync is full)', registers }),
    nftablesSyncFailures: new Counter({ name: 'weft_proxy_sync_proxy_rules_nftables_sync_failures_total', help: 'Failed nft transactions (the next sync is full)', registers }),
    conntrackDeletions: new Counter({ name: 'weft_proxy_conntrack_udp_deletions_total', help: 'conntrack -D runs for stale UDP flows', registers }),
    healthz: new Counter({ name: 'weft_proxy_healthz_total', help: '/healthz answers by code', labelNames: ['code'], registers }),
    livez: new Counter({ name: 'weft_proxy_livez_total', help: '/livez answers by code', labelNames: ['code'], registers }),
  };
}

export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;
