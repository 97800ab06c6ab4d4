"""The small shared modules: directory locks, JSONL that survives kill -9, opening a dataset,
reading prompts, picking a device."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinystories.dataset import open_dataset
from tinystories.dirlock import lock_dir
from helpers import python_env, tiny_stories, write_byte_dataset
from tinystories.jsonl import append_jsonl, read_jsonl
from tinystories.hardware import pick_device
from tinystories.prompts import read_prompts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = "import sys, time; from tinystories.dirlock import lock_dir; " \
       "lock_dir({path!r}, 'test'); print('held', flush=True); time.sleep(60)"


def test_lock_refuses_a_second_writer_and_is_free_after_kill_9(tmp_path):
    path = str(tmp_path / 'run')
    holder = subprocess.Popen([sys.executable, '-c', HOLD.format(path=path)],
                              stdout=subprocess.PIPE, text=True, env=python_env())
    assert holder.stdout.readline().strip() == 'held'
    try:
        r = subprocess.run([sys.executable, '-c', HOLD.format(path=path).replace(
            "time.sleep(60)", "pass")], capture_output=True, text=True, env=python_env())
        assert r.returncode != 0
        assert r.stderr.strip() == (f"error: {path} is in use by another test (pid {holder.pid}): wait "
                                    f"for it to finish or stop it, or use another directory")
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    lock_dir(path)  # immediately free, though the lock file with the dead pid is still there
    lock_dir(path)  # and taking it twice in one process is fine


def test_forked_children_do_not_keep_the_lock(tmp_path):
    path = str(tmp_path / 'data')
    code = (f"import os, sys, time; from tinystories.dirlock import lock_dir; "
            f"lock_dir({path!r}); pid = os.fork()\n"
            f"if pid == 0: print(os.getpid(), flush=True); time.sleep(30); os._exit(0)\n"
            f"time.sleep(60)")  # the child prints once fork() has returned in it (hooks done)
    parent = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=python_env())
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    try:
        lock_dir(path)  # the child lives on, but closed its copy of the lock at fork
    finally:
        os.kill(child, 9)


def test_jsonl_torn_last_line_is_skipped_and_repaired(tmp_path):
    path = str(tmp_path / 'x.jsonl')
    append_jsonl(path, [{'a': 1}, {'a': 2}])
    with open(path, 'a') as f:
        f.write('{"a": 3, "b"')  # what kill -9 in the middle of a write leaves
    assert read_jsonl(path) == [{'a': 1}, {'a': 2}]
    append_jsonl(path, [{'a': 4}])
    assert read_jsonl(path) == [{'a': 1}, {'a': 2}, {'a': 4}]
    assert read_jsonl(str(tmp_path / 'absent.jsonl')) == []


def test_jsonl_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / 'x.jsonl'
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(SystemExit, match=r'x.jsonl line 2 is not valid JSON'):
        read_jsonl(str(path))


def test_dataset_checks_bins_against_meta(tmp_path):
    d = str(tmp_path / 'ds')
    write_byte_dataset(d, tiny_stories(20), tiny_stories(5, seed=1))
    ds = open_dataset(d)
    stories = ds.stories('val')
    assert len(stories) == 5 and ds.texts('val') == tiny_stories(5, seed=1)
    assert ds.encoding().decode(stories[0].tolist()) == tiny_stories(5, seed=1)[0]
    val = os.path.join(d, 'val.bin')
    data = np.fromfile(val, dtype=np.uint16)
    data[:-10].tofile(val)  # cut short
    with pytest.raises(SystemExit, match='val.bin is .* bytes but meta.json says'):
        open_dataset(d)


@pytest.mark.parametrize('meta, message', [
    ('not json', 'cannot read'),
    ('[1, 2]', 'not a JSON object'),
    ('{"vocab_size": 0, "eot_token": 0, "tokenizer": "b", "pat_str": "x"}', 'vocab_size=0'),
    ('{"vocab_size": 257, "eot_token": 256, "tokenizer": "b", "pat_str": "x", "dtype": "int8"}',
     "dtype='int8'"),
    ('{"vocab_size": 257}', 'lacks eot_token'),
])
def test_dataset_meta_errors(tmp_path, meta, message):
    (tmp_path / 'meta.json').write_text(meta)
    with pytest.raises(SystemExit, match=message):
        open_dataset(str(tmp_path))


def test_dataset_dir_that_is_a_file(tmp_path):
    f = tmp_path / 'file'
    f.write_text('x')
    with pytest.raises(SystemExit, match='is a file'):
        open_dataset(str(f))


def test_read_prompts(tmp_path):
    assert read_prompts('Once upon a time') == ['Once upon a time']
    txt = tmp_path / 'p.txt'
    txt.write_text('Words: dog, ball\nStory:\n')
    assert read_prompts(f'FILE:{txt}') == ['Words: dog, ball\nStory:']
    js = tmp_path / 'p.jsonl'
    js.write_text(json.dumps({'prompt': 'a\nb'}) + '\n\n' + json.dumps({'prompt': 'c'}) + '\n')
    assert read_prompts(f'FILE:{js}') == ['a\nb', 'c']
    js.write_text('{"text": 1}\n')
    with pytest.raises(SystemExit, match='line 1 is not a JSON object with a "prompt"'):
        read_prompts(f'FILE:{js}')
    with pytest.raises(SystemExit, match='cannot read'):
        read_prompts(f'FILE:{tmp_path}/absent.txt')


def test_pick_device():
    assert pick_device('cpu') == 'cpu'
    assert pick_device('auto') in ('cpu', 'cuda')
    with pytest.raises(SystemExit, match="device='foo'"):
        pick_device('foo')
    if not __import__('torch').cuda.is_available():
        with pytest.raises(SystemExit, match='no CUDA GPU'):
            pick_device('cuda')
