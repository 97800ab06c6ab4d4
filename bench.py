"""
Benchmarks: one JSON object per case, on one line, so that figures can be grepped, diffed and
plotted. Ratios are measured in the same run, since the machines here are shared and noisy.

    python bench.py                       # every case
    python bench.py --only=matmul,train   # cases whose name starts with one of these
    python bench.py --list                # case names

Each case is a function decorated with @case; it yields dicts with at least
{"case", "value", "unit"}; extra keys give context (shapes, ratios, targets).
"""
import json
import os
import sys
import time

import torch

from model import measure_peak_flops

# -----------------------------------------------------------------------------
only = []            # case-name prefixes to run (empty: all)
list_cases = False   # print the case names and exit
data_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'shared', 'data',
                         'tinystories_train_sample.txt')
threads = 0          # torch threads (0: torch's default, all cores)
# -----------------------------------------------------------------------------

CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def emit(**record):
    print(json.dumps(record), flush=True)


def timeit(fn, min_seconds=1.0, warmup=1):
    """Median seconds per call of fn(), after `warmup` calls, over at least min_seconds."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


@case('matmul_peak')
def bench_matmul_peak():
    for dtype in (torch.float32, torch.bfloat16):
        flops = measure_peak_flops(dtype, seconds=1.0)
        emit(case=f'matmul_peak_{str(dtype).split(".")[-1]}', value=round(flops / 1e9, 1),
             unit='GFLOP/s', n=1024, cpu_capability=torch.backends.cpu.get_cpu_capability())


def main():
    from configurator import configure
    configure(globals())
    if threads:
        torch.set_num_threads(threads)
    if list_cases:
        print('\n'.join(CASES))
        return
    for name, fn in CASES.items():
        if only and not any(name.startswith(p) for p in only):
            continue
        fn()


if __name__ == '__main__':
    main()
