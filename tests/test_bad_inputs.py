"""Every bad input to train.py and sample.py, one row each: run as a user would (a subprocess),
and each must end with a non-zero exit and exactly one line on stderr, `error: ...` naming the bad
value or file, and no traceback. The rows run a few at a time in parallel (each is mostly
Python and torch starting up), then each row is checked as its own test."""
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from helpers import python_env, tiny_stories, write_byte_dataset, write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=64', '--batch_size=4',
        '--eval_iters=2', '--log_interval=1', '--progress=False', '--dtype=float32', '--threads=1',
        '--max_iters=6', '--eval_interval=2']
# a full disk, simulated: fsync of a checkpoint's temp file fails with ENOSPC from the Nth
# checkpoint on, the way write() or fsync() fail when the disk fills up under them
FULL_DISK = r'''
import errno, os, runpy, sys
real_fsync, count = os.fsync, [0]
def fsync(fd):
    if '.ckpt.pt.' in os.readlink(f'/proc/self/fd/{fd}'):
        count[0] += 1
        if count[0] >= int(os.environ['FAIL_AT']):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_fsync(fd)
os.fsync = fsync
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def data_copy(tmp, base, edit=None):
    """A copy of the dataset with one file damaged by edit(path_of_the_copy)."""
    d = os.path.join(tmp, 'data')
    shutil.copytree(base, d)
    if edit:
        edit(d)
    return d


def write(path, content):
    with open(path, 'wb' if isinstance(content, bytes) else 'w') as f:
        f.write(content)


def meta_with(**changes):
    def edit(d):
        with open(os.path.join(d, 'meta.json')) as f:
            meta = json.load(f)
        write(os.path.join(d, 'meta.json'), json.dumps({**meta, **changes}))
    return edit


def read_only_dir(tmp):
    d = os.path.join(tmp, 'ro')
    os.makedirs(d)
    os.chmod(d, 0o555)
    if os.access(d, os.W_OK):  # root writes anywhere: use a read-only filesystem instead
        return '/sys/kernel'
    return d


def damaged_run(content):
    def setup(tmp):
        out = os.path.join(tmp, 'run')
        write_tiny_checkpoint(out)
        path = os.path.join(out, 'ckpt.pt')
        with open(path, 'rb') as f:
            good = f.read()
        write(path, content(good))
        return out
    return setup


TRUNCATED, EMPTY, RANDOM = (lambda b: b[:len(b) // 2]), (lambda b: b''), (lambda b: os.urandom(4000))
# (id, script, args, expected words in the error); {data}: a good dataset, {out}: a fresh out_dir
TRAIN_KEYS = [(f'train-{a[2:]}', 'train.py', [a], a[2:].split('=')[0]) for a in [
    '--batch_size=0', '--block_size=0', '--n_layer=0', '--n_head=0', '--n_embd=0', '--eval_interval=0',
    '--log_interval=0', '--eval_iters=0', '--grad_accum=0', '--learning_rate=nan', '--learning_rate=0',
    '--learning_rate=-1', '--min_lr=-1e-4', '--warmup_iters=-5', '--grad_clip=-1', '--dropout=1.5',
    '--dropout=1', '--weight_decay=-0.1', '--beta1=1', '--beta2=-0.5', '--max_iters=-1',
    '--max_minutes=-1', '--max_minutes=inf', '--dtype=float64', '--schedule=linear', '--init_from=foo',
    '--compile=maybe', '--device=foo', f'--seed={2 ** 63}', '--activation=relu', '--window_size=-1']]
CASES = TRAIN_KEYS + [
    ('train-device-cuda-missing', 'train.py', ['--device=cuda:99'], 'device='),
    ('train-shape-too-large', 'train.py', ['--n_embd=100000'], 'needs about'),  # refused before it is built
    ('train-odd-size-bin', 'train.py', [], 'train.bin is',
     lambda tmp, base: {'data': data_copy(tmp, base, lambda d: open(os.path.join(d, 'train.bin'), 'ab').write(b'x'))}),
    ('train-meta-corrupt', 'train.py', [], 'meta.json',
     lambda tmp, base: {'data': data_copy(tmp, base, lambda d: write(os.path.join(d, 'meta.json'), '{"vocab'))}),
    ('train-meta-list', 'train.py', [], 'not a JSON object',
     lambda tmp, base: {'data': data_copy(tmp, base, lambda d: write(os.path.join(d, 'meta.json'), '[1, 2]'))}),
    ('train-meta-vocab-wrong', 'train.py', [], 'eot_token',
     lambda tmp, base: {'data': data_copy(tmp, base, meta_with(vocab_size=100))}),
    ('train-meta-vocab-zero', 'train.py', [], 'vocab_size=0',
     lambda tmp, base: {'data': data_copy(tmp, base, meta_with(vocab_size=0))}),
    ('train-meta-dtype-wrong', 'train.py', [], "dtype='int8'",
     lambda tmp, base: {'data': data_copy(tmp, base, meta_with(dtype='int8'))}),
    ('train-resume-truncated-ckpt', 'train.py', ['--init_from=resume'], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(TRUNCATED)(tmp)}),
    ('train-resume-empty-ckpt', 'train.py', ['--init_from=resume'], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(EMPTY)(tmp)}),
    ('train-resume-random-ckpt', 'train.py', ['--init_from=resume'], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(RANDOM)(tmp)}),
    ('train-read-only-out-dir', 'train.py', [], 'cannot write in',
     lambda tmp, base: {'out': read_only_dir(tmp)}),
    ('train-full-disk', 'full_disk', [], 'No space left on device', None),
    ('sample-top_k', 'sample.py', ['--top_k=-1'], 'top_k'),
    ('sample-temperature-negative', 'sample.py', ['--temperature=-0.5'], 'temperature'),
    ('sample-temperature-nan', 'sample.py', ['--temperature=nan'], 'temperature'),
    ('sample-top_p-zero', 'sample.py', ['--top_p=0'], 'top_p'),
    ('sample-top_p-above-1', 'sample.py', ['--top_p=1.5'], 'top_p'),
    ('sample-max_new_tokens', 'sample.py', ['--max_new_tokens=-1'], 'max_new_tokens'),
    ('sample-num_samples', 'sample.py', ['--num_samples=0'], 'num_samples'),
    ('sample-device-foo', 'sample.py', ['--device=foo'], 'device='),
    ('sample-missing-ckpt', 'sample.py', [], 'no checkpoint', lambda tmp, base: {'out': os.path.join(tmp, 'none')}),
    ('sample-truncated-ckpt', 'sample.py', [], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(TRUNCATED)(tmp)}),
    ('sample-empty-ckpt', 'sample.py', [], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(EMPTY)(tmp)}),
    ('sample-random-ckpt', 'sample.py', [], 'not a readable checkpoint',
     lambda tmp, base: {'out': damaged_run(RANDOM)(tmp)}),
]
CASES = [c if len(c) == 5 else (*c, None) for c in CASES]


def command(case, tmp, base):
    name, script, args, _, setup = case
    paths = {'data': base, 'out': os.path.join(tmp, 'out')}
    if script == 'sample.py':
        paths['out'] = os.path.join(tmp, 'run')
        write_tiny_checkpoint(paths['out'])
    paths.update(setup(tmp, base) if setup else {})
    if script == 'sample.py':
        return [sys.executable, os.path.join(ROOT, 'sample.py'), f"--out_dir={paths['out']}",
                '--max_new_tokens=5', '--device=cpu', *args], {}
    common = [f"--data_dir={paths['data']}", f"--out_dir={paths['out']}", *TINY, *args]
    if script == 'full_disk':  # the first checkpoint is written, the second finds the disk full
        return [sys.executable, '-c', FULL_DISK, os.path.join(ROOT, 'train.py'), *common], {'FAIL_AT': '2'}
    return [sys.executable, os.path.join(ROOT, 'train.py'), *common], {}


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    base = str(tmp_path_factory.mktemp('data'))
    write_byte_dataset(base, tiny_stories(100, seed=1), tiny_stories(20, seed=2))
    jobs = {}
    for case in CASES:
        tmp = str(tmp_path_factory.mktemp(case[0]))
        jobs[case[0]] = (tmp, *command(case, tmp, base))

    def run(item):
        name, (tmp, cmd, env) = item
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=python_env(OMP_NUM_THREADS='1', **env))
        return name, (tmp, r)
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        return dict(pool.map(run, jobs.items()))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error_line(results, case):
    name, _, _, words, _ = case
    if name == 'train-device-cuda-missing' and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip('this machine has a cuda:99')
    tmp, r = results[name]
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r.stdout[-2000:]
    assert len(lines) == 1 and lines[0].startswith('error: '), r.stderr[-3000:]
    assert 'Traceback' not in r.stderr and words in lines[0], lines[0]
    if name == 'train-full-disk':  # the last good checkpoint stays, and no temp file is left
        out = os.path.join(tmp, 'out')
        assert not [f for f in os.listdir(out) if f.endswith('.tmp')], os.listdir(out)
        ck = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
        assert ck['iter_num'] == 2
