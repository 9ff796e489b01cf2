# Batch prediction: output formats (csv, jsonl), --proba, stdin/stdout, and
# every model kind (classifier names, regression values; clustering below).

# predict_train NAME YAML-STAGES: trains a small pipeline into $T/NAME.mlpm.
predict_train() {
    cat >"$T/$1.yaml" <<YAML
version: 1
name: $1
stages:
$2
  - export: model
    path: $T/$1.mlpm
YAML
    "$MLPIPE" -q run "$T/$1.yaml" --db "$DB" >/dev/null 2>"$T/train.err" \
        || { cat "$T/train.err" >&2; fail "training '$1' failed"; return 1; }
}

predict_train_iris() {
    predict_train iris "  - load: csv
    path: examples/data/iris.csv
    target: species
  - transform: standardize
  - train: logistic_regression
    epochs: 60"
}

# The prediction column of CSV output, without the header.
csv_predictions() { tail -n +2 "$1" | cut -d, -f1; }

test_predict_jsonl() {
    predict_train_iris || return 1
    local m="$T/iris.mlpm"
    run_ml predict "$m" examples/data/iris.csv -o "$T/pred.csv"
    expect_exit 0 || return 1
    run_ml predict "$m" examples/data/iris.csv --format jsonl
    expect_exit 0 || return 1
    [ "$(wc -l < "$T/out")" -eq 150 ] || fail "expected 150 JSON lines" || return 1
    [ "$(head -1 "$T/out")" = '{"prediction": "setosa"}' ] \
        || fail "first line: $(head -1 "$T/out")" || return 1
    # the same predictions as the CSV output, row for row
    diff <(sed 's/^{"prediction": "\(.*\)"}$/\1/' "$T/out") <(csv_predictions "$T/pred.csv") \
        >/dev/null || fail "jsonl and csv predictions differ" || return 1
    # --format csv is the default
    run_ml predict "$m" examples/data/iris.csv --format csv
    cmp -s "$T/out" "$T/pred.csv" || fail "--format csv differs from the default" || return 1
}

test_predict_jsonl_proba() {
    predict_train_iris || return 1
    local m="$T/iris.mlpm"
    run_ml predict "$m" examples/data/iris.csv --proba -o "$T/proba.csv"
    expect_exit 0 || return 1
    run_ml predict "$m" examples/data/iris.csv --proba --format jsonl -o "$T/proba.jsonl"
    expect_exit 0 || return 1
    local re='^\{"prediction": "(setosa|versicolor|virginica)", "probabilities": \{"setosa": [0-9.e+-]+, "versicolor": [0-9.e+-]+, "virginica": [0-9.e+-]+\}\}$'
    [ "$(grep -cE "$re" "$T/proba.jsonl")" -eq 150 ] \
        || fail "lines not of the form {prediction, probabilities}: $(grep -vE "$re" "$T/proba.jsonl" | head -1)" \
        || return 1
    # the same numbers, digit for digit, as the CSV probability columns
    diff <(sed 's/.*"setosa": \([^,]*\), "versicolor": \([^,]*\), "virginica": \([^}]*\)}}/\1,\2,\3/' \
            "$T/proba.jsonl") <(tail -n +2 "$T/proba.csv" | cut -d, -f2-) >/dev/null \
        || fail "jsonl and csv probabilities differ" || return 1
    # each row's probabilities sum to 1
    awk -F, 'NR > 1 { s = $2 + $3 + $4; if (s < 0.9999 || s > 1.0001) bad++ } END { exit bad > 0 }' \
        "$T/proba.csv" || fail "probabilities do not sum to 1" || return 1
}

test_predict_stdin_stdout() {
    predict_train_iris || return 1
    local m="$T/iris.mlpm"
    run_ml predict "$m" examples/data/iris.csv --proba --format jsonl -o "$T/file.jsonl"
    "$MLPIPE" predict "$m" - --proba --format jsonl -o - < examples/data/iris.csv >"$T/out" 2>"$T/err"
    RC=$?
    expect_exit 0 || return 1
    cmp -s "$T/out" "$T/file.jsonl" || fail "stdin -> stdout differs from file -> file" || return 1
    # piped in from another command, with the columns in another order
    cut -d, -f4,1,3,2 examples/data/iris.csv | awk -F, -v OFS=, '{ print $4, $1, $3, $2 }' \
        | "$MLPIPE" predict "$m" - --proba --format jsonl >"$T/out" 2>"$T/err"
    cmp -s "$T/out" "$T/file.jsonl" || fail "reordered columns on stdin changed predictions" || return 1
}

