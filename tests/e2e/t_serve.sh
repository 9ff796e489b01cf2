# `mlpipe serve`: the real server on a free loopback port, driven with curl.
# Every request format must give the predictions of `mlpipe predict` on the
# same rows; errors must name the row and field; the server must survive bad
# requests, serve concurrent clients, and stop cleanly (exit 0, which under
# the ASan build also means no leak) on SIGTERM with a request in flight.
#
# Each test starts its own server with --port 0 and reads the port from the
# "serving ... on http://127.0.0.1:PORT" line; a trap stops it when the test's
# subshell ends, whatever happened.  Server logs go to $T/err, so a failure
# prints them.

# serve_train: a small iris model in $T/iris.mlpm (and the batch predictions
# of every iris row, with probabilities, in $T/batch.csv).
serve_train() {
    cat >"$T/iris.yaml" <<YAML
version: 1
name: iris-serve
stages:
  - load: csv
    path: examples/data/iris.csv
    target: species
  - transform: standardize
  - train: logistic_regression
    epochs: 60
  - export: model
    path: $T/iris.mlpm
YAML
    "$MLPIPE" -q run "$T/iris.yaml" --db "$DB" >/dev/null 2>"$T/train.err" \
        || { cat "$T/train.err" >&2; fail "training failed"; return 1; }
    "$MLPIPE" -q predict "$T/iris.mlpm" examples/data/iris.csv --proba -o "$T/batch.csv" \
        || fail "batch predict failed" || return 1
}

