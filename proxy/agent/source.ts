// Where the node agent learns the cluster: a ClusterStateSource delivers whole views (level-
// triggered, never deltas). The file source reads a List of cluster objects that a writer replaces
// atomically (temp + rename); a file that cannot be read or parsed is logged and ignored, so the
// agent keeps forwarding with the last good view (fail static). Unchanged objects keep their identity.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parseManifests } from '../../mesh-control/model/parse.ts';
import type { ClusterObject, EndpointSlice, Namespace, NetworkPolicy, Node, Pod, Service } from '../../mesh-control/model/types.ts';

export interface ClusterView {
  nodes: Node[];
  services: Service[];
  endpointSlices: EndpointSlice[];
  pods: Pod[];
  networkPolicies: NetworkPolicy[];
  namespaces: Namespace[];
}

export interface ClusterStateSource {
  /** Resolves once the source is running; `onUpdate` gets the first view as soon as one is known. */
  start(onUpdate: (view: ClusterView) => void): Promise<void>;
  stop(): Promise<void>;
}

export function emptyView(): ClusterView {
  return { nodes: [], services: [], endpointSlices: [], pods: [], networkPolicies: [], namespaces: [] };
}

/** Sorts objects into a view; kinds the agent does not use (Deployment, LabHost) are left out. */
export function viewFromObjects(objects: readonly ClusterObject[]): ClusterView {
  const view = emptyView();
  for (const o of objects) {
    switch (o.kind) {
      case 'Node': view.nodes.push(o); break;
      case 'Service': view.services.push(o); break;
      case 'EndpointSlice': view.endpointSlices.push(o); break;
      case 'Pod': view.pods.push(o); break;
      case 'NetworkPolicy': view.networkPolicies.push(o); break;
      case 'Namespace': view.namespaces.push(o); break;
      default: break;
    }
  }
  return view;
}

/** Equality of JSON values (what parsed manifests are made of). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((v, i) => sameJson(v, (b as unknown[])[i]));
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

const identityOf = (o: ClusterObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/**
 * Objects equal to the ones of the previous read are replaced by those very objects, as informer
 * caches keep unchanged objects: the proxy recognises unchanged services by identity and renders
 * only the changed ones.
 */
function keepUnchanged(previous: ReadonlyMap<string, ClusterObject>, objects: ClusterObject[]): { objects: ClusterObject[]; byIdentity: Map<string, ClusterObject> } {
  const byIdentity = new Map<string, ClusterObject>();
  const out = objects.map((o) => {
    const id = identityOf(o);
    const before = previous.get(id);
    const kept = before !== undefined && sameJson(before, o) ? before : o;
    byIdentity.set(id, kept);
    return kept;
  });
  return { objects: out, byIdentity };
}

export interface FileStateSourceOptions {
  path: string;
  /** Poll period, the fallback when directory watches miss a rename (default 1000 ms). */
  pollMs?: number;
  log?: (message: string) => void;
}

export function createFileStateSource(opts: FileStateSourceOptions): ClusterStateSource {
  const log = opts.log ?? ((m: string) => process.stderr.write(`weft agent: ${m}\n`));
  const pollMs = opts.pollMs ?? 1000;
  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** Identity of the file last read (inode, size, mtime), to skip re-reading an unchanged file. */
  let lastStamp = '';
  let lastText: string | undefined;
  let lastError = '';
  let lastObjects = new Map<string, ClusterObject>();
  let reading: Promise<void> | undefined;
  let again = false;

  async function readOnce(onUpdate: (view: ClusterView) => void): Promise<void> {
    let stamp: string;
    try {
      const s = await stat(opts.path);
      stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch (err) {
      report(`failed to read cluster state ${opts.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; keeping the last good state`);
      return;
    }
    if (stamp === lastStamp) return;
    let text: string;
    try {
      text = await readFile(opts.path, 'utf8');
    } catch (err) {
      report(`failed to read cluster state ${opts.path}: ${(err as Error).message}; keeping the last good state`);
      return;
    }
    lastStamp = stamp;
    if (text === lastText) return;
    let view: ClusterView;
    try {
      const kept = keepUnchanged(lastObjects, parseManifests(text, opts.path));
      view = viewFromObjects(kept.objects);
      lastObjects = kept.byIdentity;
    } catch (err) {
      report(`failed to parse cluster state ${opts.path}: ${(err as Error).message}; keeping the last good state`);
      return;
    }
    lastText = text;
    lastError = '';
    if (!stopped) onUpdate(view);
  }

  /** Logs a problem once, not on every poll. */
  function report(message: string): void {
    if (message === lastError) return;
    lastError = message;
    log(message);
  }

  function trigger(onUpdate: (view: ClusterView) => void): void {
    if (stopped) return;
    if (reading) {
      again = true;
      return;
    }
    reading = (async () => {
      do {
        again = false;
        await readOnce(onUpdate);
      } while (again && !stopped);
    })().finally(() => { reading = undefined; });
  }

  return {
    async start(onUpdate) {
      stopped = false;
      const name = basename(opts.path);
      try {
        // The directory, not the file: an atomic rename replaces the file's inode, which a watch
        // on the file itself would not follow.
        watcher = watch(dirname(opts.path), (_event, file) => {
          if (file === null || file === name) trigger(onUpdate);
        });
        watcher.on('error', (err) => log(`failed to watch ${dirname(opts.path)}: ${err.message}; polling every ${pollMs} ms`));
      } catch (err) {
        log(`failed to watch ${dirname(opts.path)}: ${(err as Error).message}; polling every ${pollMs} ms`);
      }
      timer = setInterval(() => trigger(onUpdate), pollMs);
      timer.unref();
      trigger(onUpdate);
      await reading;
    },
    async stop() {
      stopped = true;
      watcher?.close();
      if (timer) clearInterval(timer);
      await reading;
    },
  };
}
