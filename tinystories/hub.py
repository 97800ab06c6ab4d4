"""
Downloads from the Hugging Face hub: the one place that talks to it (datasets and models alike).

    download(url, path)                                # one file: resumable, size- and sha256-checked
    train, val = dataset_files('tinystories', 'data/hub')        # a dataset's files, cached
    folder = download_model('roneneldan/TinyStories-33M')        # a model's files, cached once
    folder = download_model('roneneldan/TinyStories-33M@main')   # @ a branch, tag or commit
    path = download_llama2c('karpathy/tinyllamas/stories15M.bin')  # a llama2.c file + its tokenizer

`HF_ENDPOINT` names the hub (default https://huggingface.co; a mirror, or a test's local server).
`HF_TOKEN`, when set, goes to it as a bearer token (gated or private repos). The token is never
printed: every message passes through `mask`, so not even a server that echoes it shows it.
Models are cached in `$TINYSTORIES_CACHE` (default ~/.cache/tinystories/hub), one folder per
OWNER--NAME@REVISION, downloaded once: a `.complete` marker is written after every file is in
place and checked, and a later call returns the folder without asking the network.
"""
import hashlib
import json
import os
import sys
import time
from urllib.parse import quote, urlsplit

import requests

from tinystories.atomic_write import atomic_write
from tinystories.dirlock import lock_dir
from tinystories.secret import hide_secret
from tinystories.tokenizer import EOT

# what a model folder needs: its config, one weights file (the first of these that the repo has),
# and the tokenizer files it has
WEIGHTS = ('model.safetensors', 'pytorch_model.bin')
TOKENIZER_FILES = ('tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json',
                   'special_tokens_map.json', 'generation_config.json')
COMPLETE = '.complete'
# datasets by name: (train file, val file or None[, train slice bytes, val slice bytes])
DATASETS = {
    'tinystories': ('TinyStoriesV2-GPT4-train.txt', 'TinyStoriesV2-GPT4-valid.txt'),
    'tinystories-v1': ('TinyStories-train.txt', 'TinyStories-valid.txt'),
    'tinystories-instruct': ('TinyStories_all_data.tar.gz', None),
    # the demo's slice: about what a few minutes of training on 2 CPU cores can use
    'tinystories-v2-20mb': ('TinyStoriesV2-GPT4-train.txt', 'TinyStoriesV2-GPT4-valid.txt',
                            20 * 10**6, 2 * 10**6)}


class HubError(Exception):
    """A download that cannot be done: callers turn it into a one-line `error: ...`."""


def endpoint():
    return os.environ.get('HF_ENDPOINT', '').strip().rstrip('/') or 'https://huggingface.co'


def _token():
    return os.environ.get('HF_TOKEN', '').strip()


def mask(text):
    """text with the token hidden, whole or any run of 6 or more of its characters (secret.py)."""
    return hide_secret(text, _token())


def fail(msg):
    raise HubError(mask(msg))


def headers():
    return {'Authorization': f'Bearer {_token()}'} if _token() else {}


def _server_says(r):
    """The hub's own reason for a refusal (X-Error-Message, or the start of the body), masked."""
    why = r.headers.get('X-Error-Message') or r.text[:200]
    return f": {mask(' '.join(why.split()))}" if why.strip() else ''


def _refusal(what, r):
    hint = (" (gated or private: set HF_TOKEN to a read token)" if r.status_code in (401, 403)
            else '')
    fail(f"{what}: HTTP {r.status_code}{hint}{_server_says(r)}")


def _unreachable(what, e):
    host = urlsplit(endpoint()).netloc
    fail(f"{what}: cannot reach {host}: no network? ({type(e).__name__}; HF_ENDPOINT can "
         f"name a mirror)")


# -----------------------------------------------------------------------------
# one file

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _hub_sha256(r):
    """The hub names an LFS file's sha256 in X-Linked-Etag (on the redirect, or the answer)."""
    for resp in list(r.history) + [r]:
        tag = resp.headers.get('X-Linked-Etag', '').strip('"')
        if len(tag) == 64 and all(c in '0123456789abcdef' for c in tag):
            return tag
    return None


