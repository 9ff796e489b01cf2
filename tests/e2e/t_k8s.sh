# Kubernetes manifests (examples/k8s/) and the Dockerfile, checked offline:
# schemas, a TypeScript type check, API-server rules and the project's pod
# policy (tests/k8s/validate.js); every broken input in tests/k8s/broken/ must
# be rejected.  Needs Node.js and npm (npm ci into tests/k8s/node_modules on
# first use); fails with the reason when they are missing.

# k8s_setup: node_modules ready, or a failure that says why.
k8s_setup() {
    if [ -n "${MLPIPE_SKIP_K8S_VALIDATION:-}" ]; then
        echo "    skipped: MLPIPE_SKIP_K8S_VALIDATION=$MLPIPE_SKIP_K8S_VALIDATION" >&2
        return 2
    fi
    tests/k8s/npm-ci.sh >"$T/npm.log" 2>&1 && return 0
    echo "    FAIL: cannot set up tests/k8s:" >&2
    sed 's/^/    | /' "$T/npm.log" >&2
    return 1
}

test_k8s_manifests_and_dockerfile_validate() {
    k8s_setup; local rc=$?
    [ $rc -eq 2 ] && return 0
    [ $rc -eq 0 ] || return 1
    node tests/k8s/validate.js >"$T/validate.log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "    FAIL: tests/k8s/validate.js exited $rc:" >&2
        sed 's/^/    | /' "$T/validate.log" >&2
        return 1
    fi
    grep -q '^k8s: [0-9]* passed, 0 failed$' "$T/validate.log" \
        || fail "validate.js printed no closing line" || return 1
    # Every broken input was rejected for its stated reason.
    local nbroken nrejected
    nbroken=$(ls tests/k8s/broken/*.yaml tests/k8s/broken/*.Dockerfile | wc -l)
    nrejected=$(grep -c '^ok   tests/k8s/broken/.* rejected: ' "$T/validate.log")
    [ "$nbroken" -ge 5 ] && [ "$nrejected" -eq "$nbroken" ] \
        || fail "expected all $nbroken broken inputs rejected, saw $nrejected" || return 1
}

# The pipeline in the ConfigMap is valid for this mlpipe, and runs (with the
# data path pointed at the checkout instead of the image's /usr/share/mlpipe).
test_k8s_configmap_pipeline_runs() {
    k8s_setup; local rc=$?
    [ $rc -eq 2 ] && return 0
    [ $rc -eq 0 ] || return 1
    node -e '
        const yaml = require("./tests/k8s/node_modules/js-yaml");
        const fs = require("fs");
        const cm = yaml.loadAll(fs.readFileSync("examples/k8s/configmap.yaml", "utf8"))
            .find((d) => d && d.kind === "ConfigMap");
        process.stdout.write(cm.data["pipeline.yaml"]);
    ' >"$T/pipeline.yaml" || fail "no pipeline.yaml in examples/k8s/configmap.yaml" || return 1
    run_ml validate "$T/pipeline.yaml"
    expect_exit 0 || return 1
    grep -q '/usr/share/mlpipe/examples/data/iris.csv' "$T/pipeline.yaml" \
        || fail "the ConfigMap pipeline should read the image's copy of iris.csv" || return 1
    run_ml run "$T/pipeline.yaml" --db "$DB" --set load.path=examples/data/iris.csv
    expect_exit 0 || return 1
    sql_eq "SELECT status FROM runs" "finished" || return 1
    [ -f "$T/artifacts/iris-logreg.mlpm" ] || fail "no model in \$MLPIPE_ARTIFACTS" || return 1
}
