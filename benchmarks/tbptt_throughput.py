"""Training throughput of the suite's `tbptt` against a hand-written PyTorch loop (same configuration).

Both train the same LSTM (nn.LSTM + Linear head) with Adam on stride-1 windows of one long sequence,
batch of windows per update, burn-in m left out of the loss. The suite runs the real method through a
real TrainContext (steps budget, no evaluation inside the timed region); the baseline is the loop a
researcher would write by hand. Printed: windows per second of each and their ratio, in one run.

    python benchmarks/tbptt_throughput.py [--steps 300] [--window 100] [--batch 100] [--hidden 8] [--burn-in 50]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from suite.contracts import IOSpec, SequenceData, TrainData
from suite.registry import load_registry
from suite.run.budget import Budget, EvalEvery
from suite.run.context import Selection, TrainContext


class _NoEvalTask:
    """Stands in for the task inside the timed region: the context never evaluates (eval_every is huge)."""

    def evaluate(self, model, split):  # pragma: no cover - never called
        raise AssertionError("no evaluation inside the timed region")


def suite_tbptt(x, y, args) -> float:
    reg = load_registry()
    model = reg.get("models", "lstm")(IOSpec("real", 1), IOSpec("real", 1), reg.get("models", "lstm").Params(hidden_size=args.hidden))
    method_cls = reg.get("methods", "tbptt")
    method = method_cls(method_cls.Params(window=args.window, stride=1, batch_size=args.batch, burn_in=args.burn_in))
    ctx = TrainContext(task=_NoEvalTask(), model=model, optimizer_spec={"name": "adam", "lr": 1e-4},
                       budget=Budget.from_config({"steps": args.steps}), eval_every=EvalEvery.from_config({"steps": 10**9}),
                       selection=Selection("rmse", "min", {"val": 1.0}), reporter=lambda r: None,
                       device=torch.device("cpu"), dtype=torch.float32, seed=0)
    data = TrainData("bench", SequenceData(x, y), IOSpec("real", 1), IOSpec("real", 1))
    t0 = time.perf_counter()
    method.train(model, data, ctx)
    return args.steps * args.batch / (time.perf_counter() - t0)


def hand_written(x, y, args) -> float:
    lstm, head = nn.LSTM(1, args.hidden, batch_first=True), nn.Linear(args.hidden, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-4)
    xw = x[0].unfold(0, args.window, 1).permute(0, 2, 1)  # [windows, N, 1]
    yw = y[0].unfold(0, args.window, 1).permute(0, 2, 1)
    m, step = args.burn_in, 0
    t0 = time.perf_counter()
    while step < args.steps:
        order = torch.randperm(len(xw))
        for b in range(0, len(order), args.batch):
            idx = order[b : b + args.batch]
            out, _ = lstm(xw[idx])
            loss = (head(out)[:, m:] - yw[idx][:, m:]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= args.steps:
                break
    return args.steps * args.batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--burn-in", type=int, default=50)
    ap.add_argument("--length", type=int, default=6667)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="seconds-long run for CI (5 updates, one repeat)")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.repeats, args.length = 5, 1, 600
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, args.length, 1, generator=g)
    y = torch.randn(1, args.length, 1, generator=g)
    results = {"hand-written loop": [], "suite tbptt": []}
    for _ in range(args.repeats):  # interleaved, best of N, so machine load hits both alike
        torch.manual_seed(0)
        results["hand-written loop"].append(hand_written(x, y, args))
        torch.manual_seed(0)
        results["suite tbptt"].append(suite_tbptt(x, y, args))
    base = max(results["hand-written loop"])
    print(f"LSTM hidden {args.hidden}, windows N={args.window} (burn-in {args.burn_in}), batch {args.batch}, "
          f"{args.steps} updates, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'implementation':<20} {'windows/s':>12} {'ratio':>8}")
    for name, values in results.items():
        print(f"{name:<20} {max(values):>12.1f} {max(values) / base:>8.3f}")


if __name__ == "__main__":
    main()
