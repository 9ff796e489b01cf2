#!/bin/bash
# make image-test: builds the container image from the Dockerfile and runs it,
# with podman and no Docker engine, as Kubernetes would:
#
#   1. set-up      podman, runc, catatonit, debootstrap, sqlite3 (apt-get when
#                  missing, as root); a containers.conf (CONTAINERS_CONF) with
#                  runtime runc and explicit ulimits
#   2. base image  Debian 12 minbase from the apt mirror this machine uses
#                  (debootstrap), trimmed like debian:bookworm-slim, imported as
#                  localhost/mlpipe-base:bookworm; cached in $MLPIPE_IMAGE_CACHE
#   3. build       podman build --build-arg BASE=localhost/mlpipe-base:bookworm
#                  (the build stage runs `make test`)
#   4. inspect     size (limit $MLPIPE_IMAGE_MAX_MB MB), user, entrypoint, env, labels
#   5. run         pipelines/iris-logreg.yaml from the image's copy, read-only
#                  root, all capabilities dropped, uid 10001, /data mounted:
#                  exit 0, run database rows, model artifact
#   6. config      a config error exits 2 and records nothing
#   7. SIGTERM     podman kill --signal TERM during training: exit 143, run `killed`
#   8. kube play   a Pod made from the CronJob's pod template (examples/k8s/),
#                  with its ConfigMap and a podman volume for the claim: completes
#   9. serve       the Deployment's pod answers GET /healthz (when the binary
#                  has the serve command)
#
# Every step prints what it does and "ok" or "FAIL: why"; any failure, or a
# step that cannot run on this machine, exits non-zero.  A pass ends with
# "image-test: N passed, 0 failed".
#
# Environment: MLPIPE_IMAGE_CACHE (default /var/cache/mlpipe-image),
# MLPIPE_IMAGE_REFRESH_BASE=1 rebuilds the base, MLPIPE_IMAGE_MAX_MB (150),
# MLPIPE_IMAGE_RUN_TESTS=0 skips the in-build `make test` (debugging only:
# the run then ends in a warning), MLPIPE_IMAGE_KEEP=1 keeps the work dir.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD

IMAGE=localhost/mlpipe:image-test
BASE_IMAGE=localhost/mlpipe-base:bookworm
CACHE=${MLPIPE_IMAGE_CACHE:-/var/cache/mlpipe-image}
MAX_MB=${MLPIPE_IMAGE_MAX_MB:-150}
RUN_TESTS=${MLPIPE_IMAGE_RUN_TESTS:-1}
UID_GID=10001:10001
PKGS="podman runc conmon catatonit golang-github-containers-common debootstrap sqlite3 util-linux curl"

T0=$(date +%s)
passed=0; failed=0; skipped=0
CURRENT=""

# ---------------------------------------------------------------- output

