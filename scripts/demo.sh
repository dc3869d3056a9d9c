#!/usr/bin/env bash
# `npm run demo`: a 3-node cluster in network namespaces from examples/ — nodes, their pod subnets,
# the pods, a cross-node probe and a TCP connectivity matrix — then tears it all down (also on
# failure or Ctrl-C). Needs root; touches nothing outside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh demo
if [ "$(id -u)" != 0 ]; then echo "weft demo: needs root (it creates network namespaces)" >&2; exit 1; fi

# Its own lab directory (and so its own namespace prefix): a lab at the default place is left alone.
export WEFT_LAB_DIR=${WEFT_LAB_DIR:-/run/weft/demo}
weft() { node dist/weft.mjs "$@"; }
trap 'weft lab down' EXIT
trap 'exit 130' INT TERM

echo "== weft lab up --nodes 3 -f examples/"
weft lab up --nodes 3 -f examples
echo
echo "== a pod on node3 calls the db pod on node2: the server sees the caller's own address (no NAT)"
weft lab probe --from shop/web-1 --to shop/db --port 8080
echo "== and the outside host sees the caller's node address (masqueraded on the way out)"
weft lab probe --from shop/web-1 --to host/outside --port 8080
echo
echo "== TCP connectivity matrix on port 8080 (the outside host reaches pods only through Services)"
weft lab probe --matrix --port 8080 --protocol TCP
echo
echo "== UDP to the dns pod"
weft lab probe --from shop/web-0 --to shop/dns --port 53 --protocol UDP