class Progress:
    """tqdm's bar on a terminal; in a log (stderr not a TTY) a plain line every few seconds."""

    def __init__(self, name, total, have, every=5.0):
        self.name, self.total, self.done, self.every = name, total, have, every
        self.last = time.time()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=have, unit='B', unit_scale=True, desc=name)

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.time() - self.last >= self.every:
            self.last = time.time()
            of = (f" of {self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)"
                  if self.total else '')
            print(f"{self.name}: {self.done / 1e6:.1f} MB{of}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def download(url, path, sha256=None, size=None, max_bytes=None, retries=5, backoff=1.0):
    """Stream url to path, resuming a partial `path.part` with HTTP Range. Only a complete file,
    of the expected size and sha256 (given, or named by the hub), is renamed to `path`, so its
    presence means done. max_bytes: only the file's first max_bytes bytes (a slice; no sha256)."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part, last, name = path + '.part', None, os.path.basename(path)
    for attempt in range(retries):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30))
        have = os.path.getsize(part) if os.path.exists(part) else 0
        ask = dict(headers(), **{'Accept-Encoding': 'identity'})  # sizes are of the bytes on disk
        if have or max_bytes:
            ask['Range'] = f"bytes={have}-{max_bytes - 1 if max_bytes else ''}"
        answered = False
        try:
            with requests.get(url, headers=ask, stream=True, timeout=60) as r:
                answered = True
                if r.status_code == 416:  # our part is not a prefix of this file: start over
                    if os.path.exists(part):
                        os.remove(part)
                    last = 'range not satisfiable'
                    continue
                if 400 <= r.status_code < 500:
                    _refusal(f"download {url}", r)
                r.raise_for_status()
                if not max_bytes:
                    sha256 = sha256 or _hub_sha256(r)
                if r.status_code == 206:
                    span, _, whole = r.headers['Content-Range'].partition(' ')[2].partition('/')
                    if int(span.split('-')[0]) != have:
                        last = 'the server resumed at another offset'
                        os.remove(part)
                        continue
                    total = int(whole) if whole.isdigit() else None
                else:  # 200: the server ignored Range (or we had nothing): from the start
                    have, length = 0, r.headers.get('Content-Length')
                    total = int(length) if length else None
                if max_bytes:
                    total = min(total, max_bytes) if total is not None else None
                if size is not None and total is not None and not max_bytes and total != size:
                    fail(f"download {url}: the hub lists {size} bytes but serves {total}")
                bar = Progress(name, total, have)
                try:
                    with open(part, 'ab' if have else 'wb') as f:
                        got = have
                        for block in r.iter_content(1 << 16):
                            if max_bytes:
                                block = block[:max_bytes - got]
                            f.write(block)
                            got += len(block)
                            bar.update(len(block))
                            if max_bytes and got >= max_bytes:
                                break
                finally:
                    bar.close()
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError, requests.HTTPError) as e:
            if not answered and attempt == 0 and isinstance(e, requests.ConnectionError):
                _unreachable(f"download {url}", e)  # no network: say so now, not after 5 tries
            last = f"{type(e).__name__}: {str(e)[:120]}"
            continue
        got = os.path.getsize(part)
        if total is not None and got != total:
            last = f"got {got} of {total} bytes"
            if got > total:
                os.remove(part)
            continue
        if sha256 and sha256_file(part) != sha256:
            os.remove(part)
            fail(f"download {url}: sha256 mismatch (the partial file was removed; rerun)")
        os.replace(part, path)
        return path
    fail(f"download {url} failed after {retries} tries ({mask(str(last))}); rerun to resume {part}")


# -----------------------------------------------------------------------------
# a model repository

def parse_model(spec):
    """'OWNER/NAME[@REVISION]' -> (repo, revision, whether a revision was given)."""
    repo, at, rev = spec.partition('@')
    owner, slash, name = repo.partition('/')
    ok = lambda s: s and s not in ('.', '..') and all(c.isalnum() or c in '-_.' for c in s)
    if not (slash and ok(owner) and ok(name)) or (at and not rev):
        fail(f"{spec!r} is not a hub model name: OWNER/NAME or OWNER/NAME@REVISION")
    return repo, rev or 'main', bool(at)


def cache_root():
    return os.environ.get('TINYSTORIES_CACHE') or os.path.expanduser('~/.cache/tinystories/hub')


def model_folder(spec):
    repo, rev, _ = parse_model(spec)
    return os.path.join(cache_root(), f"{repo.replace('/', '--')}@{quote(rev, safe='')}")


def _repo_files(repo, rev):
    """{file name: its sibling record (size, lfs sha256)} of the repo at rev, from the hub's API."""
    url = f"{endpoint()}/api/models/{repo}/revision/{quote(rev, safe='')}"
    what = f"list the files of {repo}@{rev}"
    try:
        r = requests.get(url, params={'blobs': 'true'}, headers=headers(), timeout=30)
    except (requests.ConnectionError, requests.Timeout) as e:
        _unreachable(what, e)
    if r.status_code != 200:
        _refusal(what, r)
    try:
        return {s['rfilename']: s for s in r.json()['siblings']}, r.json().get('sha')
    except (ValueError, KeyError, TypeError):
        fail(f"{what}: {url} did not answer with a file list")


def download_model(spec):
    """Download a model's config, weights and tokenizer files once; returns its local folder."""
    repo, rev, _ = parse_model(spec)
    folder = model_folder(spec)
    done = os.path.join(folder, COMPLETE)
    if os.path.exists(done):
        return folder
    os.makedirs(folder, exist_ok=True)
    lock_dir(folder, f"download of {repo}@{rev}")  # held until exit; again in-process is a no-op
    files, commit = _repo_files(repo, rev)
    weights = [w for w in WEIGHTS if w in files]
    if 'config.json' not in files:
        fail(f"{repo}@{rev} has no config.json: not a transformers model")
    if not weights:
        fail(f"{repo}@{rev} has neither {' nor '.join(WEIGHTS)} (sharded weights are not supported)")
    names = ['config.json', weights[0]] + [f for f in TOKENIZER_FILES if f in files]
    for name in names:
        sibling = files[name]
        download(f"{endpoint()}/{repo}/resolve/{quote(rev, safe='')}/{quote(name)}",
                 os.path.join(folder, name), sha256=(sibling.get('lfs') or {}).get('sha256'),
                 size=sibling.get('size'))
    atomic_write(done, json.dumps({'repo': repo, 'revision': rev, 'commit': commit,
                                   'endpoint': endpoint(), 'files': names}, indent=1))
    return folder


# -----------------------------------------------------------------------------
# a llama2.c checkpoint in a model repository (a file, not a transformers folder)

# llama2.c's published TinyStories models (MIT; trained by its author): hf:karpathy/tinyllamas/<file>.
# The 32,000-piece tokenizer of the three larger ones is looked up as tokenizer.bin in the repo.
LLAMA2C_MODELS = ('karpathy/tinyllamas/stories15M.bin', 'karpathy/tinyllamas/stories42M.bin',
                  'karpathy/tinyllamas/stories110M.bin', 'karpathy/tinyllamas/stories260K/stories260K.bin')


def download_llama2c(spec):
    """'OWNER/NAME/PATH.bin[@REVISION]': a llama2.c checkpoint in a hub repo and its tokenizer,
    downloaded once; returns the checkpoint's local path, the tokenizer beside it under its own
    name, which checkpoint.load_run looks for: tok{vocab_size}.bin in the checkpoint's folder of
    the repo (stories260K/tok512.bin), else tokenizer.bin there or at the repo's top. A
    `.complete` marker beside the checkpoint says both are in place: no network after that."""
    from tinystories.llama2c import HEADER_BYTES, parse_header
    where, at, rev = spec.partition('@')
    owner, _, rest = where.partition('/')
    name, _, path = rest.partition('/')
    parts = path.split('/')
    if not path.endswith('.bin') or any(p in ('', '.', '..') for p in parts):
        fail(f"{spec!r} is not a llama2.c file on the hub: OWNER/NAME/PATH.bin[@REVISION]")
    repo, rev, _ = parse_model(f"{owner}/{name}" + (f"@{rev}" if at else ''))
    folder = model_folder(f"{repo}@{rev}")
    local = os.path.join(folder, *parts)
    done = local + COMPLETE
    if os.path.exists(done):
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    lock_dir(folder, f"download of {repo}@{rev}")
    files, commit = _repo_files(repo, rev)

    def get(file, to):
        sibling = files[file]
        download(f"{endpoint()}/{repo}/resolve/{quote(rev, safe='')}/{quote(file)}", to,
                 sha256=(sibling.get('lfs') or {}).get('sha256'), size=sibling.get('size'))
    if path not in files:
        fail(f"{repo}@{rev} has no {path}")
    get(path, local)
    with open(local, 'rb') as f:
        vocab_size = parse_header(f.read(HEADER_BYTES), local)[0]['vocab_size']
    here = os.path.dirname(path)
    wanted = [os.path.join(here, f'tok{vocab_size}.bin'), os.path.join(here, 'tokenizer.bin'), 'tokenizer.bin']
    tokenizer = next((t for t in wanted if t in files), None)
    if tokenizer is None:
        fail(f"{repo}@{rev} has no tokenizer for {path} (looked for {', '.join(dict.fromkeys(wanted))})")
    get(tokenizer, os.path.join(os.path.dirname(local), os.path.basename(tokenizer)))
    atomic_write(done, json.dumps({'repo': repo, 'revision': rev, 'commit': commit, 'endpoint': endpoint(),
                                   'files': [path, tokenizer]}, indent=1))
    return local


# -----------------------------------------------------------------------------
# a dataset (the TinyStories repo's files)

def dataset_files(name, cache_dir, base_url=''):
    """DATASETS[name] -> ([train file], [val file] or None), downloaded once into cache_dir.
    base_url: where the files are (default: the hub's roneneldan/TinyStories dataset)."""
    train_name, val_name, *slices = DATASETS[name]
    train_max, val_max = slices or (None, None)
    base = (base_url or f"{endpoint()}/datasets/roneneldan/TinyStories/resolve/main").rstrip('/')
    get = lambda f, most: dataset_file(f"{base}/{f}", os.path.join(cache_dir, f), most)
    return [get(train_name, train_max)], ([get(val_name, val_max)] if val_name else None)


def dataset_file(url, path, max_bytes=None):
    """url downloaded to path; with max_bytes only its first max_bytes (by HTTP Range), cut back
    to the last whole story, in path's `.firstNMB` sibling."""
    if not max_bytes:
        return download(url, path)
    stem, ext = os.path.splitext(path)
    sliced = f"{stem}.first{max_bytes // 10**6}MB{ext}"
    if not os.path.exists(sliced):
        raw = download(url, sliced + '.raw', max_bytes=max_bytes)
        with open(raw, 'rb') as f:
            data = f.read()
        if len(data) == max_bytes:  # the slice ends inside a story: keep the ones before it
            data = data[:data.rfind(EOT.encode()) + len(EOT)] + b'\n'
        atomic_write(sliced, data)
        os.remove(raw)
    return sliced