now() { date +%s; }
step() {            # step "N name" "what it does"
    CURRENT=$1; STEP_T0=$(now)
    printf '\n==> step %s: %s\n' "$1" "$2"
}
say() { printf '    %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'ok   step %s (%ss)\n' "$CURRENT" $(( $(now) - STEP_T0 )); }
# die WHY...: the current step failed; prints why and exits 1 (cleanup runs).
die() {
    failed=$((failed + 1))
    printf 'FAIL step %s: %s\n' "$CURRENT" "$1"
    shift
    for l in "$@"; do printf '    %s\n' "$l"; done
    summary
    exit 1
}
# show FILE [N]: the last N lines of a log, indented.
show() { tail -n "${2:-40}" "$1" 2>/dev/null | sed 's/^/    | /'; }
summary() {
    printf '\nimage-test: total %ss\n' $(( $(now) - T0 ))
    [ -n "${SIZE_MB:-}" ] && printf 'image-test: image %s is %s MB\n' "$IMAGE" "$SIZE_MB"
    if [ "$skipped" -gt 0 ]; then
        printf 'image-test: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
    else
        printf 'image-test: %d passed, %d failed\n' "$passed" "$failed"
    fi
}

# ---------------------------------------------------------------- cleanup

WORK=""
# remove_leftovers: this test's containers, pods and volume (also those a
# killed earlier run left behind).
remove_leftovers() {
    podman pod rm -f -t 0 mlpipe-it-cron mlpipe-it-serve >/dev/null 2>&1
    podman rm -f -t 0 mlpipe-it-run mlpipe-it-sigterm >/dev/null 2>&1
    podman volume rm -f mlpipe-it-data >/dev/null 2>&1
}
cleanup() {
    [ -n "$WORK" ] || return 0
    remove_leftovers
    if [ "$failed" -gt 0 ] || [ "${MLPIPE_IMAGE_KEEP:-0}" = 1 ]; then
        echo "image-test: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "image-test: interrupted"; exit 130' INT TERM

# sqlite_as_user DB QUERY: the host's sqlite3 as uid 10001 (the container's
# user), so that any -wal/-shm file it creates stays writable for mlpipe.
sqlite_as_user() {
    setpriv --reuid=10001 --regid=10001 --clear-groups sqlite3 -batch "$1" "$2" 2>&1
}
# sqlite_ro DB QUERY: read a database no process is using, touching nothing.
sqlite_ro() { sqlite3 -batch "file:$1?immutable=1" "$2" 2>&1; }

# ================================================================ 1. set-up
step "1 set-up" "podman with runc, a containers.conf, packages"
[ "$(uname -s)" = Linux ] || die "podman needs Linux; this is $(uname -s)"
[ "$(id -u)" = 0 ] || die "must run as root: podman here runs rootful (rootless podman needs subuid ranges and user namespaces this sandbox does not give)" \
    "run: sudo make image-test"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "needs a Debian system (dpkg-query, apt-get) to install podman and debootstrap"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
        >/tmp/mlpipe-image-apt.log 2>&1 \
        || die "apt-get install$missing failed" "$(tail -5 /tmp/mlpipe-image-apt.log)"
fi
for c in podman runc debootstrap sqlite3 setpriv flock curl; do
    command -v "$c" >/dev/null || die "'$c' is not installed (apt-get did not provide it)"
done
for c in node npm; do
    command -v "$c" >/dev/null \
        || die "'$c' is not installed: Node.js (>= 18) with npm turns examples/k8s/ into pods (tests/image/to-pod.js); it is no Debian package on this machine kind"
done
WORK=$(mktemp -d /tmp/mlpipe-image-test.XXXXXX)
chmod 755 "$WORK"        # uid 10001 reaches $WORK/data (sqlite_as_user)
# crun (podman's first choice) refuses this kind of host's hybrid cgroups;
# podman's default ulimits are refused by the sandbox: set both explicitly.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
podman info >"$WORK/podman-info.txt" 2>&1 || die "podman info failed" "$(tail -5 "$WORK/podman-info.txt")"
remove_leftovers
say "$(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), cgroups $(podman info --format '{{.Host.CgroupsVersion}}'), storage $(podman info --format '{{.Store.GraphDriverName}}')"
store=$(podman info --format '{{.Store.GraphRoot}}')
mkdir -p "$CACHE" || die "cannot create the cache folder $CACHE"
for d in "$store" "$CACHE" /tmp; do
    free_mb=$(df -Pm "$d" | awk 'NR == 2 { print $4 }')
    [ "${free_mb:-0}" -ge 3000 ] || die "only ${free_mb} MB free under $d; the build needs about 3 GB"
done
tests/k8s/npm-ci.sh >"$WORK/npm.log" 2>&1 || die "cannot set up tests/k8s/node_modules (used to turn the manifests into pods)" "$(tail -5 "$WORK/npm.log")"
ok

# ================================================================ 2. base image
step "2 base image" "$BASE_IMAGE: Debian 12 minbase, cached in $CACHE"
# The Debian mirror and suites apt uses here (deb822 .sources or one-line lists).
apt_sources() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uris = ""; suites = ""; en = 1; deb = 0
               for (i = 1; i <= NF; i++) {
                   if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uris = $i }
                   if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites = $i }
                   if ($i ~ /^Enabled:[ \t]*no/) en = 0
                   if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1 }
               if (en && deb) { n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
                   for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b] } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i + 1) }' "$f"
    done
}
apt_sources | awk '$2 ~ /^bookworm(-updates|-security)?$/' | sort -u >"$WORK/sources.txt"
MIRROR=$(awk '$2 == "bookworm" { print $1; exit }' "$WORK/sources.txt")
[ -n "$MIRROR" ] || die "no Debian 12 (bookworm) mirror in /etc/apt/sources.list{,.d}: cannot debootstrap a base image" \
    "(apt sources seen: $(apt_sources | tr '\n' ' '))"
