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
