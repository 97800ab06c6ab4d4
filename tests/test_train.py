"""train.py end to end on a tiny byte-level dataset: exact resume after kill -9, one run per
out_dir (a lock), no silent overwrite, the tokenizer and bin-size checks, max_iters with a time
budget, fp16 with loss scaling, DDP with two processes, and the clear errors a user gets for bad
input (more of them in test_bad_inputs.py)."""
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import tiny_stories, write_byte_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=64', '--batch_size=4',
        '--eval_iters=2', '--log_interval=1', '--progress=False', '--dtype=float32', '--threads=1',
        '--warmup_iters=5', '--learning_rate=3e-3']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    write_byte_dataset(str(d), tiny_stories(300, seed=1), tiny_stories(30, seed=2))
    return str(d)


def train(*args, check=True, background=False):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), *args]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_log(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [json.loads(l) for l in f]


def test_kill9_at_a_random_moment_then_resume_is_exact(data_dir, tmp_path):
    common = [f'--data_dir={data_dir}', *TINY, '--max_iters=60', '--eval_interval=7']
    ref = str(tmp_path / 'ref')
    train(*common, f'--out_dir={ref}')
    run = str(tmp_path / 'run')
    p = train(*common, f'--out_dir={run}', background=True)
    kill_at = random.randint(1, 50)  # a random moment of training: after that many log records
    log_path = os.path.join(run, 'log.jsonl')
    while p.poll() is None and not (os.path.exists(log_path) and len(open(log_path).readlines()) >= kill_at):
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    resume = 'resume' if os.path.exists(os.path.join(run, 'ckpt.pt')) else 'scratch'
    train(*common, f'--out_dir={run}', f'--init_from={resume}')
    a, b = read_log(ref), read_log(run)
    assert [r['iter'] for r in a] == [r['iter'] for r in b]  # nothing lost, nothing logged twice
    for ra, rb in zip(a, b):
        for key in ('loss', 'val_loss'):
            if key in ra:
                assert abs(ra[key] - rb[key]) <= 1e-6, (ra, rb)
    assert a[-1].get('final') and a[-1]['val_bpb'] < 6.0  # it learned something (8 = uniform bytes)


def test_resume_continues_with_the_runs_own_settings_and_extends(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    train(f'--data_dir={data_dir}', *TINY, '--max_iters=10', '--eval_interval=5', f'--out_dir={out}')
    # no model flags: they come from the checkpoint; max_iters extends the run
    train(f'--out_dir={out}', '--init_from=resume', '--max_iters=15', '--progress=False')
    log = read_log(out)
    assert log[-1]['iter'] == 15 and log[-1].get('final')
    ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    assert ck['iter_num'] == 15 and ck['model_args']['n_embd'] == 32
    assert ck['tokenizer']['vocab_size'] == 257 and ck['tokenizer']['tiktoken']
    r = train(f'--out_dir={out}', '--eval_only')
    assert 'bits/byte over the whole val split' in r.stdout + r.stderr


def test_max_minutes_plans_the_schedule_and_stops_in_time(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    t0 = time.time()
    train(f'--data_dir={data_dir}', *TINY, '--max_minutes=0.1', '--eval_interval=50', f'--out_dir={out}')
    assert time.time() - t0 < 6 + 30  # 6 s budget, plus start-up and the final evaluation
    log = read_log(out)
    assert log[-1].get('final') and log[-1]['iter'] > 20
    lrs = [r['lr'] for r in log if 'lr' in r]
    assert lrs[-1] < 0.2 * max(lrs)  # the cosine was planned to end with the budget


# records the device of every tensor train.py broadcasts: NCCL refuses CPU tensors, so the
# planning step's tensor must be on the run's device (a gloo group cannot tell: it takes both)
RECORD_BROADCASTS = r'''
import os, runpy, sys, torch.distributed as dist
real_broadcast = dist.broadcast
def broadcast(tensor, *args, **kwargs):
    with open(os.environ['BROADCASTS'] + os.environ['RANK'], 'a') as f:
        f.write(f"{tensor.device}\n")
    return real_broadcast(tensor, *args, **kwargs)
dist.broadcast = broadcast
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_ddp_two_processes(data_dir, tmp_path):
    out = str(tmp_path / 'ddp')
    # on the CPU with gloo wherever it runs: a machine with one GPU has no cuda:1 for rank 1;
    # with a time budget, so the planning step broadcasts rank 0's plan (max_iters still governs)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '--no-python',
           sys.executable, '-c', RECORD_BROADCASTS, os.path.join(ROOT, 'train.py'), f'--data_dir={data_dir}',
           *TINY, '--max_iters=12', '--max_minutes=10', '--eval_interval=6', f'--out_dir={out}', '--device=cpu']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', 'BROADCASTS': str(tmp_path / 'broadcasts')})
    assert r.returncode == 0, r.stderr[-3000:]
    log = read_log(out)
    assert log[-1]['iter'] == 12 and log[-1].get('final')
    assert log[0]['tokens_per_s'] > 0
    assert 'model: ' in r.stdout + r.stderr and (r.stdout + r.stderr).count('model: ') == 1  # rank 0 speaks
    assert 'plan: 12 iterations; max_iters governs' in r.stdout + r.stderr
    for rank in '01':  # each process took part in every plan's broadcast, with a tensor on the run's device
        with open(tmp_path / f'broadcasts{rank}') as f:
            devices = f.read().split()
        assert devices and set(devices) == {'cpu'}, devices


@pytest.mark.parametrize('args,message', [
    (['--data_dir=/nonexistent'], 'run prepare.py'),
    (['--no_such_key=1'], 'valid keys'),
    (['--n_layer=two'], 'not a valid int'),
    (['--block_size=100000'], 'block_size'),
    (['--n_embd=30', '--n_head=4'], 'divisible'),
    (['--init_from=resume', '--out_dir=/nonexistent'], 'no checkpoint'),
    (['--learning_rate=1e12', '--grad_clip=0', '--max_iters=30'], 'last good checkpoint'),
])
def test_errors_are_one_clear_line(data_dir, tmp_path, args, message):
    r = train(f'--data_dir={data_dir}', *TINY, f'--out_dir={tmp_path}', *args, check=False)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('error:') and message in last, r.stderr[-2000:]


def test_resume_on_a_dataset_with_another_vocabulary_is_refused(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    train(f'--data_dir={data_dir}', *TINY, '--max_iters=5', '--eval_interval=5', f'--out_dir={out}')
    other = str(tmp_path / 'other')
    meta = write_byte_dataset(other, tiny_stories(50), tiny_stories(10))
    meta['vocab_size'] = 300
    with open(os.path.join(other, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    r = train(f'--out_dir={out}', '--init_from=resume', f'--data_dir={other}', check=False)
    assert r.returncode != 0 and 'vocabulary' in r.stderr.strip().splitlines()[-1]


def wait_for(path, p, timeout=120):
    t0 = time.time()
    while not os.path.exists(path):
        assert p.poll() is None and time.time() - t0 < timeout, 'the background run ended early'
        time.sleep(0.05)


def test_a_second_run_is_refused_and_kill_9_frees_the_lock_at_once(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    common = [f'--data_dir={data_dir}', *TINY, '--eval_interval=3', f'--out_dir={out}']
    p = train(*common, '--max_iters=100000', background=True)
    try:
        wait_for(os.path.join(out, 'ckpt.pt'), p)
        r = train(*common, '--init_from=resume', check=False)
        assert r.returncode != 0
        assert r.stderr.strip() == (f"error: {out} is in use by another training run (pid {p.pid}): wait "
                                    f"for it to finish or stop it, or use another directory")
        r = train(f'--out_dir={out}', '--eval_only')  # evaluation writes nothing: never refused
        assert 'bits/byte over the whole val split' in r.stdout
    finally:
        p.kill()  # SIGKILL
        p.wait()
    it = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)['iter_num']
    train(*common, '--init_from=resume', f'--max_iters={it + 3}')  # immediately: no stale lock
    log = read_log(out)
    assert log[-1]['iter'] == it + 3 and log[-1].get('final')
    assert [r['iter'] for r in log if 'loss' in r] == list(range(1, it + 4))  # nothing twice


def test_a_trained_run_is_replaced_only_with_overwrite(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    common = [f'--data_dir={data_dir}', *TINY, '--eval_interval=5', f'--out_dir={out}']
    train(*common, '--max_iters=5')
    ckpt = os.path.join(out, 'ckpt.pt')
    with open(ckpt, 'rb') as f:
        before = f.read()
    r = train(*common, '--max_iters=3', check=False)
    assert r.returncode != 0 and r.stderr.strip().startswith('error:')
    assert '--init_from=resume' in r.stderr and '--overwrite' in r.stderr
    with open(ckpt, 'rb') as f:
        assert f.read() == before  # untouched
    train(*common, '--max_iters=3', '--overwrite')
    assert torch.load(ckpt, weights_only=True)['iter_num'] == 3
    assert [r['iter'] for r in read_log(out)] == [1, 2, 3, 3]  # the old log went with its run


def test_resume_on_a_tokenizer_of_the_same_size_but_other_tokens_is_refused(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    train(f'--data_dir={data_dir}', *TINY, '--max_iters=2', '--eval_interval=5', f'--out_dir={out}')
    other = str(tmp_path / 'other')
    shutil.copytree(data_dir, other)
    path = os.path.join(other, 'tokenizer.tiktoken')
    with open(path) as f:
        lines = f.read().splitlines()
    a, b = lines[97].split(), lines[98].split()  # 'a' and 'b' swap their ids: still 257 tokens
    lines[97], lines[98] = f'{b[0]} {a[1]}', f'{a[0]} {b[1]}'
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    before = os.path.getmtime(os.path.join(out, 'ckpt.pt'))
    r = train(f'--out_dir={out}', f'--data_dir={other}', '--init_from=resume', check=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and last.startswith('error:') and 'tokenizer' in last, r.stderr[-2000:]
    # evaluation only reads text: it re-encodes the other dataset with the model's own tokenizer
    r = train(f'--out_dir={out}', f'--data_dir={other}', '--eval_only')
    assert 're-encoded' in r.stdout and 'bits/byte over the whole val split' in r.stdout
    assert os.path.getmtime(os.path.join(out, 'ckpt.pt')) == before


def test_a_bin_cut_short_is_refused(data_dir, tmp_path):
    cut = str(tmp_path / 'cut')
    shutil.copytree(data_dir, cut)
    path = os.path.join(cut, 'val.bin')
    os.truncate(path, os.path.getsize(path) - 200)  # whole uint16 tokens: only meta.json can tell
    r = train(f'--data_dir={cut}', *TINY, f'--out_dir={tmp_path / "o"}', check=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and last.startswith('error:') and 'cut short' in last and 'val.bin' in last


def test_max_iters_on_the_command_line_wins_over_a_configs_time_budget(data_dir, tmp_path):
    config = tmp_path / 'budget.py'
    config.write_text('max_minutes = 10.0\n')  # like config/cpu_tiny.py
    out = str(tmp_path / 'o')
    r = train(str(config), f'--data_dir={data_dir}', *TINY, '--max_iters=12', '--eval_interval=50',
              f'--out_dir={out}')
    assert 'stops at iteration 12 or after 10 minutes, whichever comes first' in r.stdout
    assert 'plan: 12 iterations; max_iters governs' in r.stdout
    log = read_log(out)
    assert log[-1]['iter'] == 12 and log[-1].get('final')
    lrs = [r['lr'] for r in log if 'lr' in r]
    assert lrs[-1] < 0.2 * max(lrs)  # the cosine was planned for 12 iterations


def test_float16_with_loss_scaling_trains_and_resumes(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    common = [f'--data_dir={data_dir}', *TINY, '--dtype=float16', '--eval_interval=3', f'--out_dir={out}']
    train(*common, '--max_iters=6')
    train(*common, '--init_from=resume', '--max_iters=9')
    log = read_log(out)
    assert [r['iter'] for r in log if 'loss' in r] == list(range(1, 10))
    assert all(math.isfinite(r['loss']) for r in log if 'loss' in r) and log[-1].get('final')
    ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    assert ck['iter_num'] == 9 and ck['scaler']['scale'] > 0 and ck['config']['dtype'] == 'float16'


def test_a_resumed_run_keeps_the_dtype_auto_chose(data_dir, tmp_path):
    # 'auto' measures bf16 against fp32 matmuls on a CPU: a resume on a busier (or other) machine
    # must not switch the run's arithmetic half way, so the checkpoint records the choice
    out = str(tmp_path / 'o')
    common = [f'--data_dir={data_dir}', *TINY, '--dtype=auto', '--eval_interval=3', f'--out_dir={out}']
    train(*common, '--max_iters=3')
    path = os.path.join(out, 'ckpt.pt')
    ck = torch.load(path, weights_only=True)
    assert ck['dtype'] in ('float32', 'bfloat16') and ck['config']['dtype'] == 'auto'
    other = 'float32' if ck['dtype'] == 'bfloat16' else 'bfloat16'
    torch.save({**ck, 'dtype': other}, path)  # as if 'auto' had chosen the other one
    r = train(*common, '--init_from=resume', '--max_iters=5')
    assert f'cpu {other}' in r.stdout + r.stderr
    assert torch.load(path, weights_only=True)['dtype'] == other


def test_a_diverged_run_never_writes_a_non_finite_checkpoint(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    r = train(f'--data_dir={data_dir}', *TINY, '--learning_rate=1e12', '--grad_clip=0', '--max_iters=30',
              '--eval_interval=1', '--log_interval=10', f'--out_dir={out}', check=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and 'last good checkpoint' in last, r.stderr[-2000:]
    if os.path.exists(os.path.join(out, 'ckpt.pt')):  # the loss is checked only every 10 steps
        ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
        assert all(torch.isfinite(t).all() for t in ck['model'].values())
        assert ck['iter_num'] < 10


def test_a_30x_slower_machine_still_warms_up_peaks_and_decays_then_a_finished_run_extends(data_dir, tmp_path):
    """A budget that buys far fewer steps than the recipe was tuned for (simulated: a tiny
    max_minutes, and a recipe tuned at a rate no CPU reaches): the warmup shrinks to a tenth of
    the plan, so the learning rate still reaches its peak and decays; the run says so."""
    out = str(tmp_path / 'o')
    args = [f'--data_dir={data_dir}', *TINY, '--warmup_iters=100', '--max_minutes=0.03', '--eval_interval=1000',
            '--tuned_tokens_per_s=1000000000', f'--out_dir={out}']
    r = train(*args)
    assert 'note: this machine trains at' in r.stdout and 'slower than the 1,000,000,000' in r.stdout
    assert 'tokens seen' in r.stdout and 'tokens/s;' in r.stdout
    log = read_log(out)
    lrs = [rec['lr'] for rec in log if 'lr' in rec]
    ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    done, warmup = ck['iter_num'], ck['plan']['warmup_iters']
    assert 1 <= warmup <= max(9, done // 10) and done == log[-1]['iter']  # (9: the steps before the plan)
    # the peak at the warmup's last step (the cosine's first step may round a float's last bit above it)
    assert max(lrs) == pytest.approx(3e-3) and lrs[warmup - 1] == 3e-3 and lrs[:warmup] == sorted(lrs[:warmup])
    assert lrs[-1] < 0.2 * max(lrs)  # and the decay, within the plan
    # the same command again trains nothing; a larger max_iters extends the finished run
    train('--out_dir=' + out, '--init_from=resume')
    assert torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)['iter_num'] == done
    r = train('--out_dir=' + out, '--init_from=resume', f'--max_iters={done + 5}')
    assert f'plan: extending the finished run from {done:,} to {done + 5:,} iterations' in r.stdout
    log = read_log(out)
    assert log[-1]['iter'] == done + 5 and log[-1].get('final')
    ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    assert ck['plan']['warmup_iters'] == warmup and ck['config']['max_iters'] == done + 5


def test_resume_refuses_a_changed_shape_and_applies_what_may_change(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    common = [f'--data_dir={data_dir}', *TINY, '--eval_interval=2', f'--out_dir={out}']
    train(*common, '--max_iters=2')
    # a checkpoint of an older train.py saved helper globals in its config: they are not keys
    path = os.path.join(out, 'ckpt.pt')
    ck = torch.load(path, weights_only=True)
    ck['config']['ckpt_path'] = path
    # and had neither the Llama-style block's keys nor model.py's fields for it
    for k in ('mlp_hidden', 'norm', 'norm_eps', 'rotary', 'rope_theta', 'n_kv_head', 'tie_embeddings'):
        del ck['config'][k], ck['model_args'][k]
    torch.save(ck, path)
    for flag in ('--n_layer=3', '--n_embd=64', '--block_size=32', '--seed=1', '--dropout=0.1',
                 '--learning_rate=1e-3'):
        r = train(*common, '--init_from=resume', '--max_iters=3', flag, check=False)
        key = flag[2:].split('=')[0]
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith('error: ') and f'--{key}=' in lines[0] \
            and 'resumed run keeps' in lines[0], r.stderr[-2000:]
    # the same shape given again (as sweep.py and config files do) and keys that may change: applied
    train(*common, '--init_from=resume', '--max_iters=4', '--eval_iters=3', '--grad_clip=0.5')
    ck = torch.load(path, weights_only=True)
    assert ck['iter_num'] == 4 and ck['config']['eval_iters'] == 3 and ck['config']['grad_clip'] == 0.5
    assert 'ckpt_path' not in ck['config'] and ck['config']['n_layer'] == 2
    assert ck['config']['norm'] == 'layernorm' and not ck['config']['rotary']  # the old model's, recorded


def test_a_llama_style_model_trains_resumes_keeps_its_shape_and_samples(data_dir, tmp_path):
    out = str(tmp_path / 'o')
    llama = ['--norm=rmsnorm', '--rotary=True', '--activation=swiglu', '--mlp_hidden=48', '--bias=False',
             '--qkv_bias=False', '--n_kv_head=1', '--tie_embeddings=False']
    train(f'--data_dir={data_dir}', *TINY, *llama, '--max_iters=4', '--eval_interval=2', f'--out_dir={out}')
    r = train(f'--out_dir={out}', '--init_from=resume', '--max_iters=6', '--rotary=False', check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and '--rotary=False' in lines[0] and 'resumed run keeps' in lines[0]
    train(f'--out_dir={out}', '--init_from=resume', '--max_iters=6', '--progress=False')
    ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    assert ck['iter_num'] == 6 and read_log(out)[-1].get('final')
    assert {k: ck['model_args'][k] for k in ('norm', 'rotary', 'activation', 'mlp_hidden', 'n_kv_head')} == \
        {'norm': 'rmsnorm', 'rotary': True, 'activation': 'swiglu', 'mlp_hidden': 48, 'n_kv_head': 1}
    assert 'wpe.weight' not in ck['model'] and ck['model']['h.0.mlp.c_fc.weight'].shape == (96, 32)
    assert ck['model']['h.0.attn.c_attn.weight'].shape == (32 + 2 * 16, 32)  # one kv head of 16
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), f'--out_dir={out}', '--json', '--device=cpu',
                        '--start=Once', '--num_samples=1', '--max_new_tokens=5'],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])['tokens'] > 0