base_tar="$CACHE/bookworm-minbase.tar"
exec 8>"$CACHE/.lock"; flock 8
if [ "${MLPIPE_IMAGE_REFRESH_BASE:-0}" = 1 ]; then
    say "MLPIPE_IMAGE_REFRESH_BASE=1: rebuilding the base"
    rm -f "$base_tar"; podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1
elif [ -f "$base_tar" ] && [ -n "$(find "$base_tar" -mtime +30)" ]; then
    say "the cached base is over 30 days old: rebuilding it"
    rm -f "$base_tar"; podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1
fi
if podman image exists "$BASE_IMAGE" && [ -f "$base_tar" ]; then
    say "cached: $BASE_IMAGE (from $base_tar, $(date -r "$base_tar" +%F))"
else
    if [ ! -f "$base_tar" ]; then
        say "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
        rootfs="$CACHE/rootfs.tmp"
        rm -rf "$rootfs"
        debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || die "debootstrap failed (mirror $MIRROR)" "$(tail -8 "$WORK/debootstrap.log")"
        # apt in the image uses the same mirrors as this machine (with updates
        # and security, like the official image).
        rm -f "$rootfs/etc/apt/sources.list"
        awk '{ s[$1] = s[$1] " " $2 } END { for (u in s) { sub(/^ /, "", s[u])
                 printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", u, s[u] } }' \
            "$WORK/sources.txt" >"$rootfs/etc/apt/sources.list.d/debian.sources"
        # Trimmed like debian:bookworm-slim: no documentation, manuals or
        # translations, no package caches kept, unsafe-io dpkg (a container
        # layer is written once).
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/mlpipe-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
force-unsafe-io
EOF
        cat >"$rootfs/etc/apt/apt.conf.d/mlpipe-slim" <<'EOF'
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
        find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null
        find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null
        rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
               "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
               "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
        tar --numeric-owner -C "$rootfs" -cf "$base_tar.tmp" . || die "tar of the base rootfs failed"
        mv "$base_tar.tmp" "$base_tar" && rm -rf "$rootfs"
    fi
    podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1
    podman import --change 'CMD ["bash"]' "$base_tar" "$BASE_IMAGE" >"$WORK/import.log" 2>&1 \
        || die "podman import failed" "$(tail -5 "$WORK/import.log")"
    say "imported $base_tar as $BASE_IMAGE"
fi
flock -u 8
podman run --rm --network none "$BASE_IMAGE" grep -q 'VERSION_ID="12"' /etc/os-release \
    || die "$BASE_IMAGE does not run, or is not Debian 12"
ok

