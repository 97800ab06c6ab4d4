"""generate_data.py: the offline generator, the shard format, resume after kill -9, one writer
per stories_dir, settings refused before any work, and the LLM backends against the local
stand-in server (tests/fake_openai.py): every story once, exit codes that tell the truth, the
key never printed."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import generate_data as gd
from tinystories.words import ADJECTIVES, NOUNS, VERBS
from tinystories.jsonl import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {'id', 'story', 'instruction', 'summary', 'sentence', 'source'}


def run_script(*args, env=None, **kw):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'generate_data.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, **kw)


def read_records(stories_dir):
    """Every record of the shards. A killed run may have left a torn last line: read_jsonl
    leaves it out (a re-run cuts it off and writes that story again)."""
    records = []
    for name in sorted(os.listdir(stories_dir)):
        if gd.SHARD_RE.match(name):
            records += read_jsonl(os.path.join(stories_dir, name))
    return records


def wait_for(predicate, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


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
    assert sorted(os.listdir(d)) == ['.lock', '.state', 'stories-00000.jsonl', 'stories-00001.jsonl',
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
    n = 6000
    p = subprocess.Popen([sys.executable, 'generate_data.py', f'--num_stories={n}', f'--stories_dir={d}',
                          '--shard_size=1000'], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: os.path.exists(os.path.join(d, 'stories-00001.jsonl')))
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(read_records(d)) < n    # killed mid-run (a torn last line is left out, cut on re-run)
    r = run_script(f'--num_stories={n}', f'--stories_dir={d}', '--shard_size=1000')
    assert r.returncode == 0, r.stderr
    ids = [x['id'] for x in read_records(d)]
    assert len(ids) == n and set(ids) == {f'1337-{i:08d}' for i in range(n)}


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    d = str(tmp_path / 'stories')
    p = subprocess.Popen([sys.executable, 'generate_data.py', '--num_stories=200000', f'--stories_dir={d}'],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(os.path.join(d, 'stories-00000.jsonl')))
        r = run_script('--num_stories=10', f'--stories_dir={d}')
        assert r.returncode != 0 and r.stderr.startswith('error:') and f'pid {p.pid}' in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the kernel released the dead run's lock: an immediate re-run goes ahead, and tops up
    r = run_script('--num_stories=3000', f'--stories_dir={d}')
    assert r.returncode == 0, r.stderr
    ids = [x['id'] for x in read_records(d)]
    assert len(ids) == len(set(ids)) >= 3000


BAD_SETTINGS = [
    ['--backend=nope'], ['--num_stories=-1'], ['--num_stories=0'], ['--num_stories=ten'],
    ['--shard_size=0'], ['--nosuchkey=1'],
    ['--backend=openai', '--concurrency=0'], ['--backend=openai', '--min_words=500', '--max_words=10'],
    ['--backend=openai', '--min_words=-1'], ['--backend=openai', '--max_requests=-5'],
    ['--backend=openai', '--max_cost_usd=-1'], ['--backend=openai', '--max_cost_usd=nan'],
    ['--backend=openai', '--temperature=3'], ['--backend=openai', '--temperature=nan'],
    ['--backend=openai', '--max_tokens=0'], ['--backend=openai', '--min_words=700'],
    ['--backend=openai', '--timeout=0'], ['--backend=openai', '--max_retries=-1'],
    ['--backend=batch', '--poll_seconds=-1'], ['--backend=openai', '--base_url=localhost:8000/v1'],
    ['--backend=openai', '--base_url=not a url'], ['STORIES_DIR_IS_A_FILE'],
]


@pytest.mark.parametrize('args', BAD_SETTINGS, ids=' '.join)
def test_bad_settings_are_one_line_errors_before_any_work(tmp_path, args):
    if args == ['STORIES_DIR_IS_A_FILE']:
        (tmp_path / 'f').write_text('a file')
        args = [f'--stories_dir={tmp_path / "f"}']
    with FakeOpenAI() as server:   # (not the base_url of these runs: it must see no request)
        r = run_script(f'--stories_dir={tmp_path}/s', *args, '--yes', env=llm_env())
        assert server.chat_calls == 0
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and 'Traceback' not in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / 's' / '.state')


def test_a_corrupt_middle_line_in_a_shard_is_a_one_line_error(tmp_path):
    d = tmp_path / 's'
    assert run_script('--num_stories=5', f'--stories_dir={d}').returncode == 0
    shard = d / 'stories-00000.jsonl'
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text(''.join(lines[:2] + ['{"id": "oops\n'] + lines[2:]))
    r = run_script('--num_stories=8', f'--stories_dir={d}')
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith('error:') and 'stories-00000.jsonl line 3' in r.stderr


# ----------------------------------------------------------------------------- LLM backends
from tinystories.fake_openai import FakeOpenAI  # noqa: E402

KEY = 'sk-test-NEVER-WRITE-ME-0123456789'


def llm_env():
    return dict(os.environ, OPENAI_API_KEY=KEY)


def test_answers_are_validated_by_words_length_and_refusal():
    spec = {'words': ['run', 'ball', 'shiny'], 'features': []}
    story = 'Tom ran to the park. He saw a shiny red ball. ' * 8
    assert gd.check_answer(spec, story) is None
    assert gd.check_answer(spec, story.replace('ran', 'sat')) == 'missing words'
    assert gd.check_answer(spec, 'Tom ran with a shiny ball.') == 'too short'
    assert gd.check_answer(spec, "I'm sorry, but I can't write that. " * 10) == 'refusal'
    assert gd.split_answer('Once upon a time.\n\nSummary: A tale.') == ('Once upon a time.', 'A tale.')


@pytest.mark.parametrize('backend', ['openai', 'batch'])
def test_llm_backends_write_records_and_never_the_key(tmp_path, backend):
    d = tmp_path / 'stories'
    with FakeOpenAI(latency=0.01) as server:
        server.faults += ['refusal', '429', 'empty', '500']
        r = run_script(f'--backend={backend}', '--num_stories=12', f'--stories_dir={d}', '--instruct',
                       f'--base_url={server.base_url}', '--yes', '--min_words=20', '--poll_seconds=0.05',
                       '--concurrency=4', env=llm_env())
        assert r.returncode == 0, r.stderr
        assert f'Bearer {KEY}' in server.auth_headers        # the key was used...
    records = read_records(d)
    assert len(records) == 12 and {x['id'] for x in records} == {f'1337-{i:08d}' for i in range(12)}
    for rec in records:
        assert set(rec) == KEYS and rec['source'] == 'gpt-4.1-mini' and rec['summary']
        assert 'Summary:' not in rec['story'] and rec['sentence'] in rec['story']
        assert rec['instruction']['words'] == gd.story_spec(1337, int(rec['id'][-8:]))['words']
    report = json.load(open(d / '.state' / 'report.json'))
    assert report['stories_kept'] == 12 and report['cost_usd'] > 0
    if backend == 'openai':
        assert report['rejected'] == {'refusal': 1, 'empty': 1}
    for root, _, files in os.walk(tmp_path):                 # ...and written nowhere
        for name in files:
            assert KEY.encode() not in open(os.path.join(root, name), 'rb').read(), name
    assert KEY not in r.stdout + r.stderr


def test_a_paid_run_without_yes_and_without_a_terminal_stops(tmp_path):
    with FakeOpenAI() as server:
        r = run_script('--backend=openai', '--num_stories=3', f'--stories_dir={tmp_path}',
                       f'--base_url={server.base_url}', env=llm_env(), stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith('error:')
        assert '--yes' in r.stderr and server.chat_calls == 0


def test_openai_kill_9_and_rerun_loses_nothing_and_pays_nothing_twice(tmp_path):
    d = tmp_path / 'stories'
    n = 60
    args = ['--backend=openai', f'--num_stories={n}', f'--stories_dir={d}', '--yes', '--min_words=20',
            '--concurrency=4']
    log = d / '.state' / 'llm' / 'responses.jsonl'
    with FakeOpenAI(latency=0.05) as server:
        p = subprocess.Popen([sys.executable, 'generate_data.py', *args, f'--base_url={server.base_url}'],
                             cwd=ROOT, env=llm_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline and (not log.exists() or log.read_text().count('\n') < 15):
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        paid_before = [x['custom_id'] for x in read_jsonl(log)]
        assert 15 <= len(paid_before) < n
        r = run_script(*args, f'--base_url={server.base_url}', env=llm_env())
        assert r.returncode == 0, r.stderr
        prompts = [body['messages'][0]['content'] for body in server.answered]
    ids = [x['id'] for x in read_records(d)]
    assert sorted(ids) == [f'1337-{i:08d}' for i in range(n)]
    # an answer logged before the kill was not asked for again
    for cid in paid_before:
        spec = gd.story_spec(1337, int(cid[-8:]))
        assert prompts.count(gd.make_prompt(spec['words'], spec['features'])) == 1
    assert len(prompts) <= n + 4      # at most the requests in flight at the kill, twice


# ----------------------------------------------------------------------------- exit codes
def test_an_unreachable_server_exits_non_zero_and_says_how_many_are_unfinished(tmp_path):
    with socket.socket() as sock:       # a port with nobody listening
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    t0 = time.time()
    r = run_script('--backend=openai', '--num_stories=20', f'--stories_dir={tmp_path}', '--yes',
                   f'--base_url=http://127.0.0.1:{port}/v1', '--max_retries=1', '--concurrency=2',
                   env=llm_env())
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('error: 20 of 20 stories unfinished') and 'APIConnectionError' in last
    assert f'is the server at http://127.0.0.1:{port}/v1 up?' in last
    assert 're-run' in last and time.time() - t0 < 20


def test_a_server_failing_every_request_exits_non_zero_and_a_rerun_continues(tmp_path):
    d = tmp_path / 's'
    args = ['--backend=openai', '--num_stories=12', f'--stories_dir={d}', '--yes', '--min_words=20',
            '--max_retries=0', '--concurrency=2']
    with FakeOpenAI() as server:
        server.faults += [None] * 4     # four answers, then a server that fails everything
        server.always = '500'
        r = run_script(*args, f'--base_url={server.base_url}', env=llm_env())
        assert r.returncode != 0 and 'Traceback' not in r.stderr
        assert re.search(r'error: 8 of 12 stories unfinished .*http 500', r.stderr), r.stderr
        assert server.chat_calls < 12 + 4       # it stopped sending: five failures in a row
        server.always = None
        r = run_script(*args, f'--base_url={server.base_url}', env=llm_env())
        assert r.returncode == 0, r.stderr
        assert len(server.answered) == 12       # the four kept were not asked for again
    ids = [x['id'] for x in read_records(d)]
    assert sorted(ids) == [f'1337-{i:08d}' for i in range(12)]


def test_a_server_that_echoes_the_key_does_not_get_it_printed(tmp_path):
    with FakeOpenAI() as server:
        server.always = '401-echo'
        r = run_script('--backend=openai', '--num_stories=3', f'--stories_dir={tmp_path}', '--yes',
                       f'--base_url={server.base_url}', env=llm_env())
    assert r.returncode != 0 and 'Incorrect API key' in r.stderr
    assert KEY not in r.stdout + r.stderr and KEY[:10] not in r.stdout + r.stderr
    for root, _, files in os.walk(tmp_path):
        for name in files:
            assert KEY.encode() not in open(os.path.join(root, name), 'rb').read(), name


def test_minimum_words_that_no_answer_can_reach_cost_nothing(tmp_path):
    with FakeOpenAI() as server:
        r = run_script('--backend=openai', '--num_stories=3', f'--stories_dir={tmp_path}', '--yes',
                       '--min_words=500', '--max_words=10', f'--base_url={server.base_url}', env=llm_env())
        assert r.returncode != 0 and server.chat_calls == 0 and 'min_words' in r.stderr


def test_a_corrupt_middle_line_in_the_response_log_is_a_one_line_error(tmp_path):
    d = tmp_path / 's'
    args = ['--backend=openai', '--num_stories=4', f'--stories_dir={d}', '--yes', '--min_words=20']
    with FakeOpenAI() as server:
        assert run_script(*args, f'--base_url={server.base_url}', env=llm_env()).returncode == 0
        log = d / '.state' / 'llm' / 'responses.jsonl'
        lines = log.read_text().splitlines(keepends=True)
        log.write_text(''.join(lines[:1] + ['{"custom_id": \n'] + lines[1:]))
        r = run_script(*args, '--num_stories=6', f'--base_url={server.base_url}', env=llm_env())
        assert server.chat_calls == 4                 # nothing sent on a damaged log
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith('error:') and 'responses.jsonl line 2' in r.stderr
