#!/usr/bin/env bash
# `npm run demo`: a 3-node cluster in network namespaces whose mesh-control is given examples/ with
# `weft apply` — nodes, their pod subnets, pods and Services, the pod connectivity matrix, then
# Services at work: a ClusterIP spreading load over its pods, a NodePort and a LoadBalancer reached
# from an outside host — then tears it all down (also on failure or Ctrl-C). Needs root; touches nothing outside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh demo
if [ "$(id -u)" != 0 ]; then echo "weft demo: needs root (it creates network namespaces)" >&2; exit 1; fi

# Its own lab directory (and so its own namespace prefix): a lab at the default place is left alone.
export WEFT_LAB_DIR=${WEFT_LAB_DIR:-/run/weft/demo}
weft() { node dist/weft.mjs "$@"; }
trap 'weft lab down' EXIT
trap 'exit 130' INT TERM

echo "== weft lab up --nodes 3 -f examples/outside.yaml   (mesh-control, one weft agent per node, nftables mode, the outside host)"
weft lab up --nodes 3 -f examples/outside.yaml
echo
# The lab's mesh-control is the cluster's API server: the manifests go to it as to any cluster,
# and the lab's kubelet runs the pods it is given.
export WEFT_CONFIG=$WEFT_LAB_DIR/control/admin.json
server=unix:$WEFT_LAB_DIR/control.sock
echo "== weft apply -f examples/ --server $server"
node dist/weft.mjs apply -f examples/ --server "$server"
echo
echo "== waiting for the lab kubelet to run the 5 pods"
for _ in $(seq 1 120); do
  n=$(weft lab status --output json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).pods.length)')
  [ "$n" -ge 5 ] && break
  sleep 0.25
done
[ "$n" -ge 5 ] || { echo "weft demo: only $n of 5 pods running after 30 s" >&2; exit 1; }
echo "== weft get nodes / pods / services / endpointslices (from mesh-control)"
node dist/weft.mjs get nodes --server "$server"
node dist/weft.mjs get pods -A --server "$server"
node dist/weft.mjs get svc -A --server "$server"
node dist/weft.mjs get endpointslices -A --server "$server"
echo
echo "== weft lab status"
weft lab status
echo
echo "== TCP connectivity matrix on port 8080 (the outside host reaches pods only through Services)"
weft lab probe --matrix --port 8080 --protocol TCP
echo
echo "== 30 requests from shop/db to the web Service's ClusterIP, a new connection each: who answered"
weft lab probe --from shop/db --to shop/web --count 30
echo
echo "== the dns Service over UDP, from a pod and from a node"
weft lab probe --from shop/web-0 --to svc/shop/dns --protocol UDP
weft lab probe --from node/node3 --to svc/shop/dns --protocol UDP
echo
echo "== from outside: a NodePort (source NATed to the node), and a LoadBalancer IP with"
echo "   externalTrafficPolicy Local (the pod sees the outside host's own address)"
weft lab probe --from host/outside --to 172.30.0.11 --port 30080
lb=$(weft lab status --output json | node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(s.services.find((x)=>x.service==="shop/web-public").external[0])')
weft lab probe --from host/outside --to "$lb" --port 80
