// The push side of the node stream (xDS semantics, one resource type "cluster view"):
//   - every update carries a version (the store revision it reflects) and a nonce;
//   - the agent ACKs (version + nonce) or NACKs (last good version + nonce + error);
//   - at most one update per agent is in flight: changes that arrive meanwhile are coalesced and
//     sent as one delta from the agent's ACKed version after its ACK;
//   - a NACKed version is never re-sent: only a newer version is;
//   - store changes are batched over `debounceMs` into one publish (the first change after a quiet
//     window is published at once); a delta from version a is the
//     union of the keys changed after a (from the store's change history, so it survives a
//     restart), each sent as it is now (upsert or removal).
// Cost per agent is kept to a few fields: what every agent at the same base receives (a snapshot,
// or the delta from one version) is encoded (and, when large, compressed) once into a protobuf body
// shared by all of them; an
// update is then head (version, nonce) + that body + the node's own pods (wire.ts). Large updates
// (snapshots) are in flight a few at a time (until ACKed), so 1,000 agents connecting at once do
// not queue 1,000 copies in the HTTP/2 and TLS buffers.
import { objectKey } from '../model/objects.ts';
import type { ObjectStore, WatchEvent } from '../store/types.ts';
import type { ClusterObject, Namespace, NetworkPolicy, Pod } from '../model/types.ts';
import type { ControlMetrics } from '../ops/metrics.ts';
import { buildPeerIndex, changesPodScope, peerProjection, SHARED_KINDS, type PeerIndex } from './scope.ts';
import { headFields, itemsFields, kindFields, removedField, resourceField, storeIdField } from './wire.ts';
import type { NodeStream } from './node-stream.ts';

export interface NodeRequest {
  node: string;
  resume_version: string;
  version: string;
  response_nonce: string;
  error_detail: string;
  /** First message: the store the resume_version belongs to (absent from agents that predate it). */
  store_id?: string;
}

export interface WireResource {
  kind: string;
  key: string;
  json: Buffer;
}

/** An update as the agent decodes it. */
export interface NodeUpdate {
  version: string;
  nonce: string;
  full: boolean;
  base_version: string;
  resources: WireResource[];
  removed: string[];
  /** More resources and removals, DEFLATE-compressed; empty when the update is small. */
  packed: Buffer;
  /** The store the version belongs to (ObjectStore.id()). */
  store_id: string;
}

export interface NodeSyncStatus {
  node: string;
  connected: boolean;
  acked_version: string;
  last_ack_unix_ms: number;
  sent_version: string;
  nacked_version: string;
  last_error: string;
  versions_behind: number;
  lag_ms: number;
}

export interface NodeSyncConfig {
  /** Batching window for store changes (default 10 ms; istiod's is 100 ms). */
  debounceMs?: number;
  /** Store changes kept for deltas; an agent further behind gets a full snapshot (default 10,000). */
  historySize?: number;
  /** Large updates (snapshots) in flight at once, until ACKed (default 4); others wait their turn. */
  largeWrites?: number;
  log?: (message: string) => void;
}

/** The stream of one agent (push/node-stream.ts). */
export type NodeSyncCall = NodeStream;

interface Change {
  revision: number;
  key: string;
  /** A policy or namespace changed: every pod's visibility is evaluated again. */
  podScope: boolean;
  at: number;
}

/** What every agent at one base receives, encoded once. */
interface SharedUpdate {
  /** The version it brings an agent to. */
  version: number;
  body: Buffer;
  /** Pods in full, by node: only that node receives them. */
  own: Map<string, Buffer[]>;
  full: boolean;
  /** When the oldest change it carries happened (for the convergence histogram). */
  changeAt?: number;
}

interface Agent {
  node: string;
  call?: NodeSyncCall;
  acked?: number;
  lastAckAt: number;
  inflight?: { version: number; nonce: string; sentAt: number; changeAt?: number; full: boolean };
  /** Set while a large update holds a write slot: until its ACK/NACK or the end of the stream. */
  release?: () => void;
  /** No update ACKed yet on the current stream: its first ACK ends the initial sync. */
  syncing: boolean;
  nacked?: number;
  lastError: string;
  connectedAt: number;
}

