#!/usr/bin/python3
"""Prepares the benchmark data once, into DATA_DIR (argv[1]).

  fmnist-train.csv      Fashion-MNIST training set as CSV: header label,p0..p783,
                        then 60,000 rows of the label and pixel/255 printed with
                        %.6g (about 255 MB): the CSV-load workload.
  fmnist-train.svm      the same rows in libsvm format (1-based indices, zero
  fmnist-test.svm       pixels left out), for liblinear; test set likewise.
  linreg.csv            synthetic regression: 1,250,000 rows of x0..x99,y.  The
                        first 1,000,000 rows are the training rows, the last
                        250,000 the test rows (mlpipe: `split: holdout` with
                        test_size 0.2 and shuffle false takes exactly those).
  linreg.npz            the same numbers for numpy: X as integers (x = X / 1000)
                        and y as integers (y = Y / 10000), so both sides read
                        identical values.

The synthetic data: x_ij uniform on {0, 0.001, ..., 9.999}; y = x . w + 3 + e
with w ~ N(0, 1) and e ~ N(0, 1) from numpy's PCG64 seeded with 20261127,
rounded to 4 decimals.  Files are written once; a stamp file records the
format version, and a changed version rewrites them.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VERSION = "1"
LINREG_ROWS = 1_250_000
LINREG_COLS = 100
LINREG_SEED = 20261127


def log(msg):
    print(f"bench: prepare: {msg}", file=sys.stderr, flush=True)


def atomic_write(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def pixel_table():
    """Text of pixel/255 for each byte value (%.6g, as the CSV holds it)."""
    return [b"0"] + [b"%.6g" % (i / 255.0) for i in range(1, 256)]


def write_fmnist_csv(path, X, y):
    tab = np.array(pixel_table(), dtype=object)

    def write(f):
        f.write(b"label," + b",".join(b"p%d" % j for j in range(X.shape[1])) + b"\n")
        for i in range(X.shape[0]):
            f.write(b"%d," % y[i] + b",".join(tab[X[i]]) + b"\n")
    atomic_write(path, write)


def write_libsvm(path, X, y):
    tab = pixel_table()
    # "j:value" for every (feature, pixel) pair, looked up instead of formatted.
    pairs = np.array([[b"%d:%s" % (j + 1, tab[v]) for v in range(256)]
                      for j in range(X.shape[1])], dtype=object)

    def write(f):
        for i in range(X.shape[0]):
            nz = np.flatnonzero(X[i])
            f.write(b"%d " % y[i] + b" ".join(pairs[nz, X[i, nz]]) + b"\n")
    atomic_write(path, write)


def write_linreg(csv_path, npz_path):
    rng = np.random.Generator(np.random.PCG64(LINREG_SEED))
    n, d = LINREG_ROWS, LINREG_COLS
    Xi = rng.integers(0, 10000, size=(n, d), dtype=np.int16)       # x = Xi / 1000
    w = rng.standard_normal(d)
    noise = rng.standard_normal(n)
    y = (Xi / 1000.0) @ w + 3.0 + noise
    Yi = np.rint(y * 10000.0).astype(np.int64)                     # y = Yi / 10000
    atomic_write(npz_path, lambda f: np.savez(f, X=Xi, Y=Yi))

    def write(f):
        f.write(b",".join(b"x%d" % j for j in range(d)) + b",y\n")
        chunk = 50_000
        for s in range(0, n, chunk):
            xs = Xi[s:s + chunk].astype(np.int32)
            m = xs.shape[0]
            # Every x is "d.ddd": fixed width, so the text is built as bytes.
            buf = np.empty((m, d, 6), dtype=np.uint8)
            buf[:, :, 0] = ord("0") + xs // 1000
            buf[:, :, 1] = ord(".")
            buf[:, :, 2] = ord("0") + xs // 100 % 10
            buf[:, :, 3] = ord("0") + xs // 10 % 10
            buf[:, :, 4] = ord("0") + xs % 10
            buf[:, :, 5] = ord(",")
            rows = buf.reshape(m, d * 6)
            ys = Yi[s:s + chunk]
            f.write(b"".join(rows[i].tobytes() + b"%.4f\n" % (ys[i] / 10000.0) for i in range(m)))
    atomic_write(csv_path, write)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    stamp = os.path.join(out, "STAMP")
    want = ["fmnist-train.csv", "fmnist-train.svm", "fmnist-test.svm", "linreg.csv", "linreg.npz"]
    if (os.path.exists(stamp) and open(stamp).read().strip() == VERSION
            and all(os.path.exists(os.path.join(out, f)) for f in want)):
        log(f"data ready in {out}")
        return
    if os.path.exists(stamp):
        os.remove(stamp)
    t0 = time.time()
    names = {"train": "train", "test": "t10k"}
    raw = {}
    for part, stem in names.items():
        X = common.read_idx(os.path.join(common.FMNIST_DIR, f"{stem}-images-idx3-ubyte.gz"))
        y = common.read_idx(os.path.join(common.FMNIST_DIR, f"{stem}-labels-idx1-ubyte.gz"))
        raw[part] = (X.reshape(X.shape[0], -1), y)
    log("writing fmnist-train.csv")
    write_fmnist_csv(os.path.join(out, "fmnist-train.csv"), *raw["train"])
    log("writing fmnist-train.svm, fmnist-test.svm")
    write_libsvm(os.path.join(out, "fmnist-train.svm"), *raw["train"])
    write_libsvm(os.path.join(out, "fmnist-test.svm"), *raw["test"])
    log(f"writing linreg.csv ({LINREG_ROWS} x {LINREG_COLS + 1}) and linreg.npz")
    write_linreg(os.path.join(out, "linreg.csv"), os.path.join(out, "linreg.npz"))
    with open(stamp, "w") as f:
        f.write(VERSION + "\n")
    log(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
