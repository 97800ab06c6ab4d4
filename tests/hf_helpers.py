"""Test fixtures for hub.py, hf.py and export.py: a stand-in for the Hugging Face hub on
127.0.0.1, random text that stresses tokenizers, and tiny random transformers models."""
import hashlib
import http.server
import json
import os
import random
import threading

from helpers import tiny_stories

EOT = '<|endoftext|>'


class FakeHub:
    """Serves `files` {url path: bytes} like the hub's resolve URLs (Range, X-Linked-Etag), and
    model repos added with add_model at /api/models/REPO/revision/REV. `cut` cuts the next N
    answers halfway; `ranges` toggles Range support; `echo` puts the request's Authorization
    header in 404 bodies (a careless server); every request is logged as (path, Range, auth)."""

    def __init__(self, files=None):
        self.files, self.cut, self.ranges, self.echo, self.log = dict(files or {}), 0, True, False, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split('?')[0]
                hub.log.append((path, self.headers.get('Range'), self.headers.get('Authorization')))
                data = hub.files.get(path)
                if data is None:
                    body = f"not found; you sent {self.headers.get('Authorization')}".encode() \
                        if hub.echo else b''
                    self.send_response(404)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                start, end, rng = 0, len(data) - 1, self.headers.get('Range')
                if rng and hub.ranges:
                    a, b = rng.split('=')[1].split('-')
                    start, end = int(a), min(int(b), end) if b else end
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{end}/{len(data)}')
                else:
                    self.send_response(200)
                body = data[start:end + 1]
                self.send_header('Content-Length', str(len(body)))
                self.send_header('X-Linked-Etag', '"' + hashlib.sha256(data).hexdigest() + '"')
                self.end_headers()
                if hub.cut:
                    hub.cut -= 1
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hung up early (a slice, a cut): nothing to report

        self.httpd = Server(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_model(self, repo, folder, rev='main'):
        """Serve every file of a local folder (subfolders too) as the model repo at revision rev."""
        siblings = []
        names = sorted(os.path.relpath(os.path.join(d, f), folder).replace(os.sep, '/')
                       for d, _, fs in os.walk(folder) for f in fs)
        for name in names:
            data = open(os.path.join(folder, name), 'rb').read()
            self.files[f'/{repo}/resolve/{rev}/{name}'] = data
            siblings.append({'rfilename': name, 'size': len(data),
                             'lfs': {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}})
        self.files[f'/api/models/{repo}/revision/{rev}'] = json.dumps(
            {'id': repo, 'sha': '0' * 40, 'siblings': siblings}).encode()

    def requests_for(self, prefix):
        return [p for p, _, _ in self.log if p.startswith(prefix)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url():
    """A URL nothing listens on: what a machine without network gets."""
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return f'http://127.0.0.1:{port}'


def random_text(rng):
    """Story text mixed with what tokenizers get wrong: emoji, CJK, accents, control characters,
    odd whitespace runs, contractions in capitals, digits, <|endoftext|>."""
    stories = tiny_stories(50, seed=rng.randint(0, 10**6))
    parts = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.3:
            s = rng.choice(stories)
            parts.append(s[rng.randint(0, 20):rng.randint(20, len(s))])
        elif r < 0.4:
            parts.append(rng.choice(["DON'T", "it's", "We'LL", "they've", "1234567", "3.14"]))
        elif r < 0.5:
            parts.append(''.join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(rng.randint(1, 3))))
        elif r < 0.6:
            parts.append(''.join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 4))))
        elif r < 0.7:
            parts.append(''.join(rng.choice(' \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000')
                                 for _ in range(rng.randint(1, 4))))
        elif r < 0.8:
            parts.append(''.join(chr(rng.randint(0, 0x7F)) for _ in range(rng.randint(1, 6))))
        elif r < 0.9:
            parts.append(EOT)
        else:
            parts.append(''.join(rng.choice('éèçñüßøåÆœЖжΩ€£¥') for _ in range(rng.randint(1, 4))))
    return ''.join(parts)


def training_text(n=400):
    rng = random.Random(1)
    return tiny_stories(n) + [random_text(rng).replace(EOT, '') for _ in range(100)]


def train_hf_tokenizer(vocab_size=500):
    """A small byte-level BPE trained with Hugging Face tokenizers; <|endoftext|> last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.add_special_tokens([EOT])
    return tok


def tiny_hf_model(kind, vocab_size, eot, seed=0):
    """A random GPT-2 or GPT-Neo (4 layers, local window 8) from transformers, its weights
    jittered so that every mapping error shows in the logits."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM
    torch.manual_seed(seed)
    if kind == 'gpt2':
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32,
                                           n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot))
    else:
        model = GPTNeoForCausalLM(GPTNeoConfig(
            vocab_size=vocab_size, max_position_embeddings=64, hidden_size=32, num_layers=4,
            num_heads=2, attention_types=[[['global', 'local'], 2]], window_size=8,
            bos_token_id=eot, eos_token_id=eot))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()
