"""generate_data.py: the offline generator, the shard format, resume after kill -9, and the
LLM backends against the local stand-in server (tests/fake_openai.py)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import generate_data as gd
from data_words import ADJECTIVES, NOUNS, VERBS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {'id', 'story', 'instruction', 'summary', 'sentence', 'source'}


def run_script(*args, env=None, **kw):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'generate_data.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, **kw)


def read_records(stories_dir):
    records = []
    for name in sorted(os.listdir(stories_dir)):
        if gd.SHARD_RE.match(name):
            with open(os.path.join(stories_dir, name), encoding='utf-8') as f:
                records += [json.loads(line) for line in f]
    return records


def test_vocabulary_is_about_1500_simple_words():
    total = len(NOUNS) + len(VERBS) + len(ADJECTIVES)
    assert 1400 <= total <= 1800
    assert len(set(NOUNS)) == len(NOUNS) and all(w.islower() for w in NOUNS + VERBS + ADJECTIVES)


def test_prompts_are_seeded_and_name_words_and_features():
    a = [gd.story_spec(7, i) for i in range(200)]
    b = [gd.story_spec(7, i) for i in range(200)]
    c = [gd.story_spec(8, i) for i in range(200)]
    assert [(s['words'], s['features']) for s in a] == [(s['words'], s['features']) for s in b]
    assert [s['words'] for s in a] != [s['words'] for s in c]
    assert {f for s in a for f in s['features']} == set(gd.FEATURES)
    spec = next(s for s in a if len(s['features']) >= 2)
    prompt = gd.make_prompt(spec['words'], spec['features'])
    for w in spec['words']:
        assert f'"{w}"' in prompt
    for f in spec['features']:
        assert gd.FEATURES[f] in prompt


def test_offline_records_follow_the_schema_and_use_the_words():
    records = [gd.offline_record(3, i, True) for i in range(300)]
    lengths = []
    for r in records:
        assert set(r) == KEYS and r['source'] == 'offline'
        assert set(r['instruction']) == {'prompt:', 'words', 'features'}
        assert set(r['instruction']['features']) <= set(gd.FEATURES)
        words = r['story'].lower()
        for w in r['instruction']['words']:
            assert w in words
        assert r['sentence'] in r['story'] and r['summary'].endswith('.')
        if 'Dialogue' in r['instruction']['features']:
            assert '"' in r['story']
        else:
            assert '"' not in r['story']
        lengths.append(len(r['story'].split()))
    assert 130 <= sum(lengths) / len(lengths) <= 220      # TinyStories-like length
    assert len({r['story'] for r in records}) == len(records)
    assert [gd.offline_record(3, i, True) for i in range(20)] == records[:20]


def test_offline_run_writes_shards_and_tops_up(tmp_path):
    d = str(tmp_path / 'stories')
    r = run_script('--num_stories=250', f'--stories_dir={d}', '--shard_size=100', '--seed=5')
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(d)) == ['.state', 'stories-00000.jsonl', 'stories-00001.jsonl',
                                     'stories-00002.jsonl']
    first = read_records(d)
    assert len(first) == 250 and len({x['id'] for x in first}) == 250
    # the same command again makes nothing; a bigger num_stories adds only the new ones
    assert run_script('--num_stories=250', f'--stories_dir={d}', '--shard_size=100', '--seed=5').returncode == 0
    assert read_records(d) == first
    assert run_script('--num_stories=320', f'--stories_dir={d}', '--shard_size=100', '--seed=5').returncode == 0
    again = read_records(d)
    assert again[:250] == first and len(again) == 320
    assert again == [gd.offline_record(5, i, False) for i in range(320)]
    report = json.load(open(os.path.join(d, '.state', 'report.json')))
    assert report['stories_in_dir'] == 320


def test_a_torn_last_line_is_cut_and_rewritten(tmp_path):
    d = str(tmp_path)
    w = gd.ShardWriter(d, 100)
    for i in range(5):
        w.write(gd.offline_record(1, i, False))
    w.close()
    path = os.path.join(d, 'stories-00000.jsonl')
    with open(path, 'a', encoding='utf-8') as f:      # what a kill in mid-write leaves
        f.write(json.dumps(gd.offline_record(1, 5, False))[:40])
    w = gd.ShardWriter(d, 100)
    assert len(w.done) == 5
    w.write(gd.offline_record(1, 5, False))
    w.close()
    assert [r['id'] for r in read_records(d)] == [f'1-{i:08d}' for i in range(6)]


def test_offline_kill_9_and_rerun_gives_every_story_once(tmp_path):
    d = str(tmp_path / 'stories')
    n = 40000
    p = subprocess.Popen([sys.executable, 'generate_data.py', f'--num_stories={n}', f'--stories_dir={d}',
                          '--shard_size=3000'], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = os.path.join(d, 'stories-00001.jsonl')
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(shard):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(read_records(d)) < n    # it was killed mid-run (the torn line, if any, is cut on re-run)
    r = run_script(f'--num_stories={n}', f'--stories_dir={d}', '--shard_size=3000')
    assert r.returncode == 0, r.stderr
    ids = [x['id'] for x in read_records(d)]
    assert len(ids) == n and set(ids) == {f'1337-{i:08d}' for i in range(n)}


@pytest.mark.parametrize('args', [['--backend=nope'], ['--num_stories=-1'], ['--num_stories=ten']])
def test_bad_arguments_are_one_line_errors(tmp_path, args):
    r = run_script(*args, f'--stories_dir={tmp_path}')
    assert r.returncode != 0 and r.stderr.strip().startswith('error:') and len(r.stderr.strip().splitlines()) == 1
