// The gRPC service definitions, loaded once per process from the checked-in weft.proto. From
// source it sits beside this file; from a bundle (dist/, bench bundles) it is found in the
// checkout above the bundle.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface WeftServices {
  NodeSync: ServiceClientConstructor & { service: ServiceDefinition };
  Control: ServiceClientConstructor & { service: ServiceDefinition };
  Bootstrap: ServiceClientConstructor & { service: ServiceDefinition };
}

let loaded: WeftServices | undefined;

function protoPath(): string {
  // Beside this file, else in the checkout that holds the bundle (dist/, node_modules/.cache/…).
  const candidates = [fileURLToPath(new URL('./weft.proto', import.meta.url))];
  for (let dir = dirname(candidates[0]); ; dir = dirname(dir)) {
    candidates.push(join(dir, 'mesh-control', 'proto', 'weft.proto'));
    if (dirname(dir) === dir) break;
  }
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`failed to load the gRPC schema: weft.proto not found beside ${candidates[0]} nor in a checkout above it`);
  return found;
}

export function weftServices(): WeftServices {
  if (!loaded) {
    const def = loadSync(protoPath(), { keepCase: true, longs: Number, defaults: true });
    const pkg = loadPackageDefinition(def) as GrpcObject;
    loaded = ((pkg.weft as GrpcObject).control as GrpcObject).v1 as unknown as WeftServices;
  }
  return loaded;
}
