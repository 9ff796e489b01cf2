#!/bin/sh
# Installs tests/k8s/node_modules from package-lock.json (npm ci) when it is
# missing or was installed from another lock file.  Needs only Node.js, npm
# and the npm registry.  Used by tests/e2e/t_k8s.sh and tests/image/run.sh.
# Exits 1 with the reason when it cannot.
dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/k8s: node and npm are required (Node.js >= 18) to validate the manifests;" >&2
    echo "  they are not Debian packages on this machine kind; install Node.js 20 with npm" >&2
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