# serve_start MODEL [OPTIONS...]: starts the server; sets SERVER_PID and URL.
serve_start() {
    "$MLPIPE" serve "$@" --port 0 >"$T/serve.out" 2>"$T/err" &
    SERVER_PID=$!
    trap 'kill -KILL $SERVER_PID 2>/dev/null' EXIT
    local port="" i
    for i in $(seq 200); do         # up to 20 s: the ASan build starts slowly
        port=$(sed -n 's|.*serving .* on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$T/err")
        [ -n "$port" ] && break
        kill -0 $SERVER_PID 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || fail "the server did not start" || return 1
    URL="http://127.0.0.1:$port"
}

# serve_stop [SIGNAL]: signals the server (TERM) and expects exit code 0.
serve_stop() {
    kill -"${1:-TERM}" $SERVER_PID
    wait $SERVER_PID
    local rc=$?
    trap - EXIT
    [ $rc -eq 0 ] || fail "the server exited with $rc after SIG${1:-TERM}" || return 1
}

# req METHOD PATH [CONTENT-TYPE BODY-FILE] [CURL-OPTIONS...]: sends a request;
# CODE gets the status, $T/body the response body, $T/headers its headers.
req() {
    local method=$1 path=$2
    shift 2
    local args=()
    if [ $# -ge 2 ] && [ "${1#-}" = "$1" ]; then
        args=(-H "Content-Type: $1" --data-binary "@$2")
        shift 2
    fi
    CODE=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$method" "${args[@]}" \
           "$@" "$URL$path")
}

# post_json PATH JSON: POSTs a JSON text given inline.
post_json() {
    printf '%s' "$2" >"$T/req.json"
    req POST "$1" application/json "$T/req.json"
}

expect_code() {
    [ "$CODE" = "$1" ] || fail "expected HTTP $1, got $CODE: $(head -c 300 "$T/body")"
}

expect_body() {     # fixed-string match on the response body
    grep -qF -- "$1" "$T/body" || fail "response lacks: $1 (got: $(head -c 300 "$T/body"))"
}

# The "predictions" array of a response, one per line, quotes removed.
predictions() { sed 's/^{"predictions": \[\([^]]*\)\].*/\1/' "$T/body" | sed 's/, /\n/g' | tr -d '"'; }

# The iris rows (no CRLF) as JSON arrays "[5.1, 3.5, 1.4, 0.2]", one per line.
iris_rows() { tail -n +2 examples/data/iris.csv | tr -d '\r' | awk -F, '{ printf "[%s, %s, %s, %s]\n", $1, $2, $3, $4 }'; }

test_serve_request_formats() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" || return 1
    tail -n +2 "$T/batch.csv" | cut -d, -f1 >"$T/want"
    local f
    # instances: rows as arrays in feature order
    printf '{"instances": [%s]}' "$(iris_rows | paste -sd, -)" >"$T/instances.json"
    # inputs: the same, and as columns
    sed 's/"instances"/"inputs"/' "$T/instances.json" >"$T/inputs.json"
    tail -n +2 examples/data/iris.csv | tr -d '\r' | awk -F, '
        { for (j = 1; j <= 4; j++) col[j] = col[j] (NR > 1 ? ", " : "") $j }
        END { printf "{\"inputs\": {\"petal_width\": [%s], \"sepal_length\": [%s], \"sepal_width\": [%s], \"petal_length\": [%s]}}", col[4], col[1], col[2], col[3] }' \
        >"$T/columns.json"
    # dataframe_split: columns in another order, and an index
    tail -n +2 examples/data/iris.csv | tr -d '\r' | awk -F, '
        { rows = rows (NR > 1 ? ", " : "") "[" $4 ", " $3 ", " $1 ", " $2 "]"; idx = idx (NR > 1 ? ", " : "") NR - 1 }
        END { printf "{\"dataframe_split\": {\"index\": [%s], \"columns\": [\"petal_width\", \"petal_length\", \"sepal_length\", \"sepal_width\"], \"data\": [%s]}}", idx, rows }' \
        >"$T/split.json"
    # dataframe_records: objects by name
    tail -n +2 examples/data/iris.csv | tr -d '\r' | awk -F, '
        { r = r (NR > 1 ? ", " : "") sprintf("{\"sepal_width\": %s, \"petal_length\": %s, \"petal_width\": %s, \"sepal_length\": %s}", $2, $3, $4, $1) }
        END { printf "{\"dataframe_records\": [%s]}", r }' >"$T/records.json"
    for f in instances inputs columns split records; do
        req POST /predict application/json "$T/$f.json"
        expect_code 200 || return 1
        predictions >"$T/got"
        diff -q "$T/got" "$T/want" >/dev/null || fail "$f: predictions differ from mlpipe predict" || return 1
    done
    # /invocations is the same endpoint (MLflow's name), and charset is allowed
    req POST /invocations "application/json; charset=utf-8" "$T/instances.json"
    expect_code 200 || return 1
    predictions | diff -q - "$T/want" >/dev/null || fail "/invocations differs" || return 1
    # CSV with a header row: the batch input file itself (CRLF, target column)
    req POST /predict text/csv examples/data/iris.csv
    expect_code 200 || return 1
    predictions | diff -q - "$T/want" >/dev/null || fail "text/csv: predictions differ" || return 1
}

test_serve_proba() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" || return 1
    printf '{"instances": [%s]}' "$(iris_rows | paste -sd, -)" >"$T/rows.json"
    req POST "/predict?proba=true" application/json "$T/rows.json"
    expect_code 200 || return 1
    expect_body '"classes": ["setosa", "versicolor", "virginica"], "probabilities": [[' || return 1
    # the probabilities are the batch ones, digit for digit
    sed 's/.*"probabilities": \[\[//; s/\]\]}$//; s/\], \[/\n/g; s/, /,/g' "$T/body" >"$T/got"
    tail -n +2 "$T/batch.csv" | cut -d, -f2- >"$T/want"
    diff -q "$T/got" "$T/want" >/dev/null || fail "probabilities differ from mlpipe predict --proba" || return 1
    req POST "/predict?proba=false" application/json "$T/rows.json"
    expect_code 200 || return 1
    grep -q probabilities "$T/body" && fail "proba=false gave probabilities" && return 1
    req POST "/predict?proba=maybe" application/json "$T/rows.json"
    expect_code 400 || return 1
    expect_body "proba must be true or false, not 'maybe'" || return 1
}