# ================================================================ 3. build
step "3 build" "podman build (the build stage runs make test: unit + e2e, plain and ASan)"
version=$(sed -n 's/^#define MP_VERSION "\(.*\)"/\1/p' runner/mp.h)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
source_url=$(git remote get-url origin 2>/dev/null || true)
[ "$RUN_TESTS" = 1 ] || say "WARNING: MLPIPE_IMAGE_RUN_TESTS=$RUN_TESTS: the in-build 'make test' is SKIPPED"
say "log: $WORK/build.log (progress below)"
timeout 3600 podman build --pull=never --network host \
    --build-arg BASE="$BASE_IMAGE" --build-arg RUN_TESTS="$RUN_TESTS" \
    --build-arg VERSION="${version:-unknown}" --build-arg REVISION="$revision" \
    --build-arg SOURCE="$source_url" \
    -t "$IMAGE" -f Dockerfile . 2>&1 \
    | tee "$WORK/build.log" \
    | grep --line-buffered -E '^\[[0-9]+/[0-9]+\] STEP|^--> Using cache|passed, [0-9]+ failed|^FAIL|all tests passed|WARNING' \
    | sed -u 's/^/    /'
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ]; then
    die "podman build timed out after 60 minutes; the end of $WORK/build.log:" "$(tail -30 "$WORK/build.log" | sed 's/^/| /')"
elif [ "$rc" -ne 0 ]; then
    # The failing tests first (cmocka, tests/run-unit.sh and e2e lines), then the end of the log.
    die "podman build exited $rc; failures in $WORK/build.log:" \
        "$(grep -E '^\[  FAILED  \]|^\[   LINE   \]|^FAILED: |^FAIL |^    FAIL: |^failed: |passed, [1-9][0-9]* failed|Error: |E: ' "$WORK/build.log" | head -40 | sed 's/^/| /')" \
        "the end of the log:" "$(tail -15 "$WORK/build.log" | sed 's/^/| /')"
fi
# Untagged layers from builds of older sources pile up: drop those over a
# week old (the recent ones are the next build's cache).
podman image prune -f --filter until=168h >/dev/null 2>&1
ok

# ================================================================ 4. inspect
step "4 inspect" "size, user, entrypoint, environment, labels"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE") || die "cannot inspect $IMAGE"
SIZE_MB=$(( size / 1000000 ))
say "size: $SIZE_MB MB ($size bytes; base $(( $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") / 1000000 )) MB)"
[ "$SIZE_MB" -lt "$MAX_MB" ] || die "the image is $SIZE_MB MB, over the $MAX_MB MB limit (MLPIPE_IMAGE_MAX_MB)"
fmt='{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Config.WorkingDir}}'
got=$(podman image inspect --format "$fmt" "$IMAGE")
[ "$got" = '10001:10001|["mlpipe"]|["--help"]|/data' ] \
    || die "user|entrypoint|cmd|workdir: expected '10001:10001|[\"mlpipe\"]|[\"--help\"]|/data', got '$got'"
envs=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE")
for e in MLPIPE_DB=/data/runs.db MLPIPE_ARTIFACTS=/data/artifacts; do
    grep -qx "$e" <<<"$envs" || die "ENV $e is missing"
done
for l in title description version source licenses revision; do
    v=$(podman image inspect --format "{{index .Labels \"org.opencontainers.image.$l\"}}" "$IMAGE")
    [ "$v" != "<no value>" ] || die "label org.opencontainers.image.$l is missing"
    say "org.opencontainers.image.$l = ${v:-(empty)}"
done
out=$(podman run --rm --read-only --cap-drop ALL --network none "$IMAGE" 2>&1) \
    || die "the default command (--help) failed: $out"
grep -q '^usage: mlpipe' <<<"$out" || die "the default command did not print the usage: $out"
ok

# ================================================================ 5. run
step "5 run" "iris-logreg from the image's /usr/share/mlpipe, read-only root, uid 10001, /data mounted"
DATA="$WORK/data"
mkdir -p "$DATA" && chown 10001:10001 "$DATA"
RUN=(podman run --rm --read-only --cap-drop ALL --security-opt no-new-privileges
     --user "$UID_GID" --network none -v "$DATA:/data" "$IMAGE")
