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


def test_reference_model_is_our_architecture():
    """bench.py's nanoGPT-style ReferenceGPT, given model.GPT's weights, computes the same loss,
    with and without the local window: the GPU ratios compare like with like."""
    import torch
    from model import GPT, GPTConfig
    for window in (0, 3):
        torch.manual_seed(0)
        ours = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8, window_size=window))
        ref = bench.ReferenceGPT(50, 8, 2, 2, block_size=16, window_size=window)
        rename = {'attn.c_attn': 'c_attn', 'attn.c_proj': 'attn_proj', 'mlp.c_fc': 'c_fc', 'mlp.c_proj': 'mlp_proj'}
        state = {}
        for k, v in ours.state_dict().items():
            for a, b in rename.items():
                k = k.replace(a, b)
            state[k] = v
        ref.load_state_dict(state)
        x = torch.randint(0, 50, (2, 16))
        assert abs(ref(x, x).item() - ours(x, x)[1].item()) < 1e-5


def test_bad_keys_are_one_line_errors():
    for args, words in ((['--only=bpe_train'], '--data_file'), (['--device=tpu'], 'cpu or cuda'),
                        (['--only=bpe_train', '--data_file=/nonexistent/x.txt'], 'not found')):
        out = subprocess.run([sys.executable, 'bench.py', *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode != 0 and out.stderr.startswith('error:') and words in out.stderr
        assert 'Traceback' not in out.stderr


def test_stories_are_read_by_stories_py(tmp_path):
    f = tmp_path / 's.txt'
    f.write_text('Once upon a time.\n<|endoftext|>\nThe end.\n<|endoftext|>\n')
    assert bench._stories(str(f)) == ['Once upon a time.', 'The end.']


def test_table_prints_every_figure_once(capsys):
    """make gpu-check's one table: a row per figure, the ratio and MFU columns that any has."""
    bench.print_table([{'case': 'a', 'value': 10, 'unit': 'tokens/s', 'vs_reference': 1.0, 'mfu': 0.4,
                        'gpu': 'NVIDIA H100 80GB HBM3', 'torch': '2.11.0'},
                       {'case': 'b', 'value': 13, 'unit': 'tokens/s', 'vs_reference': 1.3}])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == '| case | value | unit | vs_reference | mfu |'
    assert lines[2:4] == ['| a | 10 | tokens/s | 1.0 | 0.4 |', '| b | 13 | tokens/s | 1.3 |  |']
    assert lines[-1] == 'measured on NVIDIA H100 80GB HBM3, torch 2.11.0'


def test_recipe_steps_train_each_shipped_recipe_as_its_config_says():
    """recipe_step times what the comparison trains: each shipped CPU recipe's batch and context,
    and a step that learns (the loss on a fixed batch falls), Muon where the recipe asks for it."""
    tokens = {}
    for name in ('cpu_tiny', 'cpu_tiny_llama', 'cpu_nanogpt'):
        step, tokens[name] = bench._recipe_step(os.path.join(ROOT, 'config', f'{name}.py'))
        losses = [step().item() for _ in range(4)]
        assert losses[-1] < losses[0], (name, losses)
    assert tokens == {'cpu_tiny': 16 * 256, 'cpu_tiny_llama': 12 * 128, 'cpu_nanogpt': 12 * 64}