test_predict_errors() {
    predict_train_iris || return 1
    local m="$T/iris.mlpm"
    run_ml predict "$m" examples/data/iris.csv --format xml
    expect_exit 2 || return 1
    expect_err "--format must be csv or jsonl, not 'xml'" || return 1
    # a bad row is named by file:line:column; nothing is written
    printf 'sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n4.9,abc,1.4,0.2\n' >"$T/bad.csv"
    run_ml predict "$m" "$T/bad.csv" --format jsonl -o "$T/never.jsonl"
    expect_exit 1 || return 1
    expect_err "$T/bad.csv:3:2: non-numeric value 'abc' in column 'sepal_width'" || return 1
    [ ! -e "$T/never.jsonl" ] || fail "output written for bad input" || return 1
    # a missing feature column is named
    cut -d, -f1,2,3 examples/data/iris.csv >"$T/short.csv"
    run_ml predict "$m" "$T/short.csv"
    expect_exit 1 || return 1
    expect_err "petal_width" || return 1
}

test_predict_regression() {
    predict_train reg "  - load: csv
    path: examples/data/randhie.csv
    target: mdvis
  - transform: standardize
  - train: linear_regression" || return 1
    local m="$T/reg.mlpm"
    run_ml predict "$m" examples/data/randhie.csv -o "$T/reg.csv"
    expect_exit 0 || return 1
    [ "$(head -1 "$T/reg.csv")" = "prediction" ] || fail "header: $(head -1 "$T/reg.csv")" || return 1
    [ "$(wc -l < "$T/reg.csv")" -eq "$(wc -l < examples/data/randhie.csv)" ] \
        || fail "one line per row expected" || return 1
    # values are numbers (%.9g), and the same in JSON lines
    tail -n +2 "$T/reg.csv" | grep -qvE '^-?[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?$' \
        && fail "not a number: $(tail -n +2 "$T/reg.csv" | grep -vE '^-?[0-9.e+-]+$' | head -1)" && return 1
    run_ml predict "$m" examples/data/randhie.csv --format jsonl
    expect_exit 0 || return 1
    diff <(sed 's/^{"prediction": \(.*\)}$/\1/' "$T/out") <(tail -n +2 "$T/reg.csv") >/dev/null \
        || fail "jsonl values differ from csv values" || return 1
    # no probabilities for a regressor: a usage error, before reading anything
    run_ml predict "$m" examples/data/randhie.csv --proba
    expect_exit 2 || return 1
    expect_err "--proba: model '$m' (linear_regression) does not give class probabilities" || return 1
}

# Clustering: cluster ids as integers, in CSV and JSON lines; the rows of a
# file in another column order get the same ids; --proba is a usage error
# (k-means gives no probabilities).
test_predict_kmeans() {
    predict_train km "  - load: csv
    path: examples/data/iris.csv
    exclude: [species]
  - train: kmeans
    k: 3" || return 1
    run_ml predict "$T/km.mlpm" examples/data/iris.csv -o "$T/km.csv"
    expect_exit 0 || return 1
    [ "$(tail -n +2 "$T/km.csv" | sort -u | tr '\n' ' ')" = "0 1 2 " ] \
        || fail "cluster ids are not the integers 0 1 2" || return 1
    run_ml predict "$T/km.mlpm" examples/data/iris.csv --format jsonl
    [ "$(sort -u "$T/out" | tr '\n' ' ')" = '{"prediction": 0} {"prediction": 1} {"prediction": 2} ' ] \
        || fail "jsonl cluster ids: $(sort -u "$T/out" | head -3)" || return 1
    diff <(sed 's/^{"prediction": \(.*\)}$/\1/' "$T/out") <(tail -n +2 "$T/km.csv") >/dev/null \
        || fail "jsonl and csv cluster ids differ" || return 1
    # iris is three species: the clusters follow them (setosa is one cluster alone)
    [ "$(tail -n +2 examples/data/iris.csv | cut -d, -f5 | tr -d '\r' | paste -d' ' - <(tail -n +2 "$T/km.csv") \
        | sort -u | grep -c '^setosa ')" -eq 1 ] || fail "setosa is split over clusters" || return 1
    # columns in another order, the target dropped, from stdin
    cut -d, -f1-4 examples/data/iris.csv | awk -F, -v OFS=, '{ print $3, $1, $4, $2 }' \
        | "$MLPIPE" predict "$T/km.mlpm" - >"$T/out" 2>"$T/err"
    cmp -s "$T/out" "$T/km.csv" || fail "reordered columns changed the cluster ids" || return 1
    # no probabilities for a clustering model: a usage error that says why
    run_ml predict "$T/km.mlpm" examples/data/iris.csv --proba
    expect_exit 2 || return 1
    expect_err "--proba: model '$T/km.mlpm' (kmeans) is a clustering model: it predicts cluster ids, not class probabilities" || return 1
}