# The shipped pipelines name their data relative to the current directory.
timeout 300 podman run --rm --name mlpipe-it-run --read-only --cap-drop ALL --security-opt no-new-privileges \
    --user "$UID_GID" --network none -v "$DATA:/data" -w /usr/share/mlpipe "$IMAGE" \
    run pipelines/iris-logreg.yaml >"$WORK/run.out" 2>"$WORK/run.err"
rc=$?
[ "$rc" -eq 0 ] || die "mlpipe run exited $rc, expected 0" "$(show "$WORK/run.err" 20)"
got=$(sqlite_as_user "$DATA/runs.db" "SELECT id, status, exit_code FROM runs")
[ "$got" = "1|finished|0" ] || die "runs table: expected '1|finished|0', got '$got'"
acc=$(sqlite_as_user "$DATA/runs.db" "SELECT value FROM metrics WHERE run = 1 AND key = 'test.accuracy' AND step IS NULL")
awk -v a="$acc" 'BEGIN { exit !(a != "" && a + 0 >= 0.9) }' || die "test.accuracy: expected >= 0.9, got '$acc'"
model="$DATA/artifacts/iris-logreg.mlpm"
[ -s "$model" ] || die "no model at /data/artifacts/iris-logreg.mlpm"
[ "$(stat -c %u:%g "$model")" = "$UID_GID" ] || die "the model is owned by $(stat -c %u:%g "$model"), not $UID_GID"
got=$(sqlite_as_user "$DATA/runs.db" "SELECT path, sha256 FROM artifacts WHERE run = 1")
want="/data/artifacts/iris-logreg.mlpm|$(sha256sum "$model" | cut -d' ' -f1)"
[ "$got" = "$want" ] || die "artifacts table: expected '$want', got '$got'"
say "run 1 finished, test.accuracy = $acc, model $(stat -c %s "$model") bytes"
# The database is the default ($MLPIPE_DB) for the other commands too.
out=$(timeout 60 "${RUN[@]}" runs list 2>&1) || die "mlpipe runs list failed: $out"
grep -q 'iris-logreg' <<<"$out" || die "runs list (MLPIPE_DB default) does not show the run: $out"
ok

# ================================================================ 6. config error
step "6 config error" "an unknown parameter exits 2 and records nothing"
timeout 60 "${RUN[@]}" run /usr/share/mlpipe/pipelines/iris-logreg.yaml --set train.learning_rat=0.1 \
    >"$WORK/cfg.out" 2>"$WORK/cfg.err"
rc=$?
[ "$rc" -eq 2 ] || die "expected exit 2, got $rc" "$(show "$WORK/cfg.err" 10)"
grep -q 'learning_rat' "$WORK/cfg.err" || die "the error does not name the bad key" "$(show "$WORK/cfg.err" 10)"
say "$(grep -m1 'error' "$WORK/cfg.err")"
got=$(sqlite_as_user "$DATA/runs.db" "SELECT count(*) FROM runs")
[ "$got" = 1 ] || die "a config error recorded a run (runs: $got)"
ok

# ================================================================ 7. SIGTERM
step "7 SIGTERM" "podman kill --signal TERM while training: exit 143, run recorded killed"
podman run -d --name mlpipe-it-sigterm --read-only --cap-drop ALL --security-opt no-new-privileges \
    --user "$UID_GID" --network none -v "$DATA:/data" -w /usr/share/mlpipe "$IMAGE" \
    run pipelines/iris-logreg.yaml --set train.epochs=100000 --set train.tol=0 >/dev/null 2>"$WORK/sig.err" \
    || die "podman run -d failed" "$(show "$WORK/sig.err" 10)"
