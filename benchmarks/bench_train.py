"""How fast the book's CNN trains here, and how far that is from the machine's limit.

Run: ``python benchmarks/bench_train.py [--seconds S]``. Prints one table, all rows measured in the
same run on the same data:

* throughput: training images per second (forward + backward + Adam step) of ``EmbeddingNet`` with
  the in-batch triplet step, at each batch size, in the default memory layout and in
  ``channels_last``, with 1 thread and with all threads, and as two processes of one thread each;
  then the probe of ``python -m fewshot plan`` (the same network as a 10-class classifier, batch
  64, ``channels_last``) with 1 thread and with all threads;
* the fraction of peak: the model's floating-point work per image (counted from its layers,
  forward × 3 for forward + backward) times the throughput, divided by an estimate of the machine's
  peak, the best rate of a large float32 matrix product measured here with the same thread count;
* inference: images per second embedded by :func:`fewshot.models.embed` (which runs the network in
  ``channels_last``) against the same batches of 1,024 through a plain forward pass in the default
  layout, with 1 thread and with all threads.

Not a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
from torch import nn

from fewshot.models import EmbeddingNet, embed
from fewshot.plan import throughput as probe


def flops_per_image(model: nn.Module) -> float:
    """Multiply-adds × 2 of one forward pass (convolutions and linear layers), × 3 for training."""
    total = 0
    x = torch.zeros(1, 1, 28, 28)
    hooks = []

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * k * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(count))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return 3.0 * total


def matmul_peak(threads: int, seconds: float = 1.0) -> float:
    """Best float32 GFLOP/s of a 1024×1024 matrix product with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * 1024 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def throughput(batch: int, channels_last: bool, threads: int, seconds: float,
               step: str = "triplet") -> float:
    """Training images per second for about ``seconds`` (after two warm-up steps):
    :func:`fewshot.plan.throughput`, the probe ``python -m fewshot plan`` runs (with
    ``step="softmax"``)."""
    torch.set_num_threads(threads)
    return probe(batch, seconds, step=step, channels_last=channels_last)


def inference(channels_last: bool, threads: int, seconds: float, n: int = 4000) -> float:
    """Images embedded per second for about ``seconds`` (after one warm-up pass over ``n`` images):
    ``fewshot.models.embed`` if ``channels_last``, else a plain forward pass in batches of 1,024."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = EmbeddingNet(32).eval()
    images = torch.randn(n, 1, 28, 28)

    def default_layout() -> None:
        with torch.no_grad():
            for i in range(0, n, 1024):
                model(images[i:i + 1024])

    run = (lambda: embed(model, images)) if channels_last else default_layout
    run()
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:
        run()
        done += 1
    return done * n / (time.perf_counter() - start)


def _worker(args: tuple) -> float:
    return throughput(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    work = flops_per_image(EmbeddingNet(32))
    peaks = {t: matmul_peak(t) for t in sorted({1, cores})}
    print(f"EmbeddingNet(32): {work / 1e6:.1f} MFLOP per training image; matmul peak estimate "
          + ", ".join(f"{p:.0f} GFLOP/s with {t} thread{'s' * (t > 1)}" for t, p in peaks.items()))
    print()
    print("| batch | layout | threads | images/s | vs default | % of peak |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for batch in (64, 128):
        base = None
        for layout in (False, True):
            for threads in sorted({1, cores}):
                ips = throughput(batch, layout, threads, args.seconds)
                base = base or ips
                name = "channels_last" if layout else "default"
                print(f"| {batch} | {name} | {threads} | {ips:,.0f} | {ips / base:.2f}× "
                      f"| {100 * ips * work / 1e9 / peaks[threads]:.0f}% |", flush=True)
        if cores > 1:
            with mp.get_context("spawn").Pool(cores) as pool:
                rates = pool.map(_worker, [(batch, True, 1, args.seconds)] * cores)
            total = sum(rates)
            print(f"| {batch} | channels_last | {cores} processes × 1 | {total:,.0f} "
                  f"| {total / base:.2f}× | {100 * total * work / 1e9 / peaks[cores]:.0f}% |", flush=True)
    print()
    print("| plan's probe (classifier, batch 64, channels_last) | threads | images/s |")
    print("| --- | --- | ---: |")
    for threads in sorted({1, cores}):
        ips = throughput(64, True, threads, args.seconds, step="softmax")
        print(f"| `fewshot.plan.throughput` | {threads} | {ips:,.0f} |", flush=True)
    print()
    print("| inference (4,000 images) | threads | images/s | vs default |")
    print("| --- | --- | ---: | ---: |")
    for threads in sorted({1, cores}):
        base = inference(False, threads, args.seconds)
        fast = inference(True, threads, args.seconds)
        print(f"| forward pass, default layout | {threads} | {base:,.0f} | 1.00× |")
        print(f"| `embed` (channels_last) | {threads} | {fast:,.0f} | {fast / base:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
