"""Nothing lost, nothing silently wrong (issue 21): export.py's lock and crash-safe --overwrite
under kill -9 and a second writer; and a table of malformed files of every kind, each a one-line
`error:` naming the file, with the stage's output left as it was. Most rows run in-process
(the readers raise SystemExit with the message); the stage-level rows share a few subprocesses."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from helpers import python_env, write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def one_error_line(r):
    """A refused command: non-zero exit, one `error:` line on stderr, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith('error: '), r.stderr[-2000:]
    return lines[0]


def run_script(script, *args, **kw):
    return subprocess.run([PY, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


def folder_digest(path):
    """sha256 of a folder's files (names and bytes): equal digests, equal exports."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        h.update(name.encode())
        with open(os.path.join(path, name), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()


# ----------------------------------------------------------------------------- export.py
EXPORT_FILES = {'config.json', 'generation_config.json', 'model.safetensors', 'README.md',
                'tokenizer.json', 'tokenizer_config.json'}

# Runs export.py in forked children (torch imported once, before any fork), each killed with
# SIGKILL where the scenario says: at a rename or delete of the export's own folders. Prints one
# JSON object: each step's exit code (negative: the signal) and the folder's digest after it.
EXPORT_DRIVER = r'''
import json, os, runpy, shutil, signal, sys, hashlib
import torch, safetensors.torch, transformers  # noqa: imported before the forks
import tinystories.hf, tinystories.checkpoint  # noqa
scenarios = json.loads(sys.argv[1])

def digest(path):
    if not os.path.isdir(path):
        return None
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        h.update(name.encode())
        h.update(open(os.path.join(path, name), 'rb').read())
    return h.hexdigest()

def export(args, kill=None):
    pid = os.fork()
    if pid == 0:
        die = lambda: os.kill(os.getpid(), signal.SIGKILL)
        replace, rmtree = os.replace, shutil.rmtree
        def os_replace(src, dst):
            if kill == 'aside' and str(dst).endswith('.old') or kill == 'in' and str(src).endswith('.partial') \
                    or kill == 'writing' and str(dst).endswith('README.md'):
                die()
            replace(src, dst)
        def shutil_rmtree(path, *a, **k):
            if kill == 'delete' and str(path).endswith('.old'):
                die()
            rmtree(path, *a, **k)
        os.replace, shutil.rmtree = os_replace, shutil_rmtree
        sys.argv = ['export.py'] + args
        code = 0
        try:
            runpy.run_path('export.py', run_name='__main__')
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

print(json.dumps([[[export(args, kill), digest(hf_dir)] for args, kill in steps]
                  for hf_dir, steps in scenarios]))
'''


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp('export')
    a, b = str(d / 'a'), str(d / 'b')
    write_tiny_checkpoint(a, seed=0)
    write_tiny_checkpoint(b, seed=1)
    return d, a, b


def test_export_kill_9_at_every_step_loses_nothing(two_runs, tmp_path):
    """--overwrite killed before, between and after its two renames, or while writing: the old
    export or the new one is always whole (the next run puts an old one set aside back), and a
    re-run finishes the new one, leaving no .partial or .old behind."""
    _, a, b = two_runs
    kills = ('writing', 'aside', 'in', 'delete')
    scenarios = []
    for kill in kills:
        hf = str(tmp_path / kill / 'hf')
        scenarios.append([hf, [[[f'--out_dir={a}', f'--hf_dir={hf}'], None],
                               [[f'--out_dir={b}', f'--hf_dir={hf}', '--overwrite'], kill],
                               [[f'--out_dir={b}', f'--hf_dir={hf}'], None],  # recovers, refuses
                               [[f'--out_dir={b}', f'--hf_dir={hf}', '--overwrite'], None]]])
    r = subprocess.run([PY, '-c', EXPORT_DRIVER, json.dumps(scenarios)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=python_env())
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    old, new = results[0][0][1], results[0][3][1]
    assert old and new and old != new
    for kill, (first, killed, again, last) in zip(kills, results):
        parent = str(tmp_path / kill)
        assert first == [0, old] and killed[0] == -9, kill
        # after the kill and the recovering run, hf_dir is whole: the old export, or (killed
        # after the swap) the new one; the run without --overwrite refuses to replace it
        assert again == [1, new if kill == 'delete' else old], kill
        assert last == [0, new], kill
        assert sorted(os.listdir(parent)) == ['.hf.lock', 'hf'], kill  # no .partial, no .old
        assert set(os.listdir(os.path.join(parent, 'hf'))) == EXPORT_FILES


def test_export_second_writer_is_refused(two_runs, tmp_path):
    """A second export to the same hf_dir while one holds the lock is refused in one line, and
    two started together never leave a partial folder behind a 'wrote' line."""
    _, a, b = two_runs
    hf = str(tmp_path / 'hf')
    holder = subprocess.Popen([PY, '-c', 'import sys; from tinystories.dirlock import lock_beside; '
                               'lock_beside(sys.argv[1]); print("held", flush=True); sys.stdin.read()', hf],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=python_env())
    try:
        assert holder.stdout.readline().strip() == 'held'
        r = run_script('export.py', f'--out_dir={a}', f'--hf_dir={hf}', env=python_env())
        assert f'{hf} is in use by another export.py run (pid {holder.pid})' in one_error_line(r)
        assert not os.path.exists(hf)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    both = [subprocess.Popen([PY, 'export.py', f'--out_dir={run}', f'--hf_dir={hf}', '--overwrite'],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for run in (a, b)]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in both]
    for code, out, err in outcomes:
        assert (code == 0 and out.startswith('wrote ')) or \
            (code == 1 and err.strip().startswith('error: ') and 'in use by another' in err
             and len(err.strip().splitlines()) == 1), (code, out, err)
    assert any(code == 0 for code, _, _ in outcomes)
    assert set(os.listdir(hf)) == EXPORT_FILES
    assert sorted(os.listdir(tmp_path)) == ['.hf.lock', 'hf']


def test_export_never_replaces_its_source(two_runs, tmp_path):
    """hf_dir that is the run, lies inside it, or holds it (or the working folder): refused in
    one line, the run untouched, even with --overwrite."""
    d, a, _ = two_runs
    before = folder_digest(a)
    rows = [(a, 'is the model being exported'), (os.path.join(a, 'hf'), 'overlaps the model'),
            (str(d), 'overlaps the model'), ('.', 'holds the current folder')]
    for hf_dir, why in rows:
        r = run_script('export.py', f'--out_dir={a}', f'--hf_dir={hf_dir}', '--overwrite')
        assert why in one_error_line(r), hf_dir
    assert folder_digest(a) == before and not os.path.exists(os.path.join(a, 'hf'))


# ----------------------------------------------------------------------------- malformed files, in-process
def refused(fn, *args, match):
    """fn(*args) ends in one `error:` line (SystemExit's message) holding `match`."""
    with pytest.raises(SystemExit) as e:
        fn(*args)
    msg = str(e.value.code)
    assert msg.startswith('error: ') and '\n' not in msg and match in msg, msg
    return msg


def edit_json(path, change):
    with open(path) as f:
        obj = json.load(f)
    change(obj)
    with open(path, 'w') as f:
        json.dump(obj, f)


@pytest.fixture
def byte_data(tmp_path):
    from helpers import tiny_stories, write_byte_dataset
    d = str(tmp_path / 'data')
    write_byte_dataset(d, tiny_stories(20), tiny_stories(4, seed=1))
    return d


def _set(*path_and_value):
    *path, value = path_and_value

    def change(obj):
        for key in path[:-1]:
            obj = obj[key]
        if value is DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return change


DELETE = object()
META_ROWS = {  # meta.json fields of the wrong type (dataset.py owns the schema)
    'tokens a string': (_set('splits', 'train', 'tokens', '5'), 'splits.train.tokens'),
    'a split a string': (_set('splits', 'val', 'x'), 'splits.val'),
    'splits missing': (_set('splits', DELETE), "'splits' is missing"),
    'splits a list': (_set('splits', []), "'splits' is missing or not an object"),
    'stories negative': (_set('splits', 'train', 'stories', -1), 'splits.train.stories'),
    'vocab_size a bool': (_set('vocab_size', True), 'vocab_size=True'),
    'dtype a list': (_set('dtype', ['uint16']), 'dtype='),
    'tokenizer a number': (_set('tokenizer', 3), 'tokenizer=3'),
    'format unknown': (_set('format', 'chat'), "format='chat'"),
    'pat_str not a regex': (_set('pat_str', '(?P<x'), 'pat_str is not a valid regex'),
    'pat_str a number': (_set('pat_str', 1), 'pat_str=1'),
}


@pytest.mark.parametrize('row', META_ROWS)
def test_meta_json_of_the_wrong_shape(byte_data, row):
    from tinystories.dataset import open_dataset
    change, match = META_ROWS[row]
    edit_json(os.path.join(byte_data, 'meta.json'), change)
    refused(open_dataset, byte_data, match=match)


def test_meta_that_disagrees_with_its_tokenizer_is_caught_before_training(byte_data):
    """vocab_size 600 beside a 257-token tokenizer: tokenizer_record (what train.py saves before
    its first step) and encoding() both refuse it; train.py itself exits in one line."""
    from tinystories.dataset import open_dataset
    edit_json(os.path.join(byte_data, 'meta.json'), _set('vocab_size', 600))
    refused(lambda: open_dataset(byte_data).tokenizer_record(), match='tokenizer has 256 tokens but meta says vocab_size=600')
    refused(lambda: open_dataset(byte_data).encoding(), match='vocab_size=600')
    r = run_script('train.py', f'--data_dir={byte_data}', f'--out_dir={os.path.dirname(byte_data)}/run',
                   '--n_layer=1', '--n_head=1', '--n_embd=16', '--block_size=16', '--batch_size=2',
                   '--max_iters=2', '--device=cpu', '--dtype=float32', '--compile=False')
    assert 'vocab_size=600' in one_error_line(r)
    assert not os.path.exists(f'{os.path.dirname(byte_data)}/run/ckpt.pt')


def test_invalid_tokenizer_pattern_is_one_line():
    from tinystories.tokenizer import byte_tokenizer_record, encoding_from_record, make_encoding
    ranks = {bytes([i]): i for i in range(256)}
    refused(make_encoding, ranks, r'(\p{L}+', 'mine', match='pat_str is not a valid regex')
    refused(encoding_from_record, dict(byte_tokenizer_record(), pat_str='[a-'), match='pat_str is not a valid regex')
    refused(encoding_from_record, dict(byte_tokenizer_record(), eot_token='256'), match='eot_token')


CKPT_ROWS = {  # a checkpoint that torch loads but that is not one of ours (checkpoint.py's schema)
    'no config': (lambda c: c.pop('config'), "lacks a valid 'config' (missing)"),
    'no iter_num': (lambda c: c.pop('iter_num'), "lacks a valid 'iter_num' (missing)"),
    'iter_num a string': (lambda c: c.update(iter_num='7'), "lacks a valid 'iter_num' (str)"),
    'config a list': (lambda c: c.update(config=[]), "lacks a valid 'config' (list)"),
    'no tokenizer': (lambda c: c.pop('tokenizer'), "lacks a valid 'tokenizer'"),
    'tokenizer lacks its text': (lambda c: c['tokenizer'].pop('tiktoken'), 'tokenizer record: tiktoken=None'),
    'a list, not a dict': (lambda c: c.clear() or c.update(list=[1]), "lacks a valid 'model_args'"),
}


def test_checkpoints_that_load_but_lack_their_fields(tmp_path):
    import torch
    from tinystories.checkpoint import load_run
    for row, (change, match) in CKPT_ROWS.items():
        run = str(tmp_path / row.replace(' ', '_').replace(',', ''))
        path = write_tiny_checkpoint(run)
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)
        refused(load_run, run, 'cpu', match=match)
    torch.save([1, 2], path)
    refused(load_run, run, 'cpu', match='a list, not a dict')


def write_lines(path, *lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(line + '\n' for line in lines))


GOOD_STORY = {'id': '1337-00000000', 'story': 'Once upon a time.', 'source': 'offline',
              'instruction': {'prompt:': 'Write.', 'words': ['run'], 'features': []}}
SHARD_ROWS = {  # story shard records of the wrong shape (stories.py's schema)
    'no id': ({k: v for k, v in GOOD_STORY.items() if k != 'id'}, "has no 'id' text field"),
    'instruction a string': (dict(GOOD_STORY, instruction='Write.'), "has an 'instruction' that is a str"),
    'words a string': (dict(GOOD_STORY, instruction={'words': 'run'}), "has 'instruction.words' that is not a list"),
    'summary a number': (dict(GOOD_STORY, summary=3), "has a 'summary' that is a int"),
    'a list': ([GOOD_STORY], 'is a list, not an object'),
    'story missing': ({'id': '1'}, "has no 'story' text field"),
}


def test_story_records_of_the_wrong_shape(tmp_path):
    from tinystories.stories import StoryError, parse_block, read_shard
    for row, (bad, match) in SHARD_ROWS.items():
        path = str(tmp_path / row.replace(' ', '_') / 'stories-00000.jsonl')
        write_lines(path, json.dumps(GOOD_STORY), json.dumps(bad))
        assert 'line 2: the record ' + match in refused(read_shard, path, match=match)
        if row != 'no id':  # prepare.py's reader (no id needed there): a StoryError, one line
            with pytest.raises(StoryError, match='record at 1 ' + match.replace('(', r'\(')):
                parse_block(('records', [GOOD_STORY, bad], path, 0))


def test_log_results_and_report_records_of_the_wrong_shape(tmp_path):
    """log.jsonl (train.py's), results.jsonl (sweep.py's), grade's reports: where read."""
    from tinystories.records import PROBES, SUMMARY, read_log, read_report, read_results
    good_log = {'iter': 1, 'loss': 2.0, 'lr': 1e-3}
    for bad, match in (([1, 2], 'line 2: the record is a list'), ({'loss': 1.0}, "line 2: the record lacks 'iter'"),
                       ({'iter': '3'}, "'iter' is \"3\", not an integer"), ({'iter': 3, 'val_bpb': 'x'}, "'val_bpb'")):
        write_lines(str(tmp_path / 'run' / 'log.jsonl'), json.dumps(good_log), json.dumps(bad))
        refused(read_log, str(tmp_path / 'run'), match=match)
    for bad, match in (({'run': 'w64'}, "lacks 'n_embd'"), ({'run': 1}, "'run' is 1, not text")):
        write_lines(str(tmp_path / 'sweep' / 'results.jsonl'), json.dumps(bad))
        refused(read_results, str(tmp_path / 'sweep'), match=match)
    probes = str(tmp_path / 'probes.json')
    for content, shape, match in (('{"checkpoint": {}, "overall": {', PROBES, 'cannot read'),
                                  ('[]', PROBES, 'the report is a list'),
                                  ('{"checkpoint": {}, "overall": {"accuracy": "1"}}', PROBES, "'overall.accuracy'"),
                                  ('{"checkpoint": {}, "counts": {"graded": 1}, "scores": {"plot": 3}}',
                                   SUMMARY, "'scores.plot' is a int")):
        with open(probes, 'w') as f:
            f.write(content)
        refused(read_report, probes, shape, match=match)


def test_stale_temp_files_are_removed_by_the_next_lock_holder(tmp_path):
    from tinystories.dirlock import lock_dir, unlock_dir
    run = tmp_path / 'run'
    run.mkdir()
    for name in ('.ckpt.pt.k3j_x9a2.tmp', '.log.jsonl.abcdefgh.tmp', 'ckpt.pt', '.keep.tmp', 'notes.abcdefgh.tmp'):
        (run / name).write_text('x')
    lock_dir(str(run))
    try:
        assert sorted(os.listdir(run)) == ['.keep.tmp', '.lock', 'ckpt.pt', 'notes.abcdefgh.tmp']
    finally:
        unlock_dir(str(run))


# ----------------------------------------------------------------------------- the stages
def test_prepare_redoes_a_damaged_output_and_keeps_the_rest(tmp_path):
    """A cut train.bin, then a garbled tokenizer: 'up to date' no longer; each is made again
    (byte for byte as before), the others kept; then up to date again."""
    from helpers import tiny_stories
    src = tmp_path / 'stories.txt'
    src.write_text(''.join(s + '\n<|endoftext|>\n' for s in tiny_stories(300)))
    data = tmp_path / 'data'
    cmd = ['prepare.py', f'--source={src}', f'--data_dir={data}', '--vocab_size=300', '--workers=1',
           '--val_fraction=0.05']
    assert run_script(*cmd).returncode == 0
    files = ('train.bin', 'val.bin', 'tokenizer.tiktoken')
    before = {f: (data / f).read_bytes() for f in files}
    for name, damage in (('train.bin', lambda p: os.truncate(p, os.path.getsize(p) - 2)),
                         ('tokenizer.tiktoken', lambda p: open(p, 'a').write('garbage 9\n'))):
        damage(data / name)
        r = run_script(*cmd)
        assert r.returncode == 0 and f'note: {data / name}: ' in r.stdout and 'making it again' in r.stdout
        assert r.stdout.count('note:') == 1 and 'encode val.bin' not in r.stdout + r.stderr
        assert {f: (data / f).read_bytes() for f in files} == before
    assert 'is up to date' in run_script(*cmd).stdout


def test_interpret_data_dir_asked_for_must_be_usable(tmp_path):
    run = str(tmp_path / 'run')
    write_tiny_checkpoint(run)  # its config's data_dir is '': no default dataset
    (tmp_path / 'file').write_text('x')
    for bad, match in ((tmp_path / 'file', 'is a file'), (tmp_path / 'nope', 'is not found')):
        r = run_script('interpret.py', f'--out_dir={run}', f'--data_dir={bad}', '--story=Once upon a time.')
        assert match in one_error_line(r)
    assert not os.path.exists(os.path.join(run, 'interpret', 'report.html'))


def test_interpret_default_data_dir_falls_back_on_stderr(tmp_path):
    import torch
    run = str(tmp_path / 'run')
    path = write_tiny_checkpoint(run)
    ckpt = torch.load(path, weights_only=True)
    ckpt['config']['data_dir'] = str(tmp_path / 'gone')
    torch.save(ckpt, path)
    r = run_script('interpret.py', f'--out_dir={run}', '--story=Once upon a time.', '--device=cpu')
    assert r.returncode == 0 and "the checkpoint's dataset is not usable" in r.stderr
    assert 'neurons from the story alone' in r.stderr and 'not usable' not in r.stdout


# appends to a shard fail as on an immutable file (chattr +i): EPERM
UNWRITABLE = r'''
import builtins, errno, os, runpy, sys
real_open = builtins.open
def open_(file, mode='r', *a, **k):
    if 'stories-' in str(file) and ('a' in mode or '+' in mode):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(file))
    return real_open(file, mode, *a, **k)
builtins.open = open_
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_generate_data_refuses_mixed_settings_huge_requests_and_unwritable_shards(tmp_path):
    d = str(tmp_path / 'stories')
    gen = lambda *a: run_script('generate_data.py', f'--stories_dir={d}', *a)  # noqa: E731
    assert gen('--num_stories=20').returncode == 0
    shard = os.path.join(d, 'stories-00000.jsonl')
    with open(shard, 'rb') as f:
        before = f.read()
    for args, match in ((['--seed=1'], 'seed=1337, not 1 (--seed)'),
                        (['--instruct'], 'instruct=False, not True (--instruct)'),
                        (['--backend=openai', '--model=m', '--yes'], "source='offline', not 'm'")):
        assert match in one_error_line(gen('--num_stories=30', *args))
    r = run_script('generate_data.py', f'--stories_dir={tmp_path / "llm"}', '--backend=openai',
                   '--num_stories=100000000', '--yes')
    assert 'at most 1,000,000 per run' in one_error_line(r)
    r = run_script('generate_data.py', f'--stories_dir={tmp_path / "llm"}', '--num_stories=10000000000')
    assert 'must be in [1, 100000000]' in one_error_line(r)  # more than 8-digit ids can name
    r = subprocess.run([PY, '-c', UNWRITABLE, 'generate_data.py', f'--stories_dir={d}', '--num_stories=30'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = r.stderr.strip().splitlines()[-1]  # (after the progress line of the stories made)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and line.startswith('error: ')
    assert f'cannot write {shard}' in line and 'kept' in line
    with open(shard, 'rb') as f:
        assert f.read() == before  # nothing lost, nothing added
    # a hundred million stories offline: it starts at once (no list of 10^8 indices first)
    p = subprocess.Popen([PY, 'generate_data.py', f'--stories_dir={d}', '--num_stories=100000000'],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().startswith('generate_data: 20 stories already in')
    finally:
        p.kill()
        p.wait()


def test_damaged_reports_for_compare_and_report_only(tmp_path):
    run = tmp_path / 'run' / 'grade'
    run.mkdir(parents=True)
    (run / 'probes.json').write_text('{"checkpoint": {}, "overall": ')
    r = run_script('grade.py', f'--compare={tmp_path / "run"}')
    assert f"cannot read {run / 'probes.json'}" in one_error_line(r)
    sweep = tmp_path / 'sweep'
    write_lines(str(sweep / 'results.jsonl'), json.dumps({'run': 'w64_d2_h2', 'n_embd': 64}))
    r = run_script('sweep.py', f'--sweep_dir={sweep}', '--report_only', '--widths=64', '--depths=2', '--heads=2',
                   '--max_iters=10')
    assert "results.jsonl line 1: the record lacks 'n_layer'" in one_error_line(r)
    assert not (sweep / 'report.md').exists()