test_serve_health_metadata_metrics() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" || return 1
    req GET /healthz
    expect_code 200 || return 1
    [ "$(cat "$T/body")" = '{"status": "ok"}' ] || fail "healthz body: $(cat "$T/body")" || return 1
    req HEAD /healthz -I
    expect_code 200 || return 1
    req GET /metadata
    expect_code 200 || return 1
    expect_body '"algorithm": "logistic_regression", "task": "classification", "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "classes": ["setosa", "versicolor", "virginica"], "target": "species"' || return 1
    expect_body "\"sha256\": \"$(sha256sum "$T/iris.mlpm" | cut -d' ' -f1)\"" || return 1
    expect_body '"pipeline": "iris-serve"' || return 1
    expect_body "\"mlpipe_version\": \"$("$MLPIPE" version | cut -d' ' -f2)\"" || return 1
    expect_body '"run_id": "1"' || return 1
    # the counters move: 3 good requests of 2 rows, one bad
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
    post_json /invocations '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
    post_json /predict '{"instances": [[5.1, 3.5, 1.4]]}'
    req GET /metrics
    expect_code 200 || return 1
    grep -q '^Content-Type: text/plain; version=0.0.4' "$T/headers" || fail "metrics content type" || return 1
    local line
    for line in 'mlpipe_requests_total{path="/predict",status="200"} 2' \
                'mlpipe_requests_total{path="/invocations",status="200"} 1' \
                'mlpipe_requests_total{path="/predict",status="400"} 1' \
                'mlpipe_requests_total{path="/healthz",status="200"} 2' \
                'mlpipe_requests_total{path="/metadata",status="200"} 1' \
                'mlpipe_request_duration_seconds_count{path="/predict"} 3' \
                'mlpipe_request_duration_seconds_bucket{path="/predict",le="+Inf"} 3' \
                'mlpipe_rows_predicted_total 6' \
                '# TYPE mlpipe_request_duration_seconds histogram'; do
        grep -qxF -- "$line" "$T/body" || fail "metrics lack: $line" || return 1
    done
    grep -q '^mlpipe_request_duration_seconds_sum{path="/predict"} [0-9.]*$' "$T/body" \
        || fail "no latency sum" || return 1
    # one access log line per request
    grep -qF 'serve: method=POST path=/predict status=200 rows=2 us=' "$T/err" || fail "no access log line" || return 1
    grep -qF 'serve: method=POST path=/predict status=400 rows=0 us=' "$T/err" || fail "no access log line for the 400" || return 1
    serve_stop || return 1
}

