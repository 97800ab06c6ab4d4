"""hub.py against a stand-in for the hub on 127.0.0.1: Range resume, a server that ignores Range,
a connection cut mid-file, sha256, slices, caching; model repos (HF_ENDPOINT, HF_TOKEN, the cache
marker, no second download, the token never shown); no network; prepare.py's hub sources."""
import json
import os
import subprocess
import sys
import time

import pytest

from tinystories import hub
from hf_helpers import EOT, FakeHub, closed_port_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server():
    data = os.urandom(300_000)
    s = FakeHub({'/big.bin': data})
    s.data = data
    yield s
    s.close()


@pytest.mark.parametrize('ranges', [True, False])
def test_resume_after_cut(server, tmp_path, ranges):
    server.ranges, server.cut = ranges, 1
    path = str(tmp_path / 'big.bin')
    hub.download(server.url + '/big.bin', path, backoff=0.01)
    assert open(path, 'rb').read() == server.data and not os.path.exists(path + '.part')
    assert len(server.log) == 2 and server.log[0][1] is None
    assert server.log[1][1] is not None  # the second try asked to resume
    hub.download(server.url + '/big.bin', path)  # cached: no new request
    assert len(server.log) == 2


def test_never_complete_leaves_only_part(server, tmp_path):
    server.cut = 10
    path = str(tmp_path / 'big.bin')
    with pytest.raises(hub.HubError, match='failed after 3 tries'):
        hub.download(server.url + '/big.bin', path, retries=3, backoff=0.01)
    assert not os.path.exists(path) and 0 < os.path.getsize(path + '.part') < len(server.data)
    server.cut = 0  # a later run resumes from the part
    hub.download(server.url + '/big.bin', path, backoff=0.01)
    assert open(path, 'rb').read() == server.data and server.log[-1][1] is not None


def test_sha256_size_and_404(server, tmp_path):
    path = str(tmp_path / 'big.bin')
    with pytest.raises(hub.HubError, match='sha256 mismatch'):
        hub.download(server.url + '/big.bin', path, sha256='0' * 64)
    assert not os.path.exists(path) and not os.path.exists(path + '.part')
    with pytest.raises(hub.HubError, match='lists 5 bytes but serves 300000'):
        hub.download(server.url + '/big.bin', path, size=5)
    with pytest.raises(hub.HubError, match='HTTP 404'):
        hub.download(server.url + '/missing.txt', str(tmp_path / 'missing.txt'))


@pytest.mark.parametrize('ranges', [True, False])
def test_slice_by_range(server, tmp_path, ranges):
    server.ranges = ranges
    path = str(tmp_path / 'head.bin')
    hub.download(server.url + '/big.bin', path, max_bytes=1000)
    assert open(path, 'rb').read() == server.data[:1000]
    assert server.log[0][1] == 'bytes=0-999'


def test_dataset_slice_ends_at_a_story(tmp_path):
    text = ''.join(f"Story {i}: a cat sat on a mat.\n{EOT}\n" for i in range(100)).encode()
    s = FakeHub({'/d/train.txt': text})
    try:
        path = hub.dataset_file(s.url + '/d/train.txt', str(tmp_path / 'train.txt'), max_bytes=1000)
        got = open(path, 'rb').read()
        assert path.endswith('train.first0MB.txt') and text.startswith(got[:-1])
        assert got.endswith(f"{EOT}\n".encode()) and 900 < len(got) <= 1000
        assert os.listdir(tmp_path) == ['train.first0MB.txt']  # no .raw or .part left
    finally:
        s.close()


def test_progress_lines_without_a_terminal(capsys):
    bar = hub.Progress('file.bin', 2_000_000, 0, every=0)
    bar.update(1_000_000)
    bar.close()
    err = capsys.readouterr().err
    assert err == "file.bin: 1.0 MB of 2.0 MB (50%)\n"  # a plain line, no bar (pytest is no TTY)


@pytest.fixture
def model_hub(tmp_path, monkeypatch):
    folder = tmp_path / 'repo'
    folder.mkdir()
    files = {'config.json': b'{"model_type": "gpt2"}', 'model.safetensors': os.urandom(5000),
             'pytorch_model.bin': b'not wanted', 'tokenizer.json': b'{}', 'README.md': b'hi'}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    s = FakeHub()
    s.add_model('owner/tiny', str(folder))
    s.add_model('owner/tiny', str(folder), rev='v1')
    monkeypatch.setenv('HF_ENDPOINT', s.url)
    monkeypatch.setenv('TINYSTORIES_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_TOKEN', 'hf_SECRET123')
    s.model_files = files
    yield s
    s.close()


def test_download_model_once(model_hub, tmp_path):
    folder = hub.download_model('owner/tiny')
    assert folder == str(tmp_path / 'cache' / 'owner--tiny@main')
    assert sorted(os.listdir(folder)) == ['.complete', '.lock', 'config.json', 'model.safetensors',
                                          'tokenizer.json']  # safetensors over .bin; no README
    assert open(os.path.join(folder, 'model.safetensors'), 'rb').read() == \
        model_hub.model_files['model.safetensors']
    assert all(auth == 'Bearer hf_SECRET123' for _, _, auth in model_hub.log)
    n = len(model_hub.log)
    assert hub.download_model('owner/tiny') == folder and len(model_hub.log) == n  # cached
    assert hub.download_model('owner/tiny@v1').endswith('owner--tiny@v1')
    assert model_hub.requests_for('/owner/tiny/resolve/v1/')


