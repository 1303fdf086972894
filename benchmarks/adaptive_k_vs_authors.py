"""Adaptive TBPTT's K rule against the authors' code on the same gradients.

Trains rnnbench's ``adaptive_tbptt`` (the copy task's protocol: 2-layer LSTM-50, embedding 6, SGD lr 1.0 x sqrt(K),
clip at 1/K, batch 64) and, at checkpoints, draws one batch of estimation windows (burn 20, W 100, tau 80),
computes the state gradients once, and reports the K that rnnbench's estimator and the authors'
``tbptt.adaptive_truncation.adaptive_K_estimate`` choose from them for delta in {0.9, 0.5, 0.1}:

    python benchmarks/adaptive_k_vs_authors.py --authors /path/to/aicherc/adaptive_tbptt [--updates 3000]
    python benchmarks/adaptive_k_vs_authors.py --smoke          # CI: 2 updates, rnnbench's side only

The authors' package is imported from ``--authors`` (a checkout of aicherc/adaptive_tbptt; nothing of it is
copied here). Without it only rnnbench's K is printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from suite.registry import load_registry  # noqa: E402
from suite.training.adaptive_truncation import cumulative_norms, estimate_truncation, gradients_by_lag  # noqa: E402

DELTAS = (0.9, 0.5, 0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors", type=Path, default=None, help="checkout of aicherc/adaptive_tbptt")
    ap.add_argument("--updates", type=int, default=3000)
    ap.add_argument("--every", type=int, default=300)
    ap.add_argument("--lag-mode", default="variable")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: with another process on the cores, 2 threads ran 30x slower)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.updates, args.every, args.authors = 2, 1, None
    authors = None
    if args.authors is not None:
        import numpy

        if not hasattr(numpy, "NaN"):  # their code (2019) uses numpy's old alias, removed in numpy 2
            numpy.NaN = numpy.nan
        sys.path.insert(0, str(args.authors))
        from tbptt.adaptive_truncation import adaptive_K_estimate as authors  # type: ignore  # noqa: E402
    torch.manual_seed(0)
    reg = load_registry()
    task_cls, model_cls = reg.get("tasks", "copy"), reg.get("models", "lstm")
    task = task_cls(task_cls.Params(lag_mode=args.lag_mode, generator="authors",
                                    **({"train_length": 400, "columns": 8} if args.smoke else {})))
    data = task.train_data()
    model = model_cls(task.input, task.output, model_cls.Params(hidden_size=50, num_layers=2, embed_dim=6))
    opt = torch.optim.SGD(model.parameters(), lr=1.0, weight_decay=1e-5)
    K, W, burn, tau = 15, 100, 20, 80
    x, y = data.train.x, data.train.y
    g = torch.Generator().manual_seed(1)
    print(f"{'update':>7} {'loss':>7}  " + "  ".join(f"delta={d}: rnnbench / authors" for d in DELTAS), flush=True)
    pos = 0
    for update in range(1, args.updates + 1):
        if pos + K > x.shape[1]:
            pos = 0
        a = max(pos - K + 1, 0)
        out, _ = model(x[:, a: pos + K])
        loss = data.loss(out[:, pos - a:], y[:, pos: pos + K])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0 / K)
        for group in opt.param_groups:
            group["lr"] = math.sqrt(K)
        opt.step()
        pos += K
        if update % args.every:
            continue
        start = torch.randint(x.shape[1] - burn - W, (x.shape[0],), generator=g)
        idx = start[:, None] + torch.arange(burn + W)
        rows = torch.arange(x.shape[0])[:, None]
        grads = gradients_by_lag(model, x[rows, idx], y[rows, idx], data.loss, burn, min(W, idx.shape[1] - burn))
        ours = [estimate_truncation(grads, d, min(tau, grads.shape[1] - 1), cum_norm="exact")["K"] for d in DELTAS]
        theirs = ["-"] * len(DELTAS)
        if authors is not None:
            norms = grads.norm(dim=-1).T.double().numpy()  # [W, B], lag 0 = the state entering the last step
            cum = cumulative_norms(grads, "exact").numpy()
            theirs = [int(k) for k in authors(norms, cum, tau, deltas=list(DELTAS))]
        K = max(2, min(100, ours[1]))  # train on at delta = 0.5, as a run with that delta would
        print(f"{update:7d} {loss.item():7.4f}  " + "  ".join(f"{o:>16} / {t:<7}" for o, t in zip(ours, theirs)),
              flush=True)


if __name__ == "__main__":
    main()