test_serve_errors() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" --max-body 1k || return 1
    # 400: the row and field are named
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4]]}'
    expect_code 400 || return 1
    [ "$(cat "$T/body")" = '{"error": "row 3: expected 4 features, got 3"}' ] \
        || fail "body: $(cat "$T/body")" || return 1
    grep -q '^Content-Type: application/json' "$T/headers" || fail "error content type" || return 1
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, "wide", 1.4, 0.2]]}'
    expect_code 400 || return 1
    expect_body "row 2, field 'sepal_width': not a number" || return 1
    post_json /predict '{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width", "colour"], "data": [[5.1, 3.5, 1.4, 0.2, 1]]}}'
    expect_code 400 || return 1
    expect_body "unknown column 'colour'" || return 1
    post_json /predict '{"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]}'
    expect_code 400 || return 1
    expect_body "row 1: missing feature 'petal_width'" || return 1
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2],
  [5.1, 3.5 1.4, 0.2]]}'
    expect_code 400 || return 1
    expect_body "malformed JSON at line 2, column 15 (position 52): ']' expected near '1.4'" || return 1
    post_json /predict '{"rows": []}'
    expect_code 400 || return 1
    expect_body "unknown key 'rows'" || return 1
    printf 'sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n5.1,3.5,?,0.2\n' >"$T/bad.csv"
    req POST /predict text/csv "$T/bad.csv"
    expect_code 400 || return 1
    expect_body "row 2, field 'petal_length': not a number" || return 1
    # 413: a declared length over --max-body is refused before it is read, a
    # chunked body (no length) once it passes the limit
    head -c 2000 /dev/zero | tr '\0' ' ' >"$T/big.json"
    req POST /predict application/json "$T/big.json"
    expect_code 413 || return 1
    expect_body "request body of 2000 bytes is over the limit of 1024 bytes (--max-body)" || return 1
    req POST /predict application/json "$T/big.json" -H "Transfer-Encoding: chunked"
    expect_code 413 || return 1
    expect_body "request body is over the limit of 1024 bytes" || return 1
    # 415: other or no content types
    req POST /predict text/plain "$T/bad.csv"
    expect_code 415 || return 1
    expect_body "Content-Type must be application/json or text/csv, not 'text/plain'" || return 1
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X POST --data-binary @"$T/bad.csv" \
           -H "Content-Type:" "$URL/predict")
    expect_code 415 || return 1
    # 404 and 405 (with Allow)
    req GET /nope
    expect_code 404 || return 1
    expect_body "no such path '/nope'" || return 1
    req GET /predict
    expect_code 405 || return 1
    grep -q '^Allow: POST' "$T/headers" || fail "405 without 'Allow: POST'" || return 1
    req POST /healthz application/json "$T/req.json"
    expect_code 405 || return 1
    grep -q '^Allow: GET, HEAD' "$T/headers" || fail "405 without 'Allow: GET, HEAD'" || return 1
    # still serving, and the error bodies were all JSON objects
    post_json /predict '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    expect_code 200 || return 1
    [ "$(cat "$T/body")" = '{"predictions": ["setosa"]}' ] || fail "body: $(cat "$T/body")" || return 1
    serve_stop || return 1      # exit 0: under ASan, no leak either
}

test_serve_concurrent_clients() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" --threads 4 || return 1
    printf '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}' >"$T/rows.json"
    printf 'sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n' >"$T/rows.csv"
    # 8 clients at once, each one curl sending 50 requests in a row on one
    # connection (a curl config of 50 transfers); odd clients send CSV
    local c i
    for c in 1 2 3 4 5 6 7 8; do
        for i in $(seq 50); do
            [ "$i" -gt 1 ] && printf 'next\n'
            if [ $((c % 2)) -eq 0 ]; then
                printf 'url = "%s/predict"\nheader = "Content-Type: application/json"\n' "$URL"
                printf 'data-binary = "@%s"\n' "$T/rows.json"
            else
                printf 'url = "%s/invocations"\nheader = "Content-Type: text/csv"\n' "$URL"
                printf 'data-binary = "@%s"\n' "$T/rows.csv"
            fi
            printf 'silent\nwrite-out = "%%{http_code}\\n"\n'
        done >"$T/client.$c"
        curl -K "$T/client.$c" >"$T/codes.$c" 2>&1 &
    done
    wait $(jobs -p | grep -v "^$SERVER_PID$")
    # each response is the body line, then the status line
    local bodies
    bodies=$(cat "$T"/codes.* | grep -cxF '{"predictions": ["setosa", "virginica"]}')
    [ "$bodies" -eq 400 ] || fail "expected 400 right bodies, got $bodies" || return 1
    sed -i '/^{/d' "$T"/codes.*
    local codes
    codes=$(cat "$T"/codes.* | sort | uniq -c | awk '{ print $1 "x" $2 }' | tr '\n' ' ')
    [ "$codes" = "400x200 " ] || fail "expected 400 responses of 200, got: $codes" || return 1
    req GET /metrics
    grep -qxF 'mlpipe_rows_predicted_total 800' "$T/body" || fail "rows counter: $(grep rows_predicted "$T/body")" || return 1
    serve_stop || return 1
}