/** Updates at least this large are snapshot-sized: they take a write slot. */
const LARGE_UPDATE_BYTES = 256 * 1024;
/** Shared updates kept per version: agents at a few distinct bases at once. */
const SHARED_CACHE = 8;
/**
 * A snapshot serves new agents this long, even when versions were published since: they catch up
 * with a delta after their ACK. Under steady churn the (large) snapshot is rebuilt and compressed
 * at most this often instead of at every publish.
 */
const SNAPSHOT_REUSE_MS = 2000;

export interface NodeSync {
  start(): void;
  stop(): void;
  /** Serves one stream; `allowed(node)` says whether the caller may stream that node's view. */
  serve(call: NodeSyncCall, allowed: (node: string) => string | undefined): void;
  status(): NodeSyncStatus[];
  version(): number;
}

export function createNodeSync(config: NodeSyncConfig, deps: { store: ObjectStore; metrics: ControlMetrics }): NodeSync {
  const { store, metrics } = deps;
  const debounceMs = config.debounceMs ?? 10;
  const historySize = config.historySize ?? 10_000;
  const largeWrites = config.largeWrites ?? 4;
  const log = config.log ?? (() => {});
  const agents = new Map<string, Agent>();
  // Published changes, oldest first; deltas reach back to `floor`, older agents get a snapshot.
  let history: Change[] = [];
  let pending: Change[] = [];
  let version = 0;
  let floor = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastPublishAt = 0;
  let cancelWatch: (() => void) | undefined;
  let peers: PeerIndex | undefined;
  let nonces = 0;
  let pushedFull = 0;
  let pushedDelta = 0;
  // Deltas by base version, for the current version only (cleared at each publish).
  let shared = new Map<string, SharedUpdate>();
  let lastSnapshot: { update: SharedUpdate; builtAt: number } | undefined;
  let storeField: Buffer = Buffer.alloc(0);
  let largeInFlight = 0;
  const waiting = new Set<Agent>();
  // Each stored object is encoded once, whatever the number of agents (objects are immutable).
  const encoded = new WeakMap<ClusterObject, Buffer>();

  const encode = (o: ClusterObject): Buffer => {
    let b = encoded.get(o);
    if (!b) encoded.set(o, (b = resourceField(o.kind, objectKey(o), Buffer.from(JSON.stringify(o)))));
    return b;
  };
  const encodePeer = (p: Pod): Buffer => resourceField('Pod', objectKey(p), Buffer.from(JSON.stringify(peerProjection(p))));
  const peerIndex = (): PeerIndex =>
    (peers ??= buildPeerIndex(store.list('NetworkPolicy') as NetworkPolicy[], store.list('Namespace') as Namespace[]));

  /** A pod: its projection goes to every node when a policy can select it, its full self to its node. */
  function addPod(p: Pod, body: Buffer[], own: Map<string, Buffer[]>, removeIfHidden: boolean): void {
    if (peerIndex().peer(p)) body.push(encodePeer(p));
    else if (removeIfHidden) body.push(removedField(objectKey(p)));
    const n = p.spec.nodeName;
    if (!n) return;
    let list = own.get(n);
    if (!list) own.set(n, (list = []));
    list.push(encode(p));
  }

  function snapshot(): SharedUpdate {
    const items: Buffer[] = [];
    const own = new Map<string, Buffer[]>();
    for (const kind of ['Namespace', 'Node', 'Service', 'EndpointSlice', 'NetworkPolicy'] as const) for (const o of store.list(kind)) items.push(encode(o));
    for (const p of store.list('Pod') as Pod[]) addPod(p, items, own, false);
    return { version, body: Buffer.concat([kindFields(true, ''), itemsFields(items)]), own, full: true };
  }

  /** The delta from `from` to now, or undefined when history does not reach back (full then). */
  function delta(from: number): SharedUpdate | undefined {
    if (from < floor || from > version) return undefined;
    const keys = new Set<string>();
    let changeAt = Infinity;
    let podScope = false;
    for (let i = history.length - 1; i >= 0 && history[i].revision > from; i--) {
      const c = history[i];
      keys.add(c.key);
      podScope ||= c.podScope;
      changeAt = Math.min(changeAt, c.at);
    }
    if (podScope) for (const p of store.list('Pod')) keys.add(objectKey(p));
    // Removals apply before upserts (agent-client.ts): a pod hidden from other nodes is removed
    // in the shared body and upserted in its own node's part.
    const items: Buffer[] = [];
    const own = new Map<string, Buffer[]>();
    for (const key of keys) {
      const o = store.get(key);
      if (!o) items.push(removedField(key));
      else if (SHARED_KINDS.has(o.kind)) items.push(encode(o));
      else if (o.kind === 'Pod') addPod(o, items, own, true);
    }
    return { version, body: Buffer.concat([kindFields(false, String(from)), itemsFields(items)]), own, full: false, changeAt: changeAt === Infinity ? undefined : changeAt };
  }

  /** A snapshot of at least version `min` (one above what the agent NACKed: never re-sent). */
  function snapshotFor(min: number): SharedUpdate {
    const now = Date.now();
    const s = lastSnapshot;
    if (!s || s.update.version < Math.max(floor, min) || now - s.builtAt >= SNAPSHOT_REUSE_MS) lastSnapshot = { update: snapshot(), builtAt: now };
    return lastSnapshot!.update;
  }

  function sharedFor(base: number | undefined, min: number): SharedUpdate {
    if (base === undefined) return snapshotFor(min);
    const id = String(base);
    let s = shared.get(id);
    if (s) return s;
    s = delta(base) ?? snapshotFor(min);
    shared.set(id, s);
    if (shared.size > SHARED_CACHE) shared.delete(shared.keys().next().value!);
    return s;
  }

  function pump(): void {
    for (const agent of waiting) {
      if (largeInFlight >= largeWrites) return;
      waiting.delete(agent);
      send(agent);
    }
  }

  function send(agent: Agent): void {
    const call = agent.call;
    if (!call || agent.inflight || agent.acked === version || agent.nacked === version) return;
    const s = sharedFor(agent.acked, agent.nacked === undefined ? 0 : agent.nacked + 1);
    const own = s.own.get(agent.node) ?? [];
    let size = s.body.length;
    for (const b of own) size += b.length;
    const large = size >= LARGE_UPDATE_BYTES;
    if (large && largeInFlight >= largeWrites) {
      waiting.add(agent);
      return;
    }
    const nonce = (++nonces).toString(36);
    agent.inflight = { version: s.version, nonce, sentAt: Date.now(), changeAt: s.changeAt, full: s.full };
    if (s.full) pushedFull++;
    else pushedDelta++;
    if (pushedFull + pushedDelta === 1) queueMicrotask(countPushes);
    if (large) {
      largeInFlight++;
      agent.release = () => {
        agent.release = undefined;
        largeInFlight--;
        pump();
      };
    }
    call.write([headFields(String(s.version), nonce), storeField, s.body, ...own]);
  }

  /** Counted per update, added to the metric once per turn (a label lookup per agent adds up). */
  function countPushes(): void {
    if (pushedFull > 0) metrics.pushes.inc({ type: 'full' }, pushedFull);
    if (pushedDelta > 0) metrics.pushes.inc({ type: 'delta' }, pushedDelta);
    pushedFull = pushedDelta = 0;
  }

  function publish(): void {
    timer = undefined;
    if (pending.length === 0) return;
    lastPublishAt = Date.now();
    version = store.revision();
    history = history.concat(pending);
    pending = [];
    if (history.length > historySize) {
      const cut = history.length - historySize;
      floor = history[cut - 1].revision;
      history = history.slice(cut);
    }
    shared = new Map();
    for (const agent of agents.values()) send(agent);
  }

  const toChanges = (events: WatchEvent[], at: number): Change[] =>
    events.map((e) => ({ revision: e.revision, key: e.key, podScope: changesPodScope(e.object), at }));

  function onEvents(events: WatchEvent[]): void {
    const changes = toChanges(events, Date.now());
    if (changes.some((c) => c.podScope)) peers = undefined;
    pending.push(...changes);
    // After a quiet window the first change goes out at once (a lone endpoint change should not
    // wait); changes arriving within `debounceMs` of a publish are batched into the next one.
    timer ??= setTimeout(publish, Date.now() - lastPublishAt >= debounceMs ? 0 : debounceMs);
  }

  function onRequest(agent: Agent, req: NodeRequest): void {
    const inflight = agent.inflight;
    // A response to anything but the newest update is stale (xDS drops those too).
    if (!inflight || req.response_nonce !== inflight.nonce) return;
    agent.inflight = undefined;
    agent.release?.();
    const now = Date.now();
    if (req.error_detail) {
      agent.nacked = inflight.version;
      agent.lastError = req.error_detail;
      metrics.nacks.inc({ node: agent.node });
      log(`node ${agent.node} rejected version ${inflight.version}: ${req.error_detail}`);
      // The agent stays at what it ACKed before; a full update it rejected leaves it with nothing known.
      if (inflight.full) agent.acked = undefined;
    } else if (req.version === String(inflight.version)) {
      agent.acked = inflight.version;
      agent.lastAckAt = now;
      agent.lastError = '';
      if (inflight.changeAt !== undefined) metrics.convergence.observe((now - inflight.changeAt) / 1000);
      if (agent.syncing) metrics.initialSync.observe((now - agent.connectedAt) / 1000);
      agent.syncing = false;
    }
    send(agent);
  }

  return {
    start() {
      // The store's history (after a restart: its log since the last snapshot) becomes the
      // publish history, so agents that saw those versions resume with a delta.
      version = store.revision();
      floor = store.historyStart();
      storeField = storeIdField(store.id());
      let backlog: WatchEvent[] = [];
      let loading = true;
      cancelWatch = store.watch(floor, (events) => (loading ? backlog.push(...events) : onEvents(events)));
      loading = false;
      history = toChanges(backlog, Date.now()).slice(-historySize);
      if (backlog.length > history.length) floor = backlog[backlog.length - history.length - 1].revision;
      backlog = [];
    },
    stop() {
      cancelWatch?.();
      if (timer) clearTimeout(timer);
      for (const a of agents.values()) a.call?.end();
    },
    version: () => version,
    serve(call, allowed) {
      let agent: Agent | undefined;
      const close = () => {
        if (agent && agent.call === call) {
          agent.call = undefined;
          agent.inflight = undefined;
          waiting.delete(agent);
          agent.release?.();
          metrics.connectedAgents.dec();
        }
      };
      call.on('data', (req: NodeRequest) => {
        if (!agent) {
          const denied = allowed(req.node);
          if (denied) {
            call.emit('error', { code: 7, details: denied });
            return;
          }
          agent = agents.get(req.node);
          if (!agent) agents.set(req.node, (agent = { node: req.node, lastAckAt: 0, lastError: '', connectedAt: Date.now(), syncing: true }));
          if (agent.call) {
            // A newer stream from the same node replaces the old one.
            const old = agent.call;
            waiting.delete(agent);
            agent.release?.();
            old.end();
          } else metrics.connectedAgents.inc();
          agent.call = call;
          agent.connectedAt = Date.now();
          agent.syncing = true;
          agent.inflight = undefined;
          agent.nacked = undefined;
          // Resume: the agent says what it holds; a delta from there when it came from this very
          // store (another store's versions mean nothing here), else a full snapshot.
          const resume = Number(req.resume_version);
          const sameStore = req.store_id === store.id();
          agent.acked = sameStore && req.resume_version !== '' && Number.isInteger(resume) && resume > 0 && resume <= version ? resume : undefined;
          send(agent);
          return;
        }
        onRequest(agent, req);
      });
      call.on('end', () => {
        close();
        call.end();
      });
      call.on('error', close);
      call.on('close', close);
    },
    status() {
      const now = Date.now();
      return [...agents.values()]
        .map((a) => {
          const behind = a.acked === undefined ? version : Math.max(0, version - a.acked);
          metrics.versionsBehind.set({ node: a.node }, behind);
          return {
            node: a.node,
            connected: a.call !== undefined,
            acked_version: a.acked === undefined ? '' : String(a.acked),
            last_ack_unix_ms: a.lastAckAt,
            sent_version: a.inflight ? String(a.inflight.version) : '',
            nacked_version: a.nacked === undefined ? '' : String(a.nacked),
            last_error: a.lastError,
            versions_behind: behind,
            lag_ms: a.inflight ? now - a.inflight.sentAt : 0,
          };
        })
        .sort((x, y) => (x.node < y.node ? -1 : 1));
    },
  };
}
