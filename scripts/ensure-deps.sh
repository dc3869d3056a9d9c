#!/usr/bin/env bash
# Installs what weft needs when it is missing: Debian packages (as root, via apt-get) and npm
# packages. Safe to run repeatedly; does nothing when everything is present.
# Usage: scripts/ensure-deps.sh [test|demo|bench]
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-test}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have nft || need+=(nftables)
have conntrack || need+=(conntrack)
have ipset || need+=(ipset)
have etcd || need+=(etcd-server)
have cc || need+=(gcc)
have openssl || need+=(openssl)
have haproxy || need+=(haproxy)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ "$purpose" = bench ]; then
  have nginx || need+=(nginx-light)
  have wrk || need+=(wrk)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "weft: missing Debian packages: ${need[*]} (run as root to install them)" >&2
  else
    echo "weft: installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [ ! -d node_modules/.bin ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "weft: installing npm packages" >&2
  # `npm install` honours package-lock.json; `npm ci` is not used because npm 11 rejects locks whose
  # optional per-platform packages (rollup's) it recorded itself as "missing".
  npm install --no-audit --no-fund --loglevel=error
fi
node scripts/build.mjs
