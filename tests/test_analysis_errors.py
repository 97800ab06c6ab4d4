"""grade.py and diversity.py on bad input: each case is a row run as a subprocess, and must end
with a non-zero exit, exactly one line on stderr starting with `error:`, and no traceback.

The rows run concurrently (each is mostly Python starting up and importing torch), once per
session; each row is then its own test."""
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import tiny_stories, write_byte_dataset, write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY_ENV = 'ANALYSIS_ERRORS_TEST_KEY'


def setup(tmp):
    """Runs and datasets, good and bad, in tmp; returns {name: path}."""
    p = {k: os.path.join(tmp, k) for k in ('run', 'data', 'trunc', 'empty',
                                            'random', 'corrupt', 'locked')}
    stories = tiny_stories(30)
    write_tiny_checkpoint(p['run'], block_size=128)
    write_byte_dataset(p['data'], stories[:25], stories[25:])
    ckpt = open(os.path.join(p['run'], 'ckpt.pt'), 'rb').read()
    for name, data in (('trunc', ckpt[:len(ckpt) // 2]), ('empty', b''), ('random', os.urandom(4096))):
        os.makedirs(p[name])
        open(os.path.join(p[name], 'ckpt.pt'), 'wb').write(data)
    shutil.copytree(p['run'], p['corrupt'])
    state = os.path.join(p['corrupt'], 'grade', '.state')
    os.makedirs(state)
    with open(os.path.join(state, 'samples-0123456789abcdef.jsonl'), 'w') as f:
        f.write('{"key": "k", "batch": 0, "tokens": [[1]]}\n{"key": "k", "bat\n{"key": "k", "batch": 1}\n')
    shutil.copytree(p['run'], p['locked'])
    return p


GRADE_EVAL = ['--grader_model=fake', '--base_url=http://127.0.0.1:9/v1', f'--api_key_env={KEY_ENV}']
CASES = {  # name: (script, args, words the error line must contain)
    'grade batch_size=0': ('grade.py', ['--out_dir={run}', '--probes', '--batch_size=0'], ['batch_size']),
    'grade temperature<0': ('grade.py', ['--out_dir={run}', '--temperature=-1'], ['temperature']),
    'grade temperature=nan': ('grade.py', ['--out_dir={run}', '--temperature=nan'], ['temperature']),
    'grade max_new_tokens=0': ('grade.py', ['--out_dir={run}', '--max_new_tokens=0'], ['max_new_tokens']),
    'grade num_samples=0': ('grade.py', ['--out_dir={run}', '--num_samples=0'], ['num_samples']),
    'grade concurrency=0': ('grade.py', ['--out_dir={run}', '--concurrency=0'], ['concurrency']),
    'grade probe_norm': ('grade.py', ['--out_dir={run}', '--probes', '--probe_norm=words'], ['probe_norm']),
    'grade truncated ckpt': ('grade.py', ['--out_dir={trunc}', '--probes'], ['ckpt.pt']),
    'grade empty ckpt': ('grade.py', ['--out_dir={empty}', '--probes'], ['ckpt.pt']),
    'grade random ckpt': ('grade.py', ['--out_dir={random}', '--probes'], ['ckpt.pt']),
    'grade corrupt state line': ('grade.py', ['--out_dir={corrupt}'] + GRADE_EVAL, ['samples-', 'line 2']),
    'grade device': ('grade.py', ['--out_dir={run}', '--probes', '--device=foo'], ['device']),
    'diversity batch_size=0': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--batch_size=0'], ['batch_size']),
    'diversity num_stories=0': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--num_stories=0'], ['num_stories']),
    'diversity max_new_tokens=0': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--max_new_tokens=0'], ['max_new_tokens']),
    'diversity temperature<0': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--temperature=-0.5'], ['temperature']),
    'diversity top_k<0': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--top_k=-1'], ['top_k']),
    'diversity cut': ('diversity.py', ['--out_dir={run}', '--data_dir={data}', '--cut=1.5'], ['cut']),
    'diversity truncated ckpt': ('diversity.py', ['--out_dir={trunc}', '--data_dir={data}'], ['ckpt.pt']),
    'diversity random ckpt': ('diversity.py', ['--out_dir={random}', '--data_dir={data}'], ['ckpt.pt']),
    'diversity second writer': ('diversity.py', ['--out_dir={locked}', '--data_dir={data}'], ['in use', 'pid']),
}


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    from tinystories.dirlock import lock_dir, unlock_dir
    paths = setup(str(tmp_path_factory.mktemp('bad')))
    held = os.path.join(paths['locked'], 'diversity')
    lock_dir(held, 'diversity.py')  # as a diversity.py already running on that run would
    env = dict(os.environ, **{KEY_ENV: 'sk-test'})

    def run(case):
        script, args, _ = CASES[case]
        cmd = [sys.executable, script] + [a.format(**paths) for a in args]
        return case, subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    try:
        with ThreadPoolExecutor(4) as pool:
            yield dict(pool.map(run, CASES))
    finally:
        unlock_dir(held)


@pytest.mark.parametrize('case', list(CASES))
def test_bad_input_is_one_line_error(results, case):
    r = results[case]
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (case, r.stdout, r.stderr)
    assert 'Traceback' not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith('error:'), r.stderr
    for word in CASES[case][2]:
        assert word in lines[0], (word, lines[0])
    if case == 'diversity second writer':
        assert str(os.getpid()) in lines[0]
