"""Helpers shared by the benchmark scripts (run with Debian's /usr/bin/python3).

Fashion-MNIST is read straight from the gzipped IDX files of the Debian package
dataset-fashion-mnist, so the Python references and mlpipe's `load: idx` see the
same bytes; features are pixel / 255 in float32, exactly what mlpipe computes.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np

FMNIST_DIR = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(path):
    """Returns the array stored in one (gzipped) IDX file as uint8."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def fashion_mnist():
    """(X_train, y_train, X_test, y_test): X float32 in [0, 1], shape (n, 784); y int64."""
    def part(kind):
        X = read_idx(os.path.join(FMNIST_DIR, f"{kind}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(FMNIST_DIR, f"{kind}-labels-idx1-ubyte.gz"))
        X = X.reshape(X.shape[0], -1).astype(np.float32) / np.float32(255.0)
        return X, y.astype(np.int64)
    Xtr, ytr = part("train")
    Xte, yte = part("t10k")
    return Xtr, ytr, Xte, yte


def limit_threads(n):
    """Caps BLAS/OpenMP threads of this process at n (threadpoolctl if present)."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def blas_info():
    """The BLAS/OpenMP libraries this process loaded and the kernel each runs."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpool_info()]


def emit(**fields):
    """The one JSON line on stdout that bench.py reads back."""
    print(json.dumps(fields), flush=True)
    sys.stdout.flush()