test_serve_sigterm_finishes_request_in_flight() {
    serve_train || return 1
    serve_start "$T/iris.mlpm" || return 1
    # a 12 kB request uploaded at 4 kB/s is in flight for about 3 s
    printf '{"instances": [%s]}' "$(for i in 1 2 3 4 5 6; do iris_rows; done | head -400 | paste -sd, -)" >"$T/slow.json"
    curl -s -o "$T/slow.body" -w '%{http_code}' --limit-rate 4k -H "Content-Type: application/json" \
        --data-binary @"$T/slow.json" "$URL/predict" >"$T/slow.code" &
    local slow=$!
    sleep 1
    kill -TERM $SERVER_PID
    sleep 0.5
    # no longer accepting connections
    curl -s -o /dev/null --max-time 2 "$URL/healthz" && fail "accepted a connection after SIGTERM" && return 1
    wait $slow
    [ "$(cat "$T/slow.code")" = 200 ] || fail "request in flight got '$(cat "$T/slow.code")'" || return 1
    [ "$(grep -o '"setosa"\|"versicolor"\|"virginica"' "$T/slow.body" | wc -l)" -eq 400 ] \
        || fail "request in flight: $(head -c 200 "$T/slow.body")" || return 1
    wait $SERVER_PID
    local rc=$?
    trap - EXIT
    [ $rc -eq 0 ] || fail "exit $rc after SIGTERM" || return 1
    expect_err "serve: SIGTERM: stopping; 1 request in flight" || return 1
    expect_err "serve: stopped" || return 1
    # SIGINT (Ctrl-C) stops it the same way
    serve_start "$T/iris.mlpm" || return 1
    serve_stop INT || return 1
}

