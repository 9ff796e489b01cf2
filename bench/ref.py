#!/usr/bin/python3
"""Reference implementations, one workload per call:

    /usr/bin/python3 bench/ref.py WORKLOAD DATA_DIR SEED

Prints one JSON line: {"seconds": <fit time>, <quality figures>, "blas": [...]}.
Only the fit call is timed (time.perf_counter around it); reading and
converting the data and scoring come before or after.  Threads: THREADS
(default 2) for OpenBLAS and OpenMP (numpy, scikit-learn); for torch,
torch.set_num_threads(THREADS) with OpenBLAS single-threaded inside it.
"""
import os
import sys
import time
import warnings

THREADS = int(os.environ.get("THREADS", "2"))
# torch runs its own OpenMP pool of THREADS threads and calls OpenBLAS from
# it; OpenBLAS's pool on top would put 2 x 2 threads on 2 cores (batch-32
# training was 3-4x slower so): torch keeps the threads, OpenBLAS gets one.
# Must be set before numpy or torch loads OpenBLAS.
TORCH = len(sys.argv) > 1 and sys.argv[1].startswith("mlp")
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["MKL_NUM_THREADS"] = str(THREADS)
os.environ["OPENBLAS_NUM_THREADS"] = "1" if TORCH else str(THREADS)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def torch_mlp(data_dir, seed, batch_size):
    """784-512-10 relu/softmax, Adam lr 0.001, 5 epochs; mini-batches drawn from
    one in-memory tensor by a fresh permutation each epoch (no DataLoader
    overhead: the fastest plain PyTorch loop)."""
    import torch
    from torch import nn
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    Xtr, ytr, Xte, yte = (torch.from_numpy(a) for a in common.fashion_mnist())
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    n = Xtr.shape[0]
    t0 = time.perf_counter()
    for _ in range(5):
        perm = torch.randperm(n)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(Xte).argmax(1) == yte).double().mean().item()
    return dict(seconds=secs, accuracy=acc, torch=torch.__version__,
                torch_threads=torch.get_num_threads())


def sklearn_logreg(data_dir, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    import sklearn
    Xtr, ytr, Xte, yte = common.fashion_mnist()
    clf = LogisticRegression(solver="lbfgs", max_iter=100, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        secs = time.perf_counter() - t0
    acc = float((clf.predict(Xte) == yte).mean())
    return dict(seconds=secs, accuracy=acc, n_iter=int(clf.n_iter_.max()),
                sklearn=sklearn.__version__)


def sklearn_kmeans(data_dir, seed):
    from sklearn.cluster import KMeans
    import sklearn
    Xtr, _, _, _ = common.fashion_mnist()
    km = KMeans(n_clusters=10, n_init=1, random_state=seed)
    t0 = time.perf_counter()
    km.fit(Xtr)
    secs = time.perf_counter() - t0
    return dict(seconds=secs, inertia=float(km.inertia_), n_iter=int(km.n_iter_),
                sklearn=sklearn.__version__)


def linreg_data(data_dir, n_train=1_000_000):
    z = np.load(os.path.join(data_dir, "linreg.npz"))
    X = z["X"] / 1000.0          # the float64 nearest each "d.ddd" of the CSV
    y = z["Y"] / 10000.0
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def numpy_lstsq(data_dir, seed):
    Xtr, ytr, Xte, yte = linreg_data(data_dir)
    A = np.empty((Xtr.shape[0], Xtr.shape[1] + 1))
    A[:, :-1] = Xtr
    A[:, -1] = 1.0                 # the intercept column
    t0 = time.perf_counter()
    coef, _, _, _ = np.linalg.lstsq(A, ytr, rcond=None)
    secs = time.perf_counter() - t0
    pred = Xte @ coef[:-1] + coef[-1]
    mse = float(np.mean((yte - pred) ** 2))
    return dict(seconds=secs, mse=mse, numpy=np.__version__)


def numpy_loadtxt(data_dir, seed):
    path = os.path.join(data_dir, "fmnist-train.csv")
    t0 = time.perf_counter()
    a = np.loadtxt(path, dtype=np.float32, delimiter=",", skiprows=1)
    secs = time.perf_counter() - t0
    return dict(seconds=secs, rows=int(a.shape[0]), cols=int(a.shape[1]), numpy=np.__version__)


WORKLOADS = {
    "mlp32": lambda d, s: torch_mlp(d, s, 32),
    "mlp128": lambda d, s: torch_mlp(d, s, 128),
    "logreg": sklearn_logreg,
    "kmeans": sklearn_kmeans,
    "linreg": numpy_lstsq,
    "csvload": numpy_loadtxt,
}


def main():
    name, data_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if not TORCH:
        common.limit_threads(THREADS)
    out = WORKLOADS[name](data_dir, seed)
    out["blas"] = common.blas_info()
    common.emit(**out)


if __name__ == "__main__":
    main()
