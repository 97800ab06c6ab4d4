"""bench.py: every case is listed, a case prints one parseable JSON line per figure, and the
training-step variants it compares compute the same loss (so its ratios compare like with like)."""
import json
import os
import subprocess
import sys

import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(*args):
    out = subprocess.run([sys.executable, 'bench.py', *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_list_and_one_case_print_json_lines():
    names = run_bench('--list_cases')
    assert {'matmul_peak', 'train_step', 'sample', 'bpe_train', 'llm_requests'} <= set(names)
    records = [json.loads(line) for line in run_bench('--only=matmul_peak')]
    assert [r['case'] for r in records] == ['matmul_peak_float32', 'matmul_peak_bfloat16']
    assert all(r['unit'] == 'GFLOP/s' and r['value'] > 0 for r in records)


def test_train_step_variants_agree_and_are_timed_in_turns():
    shape = dict(batch_size=2, n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64)
    chunked, tokens, _ = bench._train_step('float32', False, **shape)
    plain, _, _ = bench._train_step('float32', False, plain_loss=True, **shape)
    assert tokens == 16
    # same weights, same batch: the same loss, and after one step (same gradients) again
    for _ in range(2):
        assert abs(chunked().item() - plain().item()) < 1e-5
    calls = []
    rates = bench._interleaved_tokens_per_s([(lambda: calls.append('a'), 10),
                                             (lambda: calls.append('b'), 20)], rounds=3)
    assert calls[6:] == ['a', 'b'] * 3  # 3 warm-up calls each, then one of each per round
    assert len(rates) == 2 and all(r > 0 for r in rates)