def test_model_errors_never_show_the_token(model_hub):
    model_hub.echo = True
    with pytest.raises(hub.HubError) as e:
        hub.download_model('owner/missing')
    assert 'HTTP 404' in str(e.value) and 'SECRET' not in str(e.value) and '***' in str(e.value)
    for bad in ('owner', 'a/b/c', '../x', 'owner/tiny@'):
        with pytest.raises(hub.HubError, match='not a hub model name'):
            hub.download_model(bad)


def test_no_network_is_one_quick_error(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_ENDPOINT', closed_port_url())
    monkeypatch.setenv('TINYSTORIES_CACHE', str(tmp_path))
    t0 = time.time()
    with pytest.raises(hub.HubError, match='cannot reach 127.0.0.1.*no network'):
        hub.download_model('owner/tiny')
    with pytest.raises(hub.HubError, match='cannot reach'):
        hub.download(hub.endpoint() + '/x.txt', str(tmp_path / 'x.txt'))
    assert time.time() - t0 < 5  # no retries with backoff when nothing answers at all
    assert not os.path.exists(tmp_path / 'owner--tiny@main' / hub.COMPLETE)


def stories_txt(n, seed):
    return ''.join(f"Story {seed} number {i}: a cat sat on a mat, and a dog ran.\n{EOT}\n"
                   for i in range(n)).encode()


def test_hub_source_end_to_end(tmp_path):
    files = {'/TinyStoriesV2-GPT4-train.txt': stories_txt(80, 1),
             '/TinyStoriesV2-GPT4-valid.txt': stories_txt(10, 2)}
    s = FakeHub(files)
    s.cut = 1
    try:
        out, cache = tmp_path / 'ds', tmp_path / 'hub'
        cmd = [sys.executable, os.path.join(ROOT, 'prepare.py'), f'--hub_url={s.url}',
               f'--cache_dir={cache}', f'--data_dir={out}', '--vocab_size=280']
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        meta = json.load(open(out / 'meta.json'))
        assert meta['splits']['train']['stories'] == 80 and meta['splits']['val']['stories'] == 10
        for name, data in files.items():
            assert (cache / name[1:]).read_bytes() == data
        n = len(s.log)
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert 'up to date' in r.stdout and len(s.log) == n  # no second download
    finally:
        s.close()


def test_demo_source_via_hf_endpoint_and_without_network(tmp_path):
    """The demo's slice comes from $HF_ENDPOINT's TinyStories dataset; with no network, prepare
    fails at once with one line (the Makefile then falls back to the offline generator)."""
    base = '/datasets/roneneldan/TinyStories/resolve/main/'
    s = FakeHub({base + 'TinyStoriesV2-GPT4-train.txt': stories_txt(60, 1),
                 base + 'TinyStoriesV2-GPT4-valid.txt': stories_txt(10, 2)})
    try:
        cmd = [sys.executable, os.path.join(ROOT, 'prepare.py'), '--source=tinystories-v2-20mb',
               f'--cache_dir={tmp_path / "hub"}', f'--data_dir={tmp_path / "ds"}', '--vocab_size=280']
        env = dict(os.environ, HF_ENDPOINT=s.url)
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert [p for p, rng, _ in s.log] == [base + 'TinyStoriesV2-GPT4-train.txt',
                                              base + 'TinyStoriesV2-GPT4-valid.txt']
        assert [rng for _, rng, _ in s.log] == ['bytes=0-19999999', 'bytes=0-1999999']
        meta = json.load(open(tmp_path / 'ds' / 'meta.json'))
        assert meta['splits']['train']['stories'] == 60 and meta['source'] == 'tinystories-v2-20mb'
    finally:
        s.close()
    env = dict(os.environ, HF_ENDPOINT=closed_port_url())
    cmd[-2] = f'--data_dir={tmp_path / "ds2"}'
    cmd[-3] = f'--cache_dir={tmp_path / "hub2"}'
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and r.stderr.startswith('error: ') and 'cannot reach' in r.stderr
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr


def test_a_failed_download_resumes_in_the_same_process(model_hub):
    model_hub.files['/owner/tiny/resolve/main/tokenizer.json'], keep = None, \
        model_hub.files['/owner/tiny/resolve/main/tokenizer.json']
    with pytest.raises(hub.HubError, match='HTTP 404'):
        hub.download_model('owner/tiny')
    assert not os.path.exists(os.path.join(hub.model_folder('owner/tiny'), hub.COMPLETE))
    model_hub.files['/owner/tiny/resolve/main/tokenizer.json'] = keep
    n = len(model_hub.requests_for('/owner/tiny/resolve/main/model.safetensors'))
    folder = hub.download_model('owner/tiny')  # the files already there are not fetched again
    assert os.path.exists(os.path.join(folder, hub.COMPLETE))
    assert len(model_hub.requests_for('/owner/tiny/resolve/main/model.safetensors')) == n
