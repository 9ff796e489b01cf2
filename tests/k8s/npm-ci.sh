#!/bin/sh
# Installs tests/k8s/node_modules from package-lock.json (npm ci) when it is
# missing or was installed from another lock file.  Needs only Node.js, npm
# and the npm registry.  Used by tests/e2e/t_k8s.sh and tests/image/run.sh.
# Exits 1 with the reason when it cannot.
dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    # A fresh Debian 12 has neither; Debian's nodejs (18) and npm are enough.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/k8s: installing Debian's nodejs and npm" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
    fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/k8s: node and npm are required (Node.js >= 18) to validate the manifests;" >&2
    echo "  install them (Debian: apt-get install nodejs npm) and run the tests again" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
    echo "tests/k8s: Node.js >= 18 is required, found $(node --version)" >&2
    exit 1
fi
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
stamp="$dir/node_modules/.mlpipe-lock-sha256"
# One install at a time (e2e and e2e-asan may run in parallel under make -j).
exec 9<"$dir/package.json"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "tests/k8s: npm ci (package-lock.json changed or node_modules missing)" >&2
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    echo "tests/k8s: 'npm ci' failed (is the npm registry reachable?)" >&2
    exit 1
fi
echo "$want" >"$stamp"
