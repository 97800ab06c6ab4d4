"""prepare.py end to end on tiny made-up data: sources, cleaning, bins, meta, errors."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from tinystories import tokenizer as T
from tinystories.dataset import open_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ['Lily', 'Tom', 'Ben', 'Mia', 'Sue', 'Max']
THINGS = ['ball', 'cat', 'tree', 'boat', 'cake', 'kite']


def make_stories(n, seed=0):
    rng = random.Random(seed)
    return [f"Once upon a time, {rng.choice(NAMES)} had a {rng.choice(THINGS)}. "
            f"It was {rng.choice(['big', 'red', 'soft'])} and {i} days old.\n"
            f"{rng.choice(NAMES)} said, \"I like it!\" The end." for i in range(n)]


def write_txt(path, stories):
    path.write_text(''.join(s + '\n<|endoftext|>\n' for s in stories), encoding='utf-8')
    return str(path)


def run(*args, env=None, ok=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'prepare.py'), *args], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def read_split(data_dir, split):
    meta = json.load(open(os.path.join(data_dir, 'meta.json')))
    ids = np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=meta['dtype'])
    enc = open_dataset(data_dir).encoding()
    text = enc.decode(ids.tolist())
    return meta, ids, [s for s in text.split(T.EOT) if s]


def test_txt_with_val_source_cleaning_and_rerun(tmp_path):
    stories = make_stories(150)
    dirty = stories + [stories[3],                              # exact duplicate
                       '   ',                                   # empty
                       'Mom said, â€œHi!â€\x9d It wasnâ€™t  cold.\r\nThe  end. ']
    train = write_txt(tmp_path / 'train.txt', dirty)
    val = write_txt(tmp_path / 'val.txt', make_stories(20, seed=1)[:15] + [stories[0]])
    out = str(tmp_path / 'ds')
    r = run(f'--source={train}', f'--val_source={val}', f'--data_dir={out}', '--vocab_size=300',
            '--workers=2', '--block_mb=0.002')
    assert 'dropped: duplicate' in r.stdout and 'repaired: mojibake' in r.stdout
    meta, ids, got = read_split(out, 'train')
    assert meta['vocab_size'] == 300 and meta['eot_token'] == 299 and meta['dtype'] == 'uint16'
    assert meta['tokenizer'] == 'bpe' and meta['pat_str'] == T.PAT_STR
    assert ids[0] == 299 and ids[-1] == 299
    # duplicates dropped: of stories[3] within train, and of stories[0] that val already holds
    want = [s for i, s in enumerate(stories) if i != 0] + ['Mom said, “Hi!” It wasn’t cold.\nThe end.']
    assert got == want
    assert meta['splits']['train'] == {'stories': len(want), 'tokens': len(ids),
                                       'bytes': sum(len(s.encode()) for s in want)}
    vmeta, vids, vgot = read_split(out, 'val')
    assert len(vgot) == 16 and vmeta['splits']['val']['tokens'] == len(vids)
    assert not os.path.exists(os.path.join(out, '.prepare'))
    # the same command again is a no-op; another tokenizer is refused unless --force
    assert 'up to date' in run(f'--source={train}', f'--val_source={val}', f'--data_dir={out}',
                               '--vocab_size=300').stdout
    r = run(f'--source={train}', f'--data_dir={out}', '--vocab_size=320', ok=False)
    assert r.returncode != 0 and 'another tokenizer' in r.stderr
    run(f'--source={train}', f'--val_source={val}', f'--data_dir={out}', '--vocab_size=320', '--force')
    assert json.load(open(os.path.join(out, 'meta.json')))['vocab_size'] == 320


def test_stories_dir_jsonl_instruct_and_holdout(tmp_path):
    d = tmp_path / 'stories'
    (d / '.state').mkdir(parents=True)
    (d / '.state' / 'pending.jsonl').write_text('this is not a story file\n')
    (d / 'notes.md').write_text('ignored')
    rng = random.Random(3)
    stories = make_stories(300, seed=2)
    for shard in range(2):
        with open(d / f'stories-{shard:05d}.jsonl', 'w') as f:
            for i, s in enumerate(stories[shard::2]):
                rec = {'id': f'{shard}-{i}', 'story': s, 'summary': 'A child has a toy.',
                       'sentence': s.split('\n')[0], 'source': 'offline',
                       'instruction': {'prompt:': 'Write a story.', 'words': rng.sample(THINGS, 2),
                                       'features': ['Dialogue']}}
                f.write(json.dumps(rec) + '\n')
    outs = [str(tmp_path / f'ds{i}') for i in range(2)]
    for out in outs:
        run(f'--source={d}', f'--data_dir={out}', '--vocab_size=280', '--format=instruct',
            '--val_fraction=0.1')
    meta, ids, got = read_split(outs[0], 'train')
    _, _, val = read_split(outs[0], 'val')
    assert meta['format'] == 'instruct' and len(got) + len(val) == 300 and 10 < len(val) < 60
    for text in got + val:
        head, _, story = text.partition('Story: ')
        lines = head.strip('\n').split('\n')
        assert story in stories and 1 <= len(lines) <= 4
        assert all(line.split(':')[0] in ('Summary', 'Features', 'Sentence', 'Words') for line in lines)
    assert len({text.partition('Story: ')[0] for text in got}) > 5  # subsets and orders vary
    for split in ('train.bin', 'val.bin'):  # seeded: the same command makes the same bins
        assert open(os.path.join(outs[0], split), 'rb').read() == open(os.path.join(outs[1], split), 'rb').read()


def test_hub_json_list(tmp_path):
    recs = [{'story': s, 'instruction': {'prompt:': '', 'words': [], 'features': []},
             'summary': '', 'source': 'GPT-4'} for s in make_stories(120, seed=5)]
    (tmp_path / 'data00.json').write_text(json.dumps(recs))
    out = str(tmp_path / 'ds')
    run(f'--source={tmp_path / "data00.json"}', f'--data_dir={out}', '--vocab_size=270',
        '--val_fraction=0.2')
    meta = json.load(open(os.path.join(out, 'meta.json')))
    assert meta['splits']['train']['stories'] + meta['splits']['val']['stories'] == 120


def write_shard(path, stories, seed=0):
    rng = random.Random(seed)
    with open(path, 'w') as f:
        for i, s in enumerate(stories):
            f.write(json.dumps({'id': str(i), 'story': s, 'summary': f'Story {i}.', 'sentence': s.split('.')[0] + '.',
                                'instruction': {'words': rng.sample(THINGS, 2), 'features': ['Dialogue']}}) + '\n')
    return str(path)


def bad_input(tmp_path, case):
    """(arguments, what the error must say) for one bad input."""
    txt = lambda n=5: write_txt(tmp_path / 'ok.txt', make_stories(n))  # noqa: E731
    if case == 'missing':
        return [f'--source={tmp_path / "nope.txt"}'], 'not found'
    if case == 'empty':
        (tmp_path / 'e.txt').write_text('')
        return [f'--source={tmp_path / "e.txt"}'], 'is empty'
    if case == 'no_separator':
        (tmp_path / 'a.txt').write_text('One story without any separator.\nMore text.\n')
        return [f'--source={tmp_path / "a.txt"}'], 'no <|endoftext|> separator'
    if case == 'not_utf8':
        good = ''.join(s + '\n<|endoftext|>\n' for s in make_stories(5)).encode()
        (tmp_path / 'b.txt').write_bytes(good + b'Bad \xff byte\n<|endoftext|>\n')
        return [f'--source={tmp_path / "b.txt"}'], f'byte offset {len(good) + 4}'
    if case == 'unknown_type':
        (tmp_path / 'd.csv').write_text('x')
        return [f'--source={tmp_path / "d.csv"}'], 'unknown file type'
    if case == 'no_story_field':
        (tmp_path / 'e.jsonl').write_text('{"text": "hi"}\n')
        return [f'--source={tmp_path / "e.jsonl"}'], "no 'story'"
    if case == 'corrupt_middle_line':
        path = write_shard(tmp_path / 'stories-00000.jsonl', make_stories(6))
        lines = open(path).read().splitlines(keepends=True)
        open(path, 'w').write(''.join(lines[:3] + ['{"id": "7", "sto\n'] + lines[3:]))
        return [f'--source={path}'], 'stories-00000.jsonl line 4 is not valid JSON'
    if case == 'torn_last_line':
        path = write_shard(tmp_path / 'stories-00000.jsonl', make_stories(6))
        open(path, 'a').write('{"id": "7", "sto')
        return [f'--source={path}'], 'line 7 is torn'
    if case in ('random_tar_gz', 'truncated_tar_gz'):
        import io
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w:gz') as tar:
            data = json.dumps([{'story': s} for s in make_stories(200)]).encode()
            info = tarfile.TarInfo('data00.json')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        raw = random.Random(1).randbytes(4000) if case == 'random_tar_gz' else raw[:len(raw) // 2]
        (tmp_path / 'all.tar.gz').write_bytes(raw)
        return [f'--source={tmp_path / "all.tar.gz"}'], 'is not a readable .tar.gz'
    if case == 'data_dir_is_a_file':
        (tmp_path / 'ds').write_text('a file')
        return [f'--source={txt()}'], 'is a file'
    settings = {
        'vocab_too_small': (['--vocab_size=200'], 'too small'),
        'vocab_too_large': ([f'--vocab_size={2 ** 33}'], 'too large'),
        'val_fraction_0': (['--val_fraction=0'], 'must be in (0, 1)'),
        'val_fraction_1': (['--val_fraction=1'], 'must be in (0, 1)'),
        'val_fraction_nan': (['--val_fraction=nan'], 'must be in (0, 1)'),
        'workers_negative': (['--workers=-1'], '--workers=-1'),
        'block_mb_0': (['--block_mb=0'], '--block_mb=0'),
        'format': (['--format=xml'], 'use plain or instruct'),
        'tokenizer': (['--tokenizer=nope'], 'is not a model location'),
        'holdout_name': (['--format=instruct', '--instruct_holdout=Summary,Nope'], 'Nope is not one of'),
        'holdout_plain': (['--instruct_holdout=Summary'], 'needs --format=instruct'),
        'unknown_key': (['--vocab=300'], 'vocab'),
    }
    args, expect = settings[case]
    return [f'--source={txt()}', *args], expect


CASES = ['missing', 'empty', 'no_separator', 'not_utf8', 'unknown_type', 'no_story_field',
         'corrupt_middle_line', 'torn_last_line', 'random_tar_gz', 'truncated_tar_gz',
         'data_dir_is_a_file', 'vocab_too_small', 'vocab_too_large', 'val_fraction_0',
         'val_fraction_1', 'val_fraction_nan', 'workers_negative', 'block_mb_0', 'format',
         'tokenizer', 'holdout_name', 'holdout_plain', 'unknown_key']


@pytest.mark.parametrize('case', CASES)
def test_bad_input_is_one_line_error(tmp_path, case):
    args, expect = bad_input(tmp_path, case)
    r = run(*args, f'--data_dir={tmp_path / "ds"}', ok=False)
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and expect in lines[0], r.stderr[-500:]
    assert not os.path.exists(tmp_path / 'ds' / 'train.bin')


def test_no_gpt2_tokenizer_offline_is_one_line_error(tmp_path):
    """tiktoken's gpt2 files cannot be fetched: an empty cache, a dead proxy on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k.lower() != 'no_proxy'}
    env.update(TIKTOKEN_CACHE_DIR=str(tmp_path / 'tkcache'), HTTPS_PROXY='http://127.0.0.1:9',
               HTTP_PROXY='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
    r = run(f'--source={write_txt(tmp_path / "f.txt", make_stories(50))}', '--tokenizer=gpt2',
            '--val_fraction=0.2', f'--data_dir={tmp_path / "ds"}', env=env, ok=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and last.startswith('error: ') and "cannot load tiktoken's gpt2" in last


def run_on_a_read_only_dir(out, cmd):
    """Run cmd with directory `out` read-only. Root ignores permission bits, so as root `out`
    becomes a read-only mount in a mount namespace of the command's own (unshare)."""
    import shlex
    import shutil
    os.makedirs(out)
    if os.geteuid() != 0:
        os.chmod(out, 0o555)
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        finally:
            os.chmod(out, 0o755)
    if not shutil.which('unshare'):
        pytest.skip('root without unshare: cannot make a read-only directory')
    script = f"mount -t tmpfs -o ro tmpfs {shlex.quote(out)} && exec {shlex.join(cmd)}"
    r = subprocess.run(['unshare', '-m', 'sh', '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if 'mount' in r.stderr and 'error:' not in r.stderr:
        pytest.skip(f'cannot mount read-only here: {r.stderr.strip()}')
    return r


def test_a_read_only_data_dir_is_one_line_error(tmp_path):
    src = write_txt(tmp_path / 'ok.txt', make_stories(20))
    out = str(tmp_path / 'ds')
    r = run_on_a_read_only_dir(out, [sys.executable, os.path.join(ROOT, 'prepare.py'), f'--source={src}',
                                     f'--data_dir={out}', '--vocab_size=270'])
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'cannot write in' in lines[0], r.stderr


def test_a_second_prepare_on_one_data_dir_is_refused(tmp_path):
    from tinystories import dirlock
    out = str(tmp_path / 'ds')
    dirlock.lock_dir(out, 'test')
    try:
        r = run(f'--source={write_txt(tmp_path / "a.txt", make_stories(20))}', f'--data_dir={out}', ok=False)
    finally:
        dirlock.unlock_dir(out)
    assert r.returncode != 0 and r.stderr.startswith('error:') and f'pid {os.getpid()}' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def children(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def test_kill_9_mid_run_then_an_immediate_rerun_succeeds(tmp_path):
    """The worker processes must not keep data_dir's lock once their parent is killed: killed
    as soon as its pool has started, prepare.py leaves workers busy with 2 MB blocks, and the
    lock is free at once all the same (without dirlock's at-fork close it is not)."""
    import signal
    import time
    from tinystories import dirlock
    src = write_txt(tmp_path / 'a.txt', make_stories(40000))
    out = tmp_path / 'ds'
    args = [sys.executable, os.path.join(ROOT, 'prepare.py'), f'--source={src}', f'--data_dir={out}',
            '--vocab_size=280', '--workers=2', '--block_mb=2', '--val_fraction=0.01']
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and len(workers) < 2 and p.poll() is None:
        workers = children(p.pid)
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert any(alive(w) for w in workers) or not workers   # (workers busy with their blocks)
    # a worker closes its copy of the lock first thing after fork(); under load a worker may
    # exist a moment before it has run at all, so wait (briefly) for each to get that far
    lock = os.path.realpath(out / '.lock')
    def holds(w):
        try:
            return any(os.path.realpath(f'/proc/{w}/fd/{fd}') == lock for fd in os.listdir(f'/proc/{w}/fd'))
        except OSError:  # the worker has ended
            return False
    while time.time() < deadline and any(holds(w) for w in workers):
        time.sleep(0.01)
    dirlock.lock_dir(str(out), 'test')       # free, while those workers still run
    dirlock.unlock_dir(str(out))
    assert not (out / 'meta.json').exists()  # killed mid-run
    run(*args[2:])                            # and an immediate re-run completes
    meta = json.load(open(out / 'meta.json'))
    assert meta['splits']['train']['stories'] + meta['splits']['val']['stories'] == 40000


def test_instruct_holdout_keeps_a_combination_out_of_training(tmp_path):
    d = tmp_path / 'stories'
    d.mkdir()
    stories = make_stories(400, seed=4)
    write_shard(d / 'stories-00000.jsonl', stories)
    out = str(tmp_path / 'ds')
    r = run(f'--source={d}', f'--data_dir={out}', '--vocab_size=280', '--format=instruct',
            '--val_fraction=0.3', '--instruct_holdout=Summary,Words')
    assert 'held-out combination drawn again' in r.stdout
    meta, _, train = read_split(out, 'train')
    _, _, val = read_split(out, 'val')
    assert meta['instruct_holdout'] == ['Summary', 'Words']
    heads = lambda texts: [{line.split(':')[0] for line in t.partition('Story: ')[0].splitlines()} for t in texts]  # noqa: E731
    assert not any({'Summary', 'Words'} <= h for h in heads(train))
    assert any('Summary' in h for h in heads(train)) and any('Words' in h for h in heads(train))
    assert any({'Summary', 'Words'} <= h for h in heads(val))       # val is rendered as usual
