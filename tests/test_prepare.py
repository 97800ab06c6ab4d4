"""prepare.py end to end on tiny made-up data: sources, cleaning, bins, meta, errors."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import tokenizer as T
from dataset import open_dataset

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


@pytest.mark.parametrize('case', ['missing', 'empty', 'no_separator', 'not_utf8', 'small_vocab',
                                  'unknown_type', 'no_story_field', 'gpt2_offline'])
def test_bad_input_is_one_line_error(tmp_path, case):
    out, env = f'--data_dir={tmp_path / "ds"}', None
    args = []
    if case == 'missing':
        args, expect = [f'--source={tmp_path / "nope.txt"}'], 'not found'
    elif case == 'empty':
        (tmp_path / 'e.txt').write_text('')
        args, expect = [f'--source={tmp_path / "e.txt"}'], 'is empty'
    elif case == 'no_separator':
        (tmp_path / 'a.txt').write_text('One story without any separator.\nMore text.\n')
        args, expect = [f'--source={tmp_path / "a.txt"}'], 'no <|endoftext|> separator'
    elif case == 'not_utf8':
        good = ''.join(s + '\n<|endoftext|>\n' for s in make_stories(5)).encode()
        (tmp_path / 'b.txt').write_bytes(good + b'Bad \xff byte\n<|endoftext|>\n')
        args, expect = [f'--source={tmp_path / "b.txt"}'], f'byte offset {len(good) + 4}'
    elif case == 'small_vocab':
        args, expect = [f'--source={write_txt(tmp_path / "c.txt", make_stories(5))}',
                        '--vocab_size=200'], 'too small'
    elif case == 'unknown_type':
        (tmp_path / 'd.csv').write_text('x')
        args, expect = [f'--source={tmp_path / "d.csv"}'], 'unknown file type'
    elif case == 'no_story_field':
        (tmp_path / 'e.jsonl').write_text('{"text": "hi"}\n')
        args, expect = [f'--source={tmp_path / "e.jsonl"}'], "no 'story'"
    else:  # tiktoken's gpt2 files cannot be fetched: an empty cache, a dead proxy on 127.0.0.1
        args = [f'--source={write_txt(tmp_path / "f.txt", make_stories(50))}', '--tokenizer=gpt2',
                '--val_fraction=0.2']
        env = {k: v for k, v in os.environ.items() if k.lower() != 'no_proxy'}
        env.update(TIKTOKEN_CACHE_DIR=str(tmp_path / 'tkcache'), HTTPS_PROXY='http://127.0.0.1:9',
                   HTTP_PROXY='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
        expect = "cannot load tiktoken's gpt2"
    r = run(*args, out, env=env, ok=False)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and expect in last, r.stderr[-500:]
    assert not os.path.exists(tmp_path / 'ds' / 'train.bin')
