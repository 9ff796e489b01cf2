# train: mlp through the real binary: a slice of the real Fashion-MNIST with
# the shipped pipeline, validation rows, a config error, and task: regression
# on a numeric target (which the executor first encodes as classes).

FMNIST=/usr/share/datasets/fashion-mnist

# have_fmnist: true when the Debian package dataset-fashion-mnist is installed.
have_fmnist() {
    [ -f "$FMNIST/train-images-idx3-ubyte.gz" ] && [ -f "$FMNIST/t10k-labels-idx1-ubyte.gz" ] \
        || { echo "    skip: no Fashion-MNIST under $FMNIST (apt-get install dataset-fashion-mnist)" >&2; return 1; }
}

# The shipped Keras-example pipeline on 3,000 training and 500 test images, 2 epochs.
test_mlp_fashion_mnist_slice() {
    have_fmnist || return 0
    run_ml run pipelines/fashion-mnist-mlp.yaml --db "$DB" --set load.limit=3000 \
        --set load.test_limit=500 --set train.epochs=2
    expect_exit 0 || return 1
    sql_eq "SELECT status, exit_code, pipeline FROM runs" "finished|0|fashion-mnist-mlp" || return 1
    sql_eq "SELECT group_concat(step) FROM (SELECT step FROM metrics WHERE key = 'train.loss' ORDER BY step)" \
        "1,2" || return 1
    sql_eq "SELECT group_concat(step) FROM (SELECT step FROM metrics WHERE key = 'train.accuracy' ORDER BY step)" \
        "1,2" || return 1
    sql_eq "SELECT (SELECT value FROM metrics WHERE key = 'train.loss' AND step = 2) <
                   (SELECT value FROM metrics WHERE key = 'train.loss' AND step = 1)" "1" || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key LIKE 'val.%'" "0" || return 1
    # 3,000 images for 2 epochs give ~0.8; chance is 0.1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.accuracy'" 0.7 || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.f1_macro'" 0.65 || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key LIKE 'test.confusion_matrix.%'" "100" || return 1
    sql_eq "SELECT count(*) FROM stages WHERE status = 'finished'" "4" || return 1
    expect_err "mlp: epoch 1/2 loss " || return 1
    expect_err "mlp: epoch 2/2 loss " || return 1
    local model="$T/artifacts/fashion-mnist-mlp.mlpm"
    [ -f "$model" ] || fail "no model file at $model" || return 1
    grep -q '^algorithm s 1 mlp$' "$model" || fail "model file does not name algorithm mlp" || return 1
    grep -q '^model.sizes d 3 784 512 10$' "$model" || fail "model file lacks the layer sizes" || return 1
    sql_eq "SELECT sha256 FROM artifacts" "$(sha256sum "$model" | cut -d' ' -f1)" || return 1
}

# validation_split: val.loss and val.accuracy per epoch; patience stops at most early.
test_mlp_validation_rows() {
    have_fmnist || return 0
    run_ml run pipelines/fashion-mnist-mlp.yaml --db "$DB" --set load.limit=1000 \
        --set load.test_limit=200 --set train.epochs=3 --set train.hidden='[64]' \
        --set train.validation_split=0.2 --set train.patience=2
    expect_exit 0 || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'val.loss'" \
        "$(sqlite3 -batch "$DB" "SELECT count(*) FROM metrics WHERE key = 'train.loss'")" || return 1
    sql_ge "SELECT count(*) FROM metrics WHERE key = 'val.accuracy'" 1 || return 1
    expect_err " val_loss " || return 1
    expect_err " val_acc " || return 1
}

test_mlp_config_errors() {
    run_ml run pipelines/fashion-mnist-mlp.yaml --db "$DB" --set train.patience=3
    expect_exit 2 || return 1
    expect_err "patience needs validation rows" || return 1
    run_ml run pipelines/fashion-mnist-mlp.yaml --db "$DB" --set train.hidden='[512, 0]'
    expect_exit 2 || return 1
    run_ml run pipelines/fashion-mnist-mlp.yaml --db "$DB" --set train.activation=softplus
    expect_exit 2 || return 1
    expect_err "expected one of relu, tanh, sigmoid" || return 1
}

# task: regression on a numeric target: the executor encodes it as classes
# after loading (mlp is a classifier in its table); the stage turns them back
# into numbers, so evaluate: regression scores the real values.
test_mlp_regression_numeric_target() {
    write_yaml reg.yaml <<'EOF'
version: 1
name: randhie-mlp
seed: 3
stages:
  - load: csv
    path: examples/data/randhie.csv
    target: mdvis
  - split: holdout
    test_size: 0.2
  - transform: standardize
  - train: mlp
    task: regression
    hidden: [16]
    learning_rate: 0.01
    batch_size: 64
    epochs: 3
  - evaluate: regression
    metrics: [mse, r2]
  - export: model
    path: ${MLPIPE_ARTIFACTS}/randhie-mlp.mlpm
EOF
    run_ml run "$T/reg.yaml" --db "$DB"
    expect_exit 0 || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'train.loss'" "3" || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'train.accuracy'" "0" || return 1
    # doctor visits are hard to predict from these covariates: r2 is small but
    # positive, and the MSE is below the variance of mdvis (~20)
    sql_ge "SELECT value FROM metrics WHERE key = 'test.r2'" 0.0 || return 1
    sql_eq "SELECT value < 20 FROM metrics WHERE key = 'test.mse'" "1" || return 1
    local model="$T/artifacts/randhie-mlp.mlpm"
    grep -q '^model.output s 1 linear$' "$model" || fail "model output is not linear" || return 1
    grep -q '^classes ' "$model" && { fail "a regression model lists classes"; return 1; }
    run_ml predict "$model" examples/data/randhie.csv -o "$T/pred.csv"
    expect_exit 0 || return 1
    [ "$(wc -l < "$T/pred.csv")" -eq 20191 ] || fail "expected 20191 prediction lines" || return 1
}
