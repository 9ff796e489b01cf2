# The shipped Fashion-MNIST and RAND HIE pipelines, on small slices of the real
# data (the first 2,000 training and 500 test images) so each stays a few
# seconds under ASan too.  Needs the Debian package dataset-fashion-mnist
# (in the Makefile's DEB_PKGS).  The full-size runs are `make bench`.

FMNIST_SLICE=(--set load.limit=2000 --set load.test_limit=500)

have_fmnist() {
    [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
        || fail "Fashion-MNIST missing: apt-get install dataset-fashion-mnist"
}

# sql_between QUERY MIN MAX: numeric output within [MIN, MAX].
sql_between() {
    got=$(sqlite3 -batch "$DB" "$1" 2>&1)
    awk -v g="$got" -v lo="$2" -v hi="$3" 'BEGIN { exit !(g != "" && g + 0 >= lo + 0 && g + 0 <= hi + 0) }' \
        || fail "sql '$1': expected within [$2, $3], got '$got'"
}

finished_run() {    # $1 = pipeline name, $2 = stage count
    expect_exit 0 || return 1
    sql_eq "SELECT status, exit_code, pipeline FROM runs" "finished|0|$1" || return 1
    sql_eq "SELECT count(*) FROM stages WHERE status = 'finished'" "$2" || return 1
}

test_fmnist_logreg_pipeline() {
    have_fmnist || return 1
    run_ml validate pipelines/fashion-mnist-logreg.yaml
    expect_exit 0 || return 1
    # fewer, smaller steps than the full-size pipeline: 4 epochs of 32 batches
    run_ml run pipelines/fashion-mnist-logreg.yaml --db "$DB" "${FMNIST_SLICE[@]}" \
        --set train.epochs=4 --set train.batch_size=64
    finished_run fashion-mnist-logreg 4 || return 1
    sql_eq "SELECT value FROM metrics WHERE key = 'data.rows'" "2000.0" || return 1
    sql_eq "SELECT value FROM metrics WHERE key = 'data.test_rows'" "500.0" || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.accuracy'" 0.70 1 || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.log_loss'" 0 1.0 || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'train.loss' AND step IS NOT NULL" "4" || return 1
    # the loss goes down from the first epoch to the last
    sql_eq "SELECT (SELECT value FROM metrics WHERE key = 'train.loss' AND step = 4) <
                   (SELECT value FROM metrics WHERE key = 'train.loss' AND step = 1)" "1" || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key LIKE 'test.confusion_matrix.%'" "100" || return 1
    [ -s "$T/artifacts/fashion-mnist-logreg.mlpm" ] || fail "no model file" || return 1
}

test_fmnist_svm_pipeline() {
    have_fmnist || return 1
    run_ml validate pipelines/fashion-mnist-svm.yaml
    expect_exit 0 || return 1
    run_ml run pipelines/fashion-mnist-svm.yaml --db "$DB" "${FMNIST_SLICE[@]}"
    finished_run fashion-mnist-svm 4 || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.loss'" "squared_hinge" || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.accuracy'" 0.70 1 || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.f1_macro'" 0.65 1 || return 1
    [ -s "$T/artifacts/fashion-mnist-svm.mlpm" ] || fail "no model file" || return 1
}

test_fmnist_kmeans_pipeline() {
    have_fmnist || return 1
    run_ml validate pipelines/fashion-mnist-kmeans.yaml
    expect_exit 0 || return 1
    run_ml run pipelines/fashion-mnist-kmeans.yaml --db "$DB" "${FMNIST_SLICE[@]}"
    finished_run fashion-mnist-kmeans 4 || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.k'" "10" || return 1
    # 2,000 images of 784 pixels in [0, 1]: the squared distances to the
    # nearest of 10 centers sum to roughly 2,000 x 30.
    sql_between "SELECT value FROM metrics WHERE key = 'train.final_inertia' AND step IS NULL" \
        20000 100000 || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.inertia'" 5000 25000 || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.adjusted_rand'" 0.15 1 || return 1
    # Lloyd iterations never raise the inertia
    sql_eq "SELECT count(*) FROM metrics a JOIN metrics b ON b.key = a.key AND b.step = a.step + 1
            WHERE a.key = 'train.inertia' AND b.value > a.value * (1 + 1e-6)" "0" || return 1
}

test_randhie_linreg_pipeline() {
    run_ml validate pipelines/randhie-linreg.yaml
    expect_exit 0 || return 1
    run_ml run pipelines/randhie-linreg.yaml --db "$DB"
    finished_run randhie-linreg 6 || return 1
    sql_eq "SELECT value FROM metrics WHERE key = 'data.test_rows'" "4038.0" || return 1
    # visits are skewed counts: a linear model explains only a little
    sql_between "SELECT value FROM metrics WHERE key = 'test.r2'" 0.03 0.2 || return 1
    sql_between "SELECT value FROM metrics WHERE key = 'test.mse'" 5 40 || return 1
    sql_eq "SELECT abs((SELECT value FROM metrics WHERE key = 'test.rmse') -
                       sqrt((SELECT value FROM metrics WHERE key = 'test.mse'))) < 1e-6" "1" || return 1
    run_ml predict "$T/artifacts/randhie-linreg.mlpm" examples/data/randhie.csv
    expect_exit 0 || return 1
    [ "$(wc -l < "$T/out")" -eq 20191 ] || fail "expected 20191 prediction lines" || return 1
}