n=0
for _ in $(seq 300); do      # up to 60 s for the first epochs to be recorded
    n=$(sqlite_as_user "$DATA/runs.db" "SELECT count(*) FROM metrics WHERE run = 2 AND key = 'train.loss'")
    [ "${n:-0}" -ge 2 ] 2>/dev/null && break
    [ "$(podman inspect --format '{{.State.Running}}' mlpipe-it-sigterm)" = true ] \
        || die "the container stopped before training" "$(podman logs mlpipe-it-sigterm 2>&1 | tail -10)"
    sleep 0.2
done
[ "${n:-0}" -ge 2 ] 2>/dev/null || die "no train.loss rows for run 2 after 60 s (got '$n')"
say "$n train.loss rows recorded; sending SIGTERM"
t_kill=$(date +%s.%N)
podman kill --signal TERM mlpipe-it-sigterm >/dev/null || die "podman kill failed"
rc=$(timeout 60 podman wait mlpipe-it-sigterm) || die "the container did not stop within 60 s of SIGTERM"
secs=$(awk -v s="$t_kill" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
[ "$rc" = 143 ] || die "expected exit 143, got $rc" "$(podman logs mlpipe-it-sigterm 2>&1 | tail -10)"
got=$(sqlite_as_user "$DATA/runs.db" "SELECT status, exit_code FROM runs WHERE id = 2")
[ "$got" = "killed|143" ] || die "run 2: expected 'killed|143', got '$got'"
got=$(sqlite_as_user "$DATA/runs.db" "SELECT count(*) FROM artifacts WHERE run = 2")
[ "$got" = 0 ] || die "the killed run recorded $got artifacts"
got=$(sqlite_as_user "$DATA/runs.db" "PRAGMA integrity_check")
[ "$got" = ok ] || die "integrity_check: $got"
say "stopped ${secs}s after SIGTERM; run 2 killed|143"
podman rm -f mlpipe-it-sigterm >/dev/null
ok

# ================================================================ 8. kube play
step "8 kube play" "a Pod from the CronJob's pod template + the ConfigMap (examples/k8s/)"
claim=$(node -e '
    const y = require("./tests/k8s/node_modules/js-yaml"), fs = require("fs");
    const c = y.loadAll(fs.readFileSync("examples/k8s/cronjob.yaml", "utf8")).find((d) => d && d.kind === "CronJob");
    const v = (c.spec.jobTemplate.spec.template.spec.volumes || []).find((v) => v.persistentVolumeClaim);
    process.stdout.write(v ? v.persistentVolumeClaim.claimName : "");') \
    || die "cannot read examples/k8s/cronjob.yaml"
[ -n "$claim" ] || die "the CronJob mounts no persistentVolumeClaim for /data"
# The claim becomes a podman volume, owned by the pod's user as fsGroup would make it.
podman volume rm -f mlpipe-it-data >/dev/null 2>&1
podman volume create mlpipe-it-data >/dev/null || die "podman volume create failed"
vol=$(podman volume inspect --format '{{.Mountpoint}}' mlpipe-it-data)
chown 10001:10001 "$vol"
node tests/image/to-pod.js examples/k8s/cronjob.yaml CronJob "$IMAGE" mlpipe-it-cron \
    "$claim=mlpipe-it-data" --with examples/k8s/configmap.yaml >"$WORK/cron-pod.yaml" \
    || die "tests/image/to-pod.js failed"
say "pod spec: $WORK/cron-pod.yaml (claim '$claim' -> volume mlpipe-it-data)"
# (from $WORK: kube play treats a ./mlpipe in the current directory as a build context)
(cd "$WORK" && timeout 120 podman kube play --network none cron-pod.yaml) >"$WORK/kube.log" 2>&1 \
    || die "podman kube play failed" "$(show "$WORK/kube.log" 15)"
ctr=mlpipe-it-cron-mlpipe
rc=$(timeout 300 podman wait "$ctr") || die "the pod's container did not finish within 300 s"
podman logs "$ctr" >"$WORK/cron.out" 2>"$WORK/cron.err"
[ "$rc" = 0 ] || die "the CronJob's container exited $rc" "$(show "$WORK/cron.err" 15)"
got=$(podman inspect --format '{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}' "$ctr")
[ "$got" = "10001:10001|true" ] || die "user|read-only root: expected '10001:10001|true', got '$got'"
mem=$(podman inspect --format '{{.HostConfig.Memory}}' "$ctr")
[ "${mem:-0}" -gt 0 ] 2>/dev/null || die "the manifest's memory limit was not applied (HostConfig.Memory = '$mem')"
caps=$(podman inspect --format '{{len .EffectiveCaps}}' "$ctr" 2>/dev/null || echo "?")
[ "$caps" = 0 ] || die "the container kept $caps capabilities (drop: [ALL] expected none)"
got=$(sqlite_ro "$vol/runs.db" "SELECT status, exit_code FROM runs")
[ "$got" = "finished|0" ] || die "runs in the claim's volume: expected 'finished|0', got '$got'"
[ -s "$vol/artifacts/iris-logreg.mlpm" ] || die "no model in the claim's volume"
grep -q '^{' "$WORK/cron.err" || die "the CronJob asks for JSON logs; stderr has none" "$(show "$WORK/cron.err" 5)"
say "container exit 0, user 10001, read-only root, no capabilities, memory limit $((mem / 1048576)) MiB, JSON logs, run finished"
podman pod rm -f -t 0 mlpipe-it-cron >/dev/null
ok

# ================================================================ 9. serve
step "9 serve" "the Deployment's pod answers GET /healthz"
if ! podman run --rm --network none "$IMAGE" --help 2>&1 | grep -qE '^  serve '; then
    say "NOT RUN: this mlpipe has no 'serve' command yet (examples/k8s/serve.yaml is checked offline by make test)"
    printf 'skip step %s\n' "$CURRENT"
    skipped=$((skipped + 1))
else
    node tests/image/to-pod.js examples/k8s/serve.yaml Deployment "$IMAGE" mlpipe-it-serve \
        "$claim=mlpipe-it-data" --host-network >"$WORK/serve-pod.yaml" || die "tests/image/to-pod.js failed"
    port=$(node -e '
        const y = require("./tests/k8s/node_modules/js-yaml"), fs = require("fs");
        const d = y.loadAll(fs.readFileSync("examples/k8s/serve.yaml", "utf8")).find((d) => d && d.kind === "Deployment");
        process.stdout.write(String(d.spec.template.spec.containers[0].ports[0].containerPort));')
    # host network: the probe comes from this machine's loopback.
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port is already in use on this machine: cannot run the server pod on the host network"
    fi
    (cd "$WORK" && timeout 120 podman kube play serve-pod.yaml) >"$WORK/serve.log" 2>&1 \
        || die "podman kube play (serve) failed" "$(show "$WORK/serve.log" 15)"
    code=""
    for _ in $(seq 100); do
        code=$(curl -s -o "$WORK/healthz" -w '%{http_code}' "http://127.0.0.1:$port/healthz" 2>/dev/null)
        [ "$code" = 200 ] && break
        sleep 0.2
    done
    [ "$code" = 200 ] || die "GET /healthz on 127.0.0.1:$port: got '$code'" \
        "$(podman logs mlpipe-it-serve-mlpipe 2>&1 | tail -10)"
    say "GET /healthz: 200 $(head -c 200 "$WORK/healthz")"
    podman pod rm -f -t 5 mlpipe-it-serve >"$WORK/serve-rm.log" 2>&1   # (podman complains that no systemd runs its healthcheck timers)
    ok
fi

summary
if [ "$RUN_TESTS" != 1 ]; then
    echo "image-test: WARNING: the in-build 'make test' was skipped (MLPIPE_IMAGE_RUN_TESTS=$RUN_TESTS)"
fi
[ "$skipped" -gt 0 ] && echo "image-test: note: step 9 (serve) did not run: no serve command in this build"
[ "$failed" -eq 0 ]