test_serve_options_and_startup_errors() {
    serve_train || return 1
    local m="$T/iris.mlpm"
    run_ml serve "$m" --port abc
    expect_exit 2 || return 1
    expect_err "--port must be a number, not 'abc'" || return 1
    run_ml serve "$m" --port 70000
    expect_exit 2 || return 1
    expect_err "--port must be 0 to 65535, not 70000" || return 1
    run_ml serve "$m" --threads 0
    expect_exit 2 || return 1
    run_ml serve "$m" --threads 65
    expect_exit 2 || return 1
    expect_err "--threads must be 1 to 64, not 65" || return 1
    run_ml serve "$m" --max-body 0
    expect_exit 2 || return 1
    run_ml serve "$m" --host no.such.host.invalid
    expect_exit 2 || return 1
    expect_err "--host 'no.such.host.invalid'" || return 1
    run_ml serve "$T/none.mlpm"
    expect_exit 1 || return 1
    expect_err "none.mlpm" || return 1
    run_ml serve
    expect_exit 2 || return 1
    # a port in use is an error naming it
    serve_start "$m" || return 1
    local port=${URL##*:}
    "$MLPIPE" serve "$m" --port "$port" >/dev/null 2>"$T/err2"
    [ $? -eq 1 ] || fail "second server on port $port did not fail with 1" || return 1
    grep -qF "cannot listen on 127.0.0.1 port $port" "$T/err2" || fail "$(cat "$T/err2")" || return 1
    serve_stop || return 1
}

test_serve_regression_and_json_logs() {
    cat >"$T/reg.yaml" <<YAML
version: 1
name: reg-serve
stages:
  - load: csv
    path: examples/data/randhie.csv
    target: mdvis
  - transform: standardize
  - train: linear_regression
  - export: model
    path: $T/reg.mlpm
YAML
    "$MLPIPE" -q run "$T/reg.yaml" --db "$DB" >/dev/null 2>&1 || fail "training failed" || return 1
    head -201 examples/data/randhie.csv >"$T/rows.csv"
    "$MLPIPE" -q predict "$T/reg.mlpm" "$T/rows.csv" -o "$T/batch.csv" || fail "predict failed" || return 1
    serve_start "$T/reg.mlpm" --log-format json || return 1
    req POST /predict text/csv "$T/rows.csv"
    expect_code 200 || return 1
    predictions | diff -q - <(tail -n +2 "$T/batch.csv") >/dev/null \
        || fail "regression values differ from mlpipe predict" || return 1
    req POST "/predict?proba=true" text/csv "$T/rows.csv"
    expect_code 400 || return 1
    expect_body "does not give class probabilities" || return 1
    req GET /metadata
    expect_body '"task": "regression"' || return 1
    expect_body '"classes": null' || return 1
    # the access log is JSON lines
    grep -q '^{.*"level": *"info".*"msg": *"serve: method=POST path=/predict status=200 rows=200 us=[0-9]*"' "$T/err" \
        || fail "no JSON access log line" || return 1
    serve_stop || return 1
}

# A k-means model: predictions are the cluster ids of `mlpipe predict`, as
# JSON integers, from CSV and JSON bodies alike; proba=true is a 400 that
# says why; /metadata names the task.
test_serve_kmeans() {
    cat >"$T/km.yaml" <<YAML
version: 1
name: km-serve
stages:
  - load: csv
    path: examples/data/iris.csv
    target: species
  - transform: standardize
  - train: kmeans
    k: 3
  - export: model
    path: $T/km.mlpm
YAML
    "$MLPIPE" -q run "$T/km.yaml" --db "$DB" >/dev/null 2>&1 || fail "training failed" || return 1
    "$MLPIPE" -q predict "$T/km.mlpm" examples/data/iris.csv -o "$T/batch.csv" \
        || fail "predict failed" || return 1
    tail -n +2 "$T/batch.csv" >"$T/want"
    [ "$(sort -u "$T/want" | tr '\n' ' ')" = "0 1 2 " ] || fail "batch ids: $(sort -u "$T/want")" || return 1
    serve_start "$T/km.mlpm" || return 1
    req POST /predict text/csv examples/data/iris.csv
    expect_code 200 || return 1
    grep -qE '^\{"predictions": \[[0-9]+(, [0-9]+)*\]\}$' "$T/body" \
        || fail "cluster ids are not JSON integers: $(head -c 200 "$T/body")" || return 1
    predictions | diff -q - "$T/want" >/dev/null || fail "text/csv: ids differ from mlpipe predict" || return 1
    printf '{"instances": [%s]}' "$(iris_rows | paste -sd, -)" >"$T/rows.json"
    req POST /invocations application/json "$T/rows.json"
    expect_code 200 || return 1
    predictions | diff -q - "$T/want" >/dev/null || fail "instances: ids differ from mlpipe predict" || return 1
    post_json /predict '{"dataframe_records": [{"petal_width": 0.2, "petal_length": 1.4, "sepal_width": 3.5, "sepal_length": 5.1}]}'
    expect_code 200 || return 1
    [ "$(cat "$T/body")" = "{\"predictions\": [$(head -1 "$T/want")]}" ] \
        || fail "one row by name: $(cat "$T/body")" || return 1
    req POST "/predict?proba=true" application/json "$T/rows.json"
    expect_code 400 || return 1
    expect_body "proba=true: this model (kmeans) is a clustering model: it predicts cluster ids, not class probabilities" || return 1
    req GET /metadata
    expect_code 200 || return 1
    expect_body '"algorithm": "kmeans", "task": "clustering"' || return 1
    expect_body '"classes": null' || return 1
    req GET /metrics
    grep -q '^mlpipe_rows_predicted_total 301$' "$T/body" \
        || fail "rows predicted: $(grep rows_predicted "$T/body")" || return 1
    serve_stop || return 1
}
