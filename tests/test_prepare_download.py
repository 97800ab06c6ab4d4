"""prepare.download against a local HTTP server on 127.0.0.1: Range resume, a server that
ignores Range, a connection cut mid-file, sha256, caching; and --source=tinystories via hub_url."""
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Server:
    """Serves `files` {name: bytes}. `cut` cuts the next N answers halfway; `ranges` toggles
    Range support; every request is logged as (path, Range header)."""

    def __init__(self, files):
        self.files, self.cut, self.ranges, self.log = files, 0, True, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit('/', 1)[-1]
                server.log.append((name, self.headers.get('Range')))
                data = server.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                start, rng = 0, self.headers.get('Range')
                if rng and server.ranges:
                    start = int(rng.split('=')[1].split('-')[0])
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header('Content-Length', str(len(body)))
                self.send_header('X-Linked-Etag', '"' + hashlib.sha256(data).hexdigest() + '"')
                self.end_headers()
                if server.cut:
                    server.cut -= 1
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    data = os.urandom(300_000)
    s = Server({'big.bin': data})
    s.data = data
    yield s
    s.close()


@pytest.mark.parametrize('ranges', [True, False])
def test_resume_after_cut(server, tmp_path, ranges):
    server.ranges, server.cut = ranges, 1
    path = str(tmp_path / 'big.bin')
    prepare.download(server.url + '/big.bin', path, backoff=0.01)
    assert open(path, 'rb').read() == server.data and not os.path.exists(path + '.part')
    assert len(server.log) == 2 and server.log[0][1] is None
    assert server.log[1][1] is not None  # the second try asked to resume
    prepare.download(server.url + '/big.bin', path)  # cached: no new request
    assert len(server.log) == 2


def test_never_complete_leaves_only_part(server, tmp_path):
    server.cut = 10
    path = str(tmp_path / 'big.bin')
    with pytest.raises(prepare.PrepareError, match='failed after 3 tries'):
        prepare.download(server.url + '/big.bin', path, retries=3, backoff=0.01)
    assert not os.path.exists(path) and 0 < os.path.getsize(path + '.part') < len(server.data)
    server.cut = 0  # a later run resumes from the part
    prepare.download(server.url + '/big.bin', path, backoff=0.01)
    assert open(path, 'rb').read() == server.data and server.log[-1][1] is not None


def test_sha256_mismatch_and_404(server, tmp_path):
    path = str(tmp_path / 'big.bin')
    with pytest.raises(prepare.PrepareError, match='sha256 mismatch'):
        prepare.download(server.url + '/big.bin', path, sha256='0' * 64)
    assert not os.path.exists(path) and not os.path.exists(path + '.part')
    with pytest.raises(prepare.PrepareError, match='HTTP 404'):
        prepare.download(server.url + '/missing.txt', str(tmp_path / 'missing.txt'))


def test_hub_source_end_to_end(tmp_path):
    def txt(n, seed):
        return ''.join(f"Story {seed} number {i}: a cat sat on a mat, and a dog ran.\n<|endoftext|>\n"
                       for i in range(n)).encode()
    files = {'TinyStoriesV2-GPT4-train.txt': txt(80, 1), 'TinyStoriesV2-GPT4-valid.txt': txt(10, 2)}
    s = Server(files)
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
            assert (cache / name).read_bytes() == data
        n = len(s.log)
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert 'up to date' in r.stdout and len(s.log) == n  # no second download
    finally:
        s.close()
