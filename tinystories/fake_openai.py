"""
A stand-in for an OpenAI-compatible server, for tests and bench.py: it listens on 127.0.0.1
only, in a background thread, and answers

    POST /v1/chat/completions        with `latency` seconds of delay and injected faults
    POST /v1/files, GET /v1/files/{id}/content
    POST /v1/batches, GET /v1/batches/{id}, GET /v1/batches

Usage:

    with FakeOpenAI(latency=0.01) as server:          # server.base_url -> 'http://127.0.0.1:PORT/v1'
        server.faults += ['429', '500', 'timeout', 'malformed', 'empty', 'reset']  # next requests
        ...
    server.chat_calls, server.auth_headers, server.batches   # what it saw

`faults` is a queue: each chat request pops one (if any) and misbehaves that way (also
'refusal'; '401-echo': a 401 whose message repeats the key it was sent, as some servers do;
'400': a 400 whose JSON message is `error_message`, which may name the key's last 10 characters
as {key_end}; 'text-500': a 500 whose body is plain text, as uvicorn answers a crash);
`always` (e.g. '500') is the fault of every request once the queue is empty. `respond(body)` makes
an answer's text from the request body: by default a short story that uses every word the
prompt quotes, so generate_data's validation accepts it. Batches finish after `batch_polls`
retrievals; custom_ids in `batch_fail_once` fail the first time they appear in a batch.
"""
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def default_respond(body):
    """A plain story that uses every word the prompt puts in double quotes (after "use")."""
    prompt = body['messages'][-1]['content']
    words = re.findall(r'"([a-z\-]+)"', prompt.split('use the verb', 1)[-1])[:3]
    story = ('Once upon a time there was a little girl named Lily. ' * 5 +
             ' '.join(f'She saw the word {w} and she smiled.' for w in words) +
             ' She played in the sun all day long, and then she went home to sleep. The end.')
    if 'Summary:' in prompt:
        story += '\nSummary: Lily plays all day and then goes home.'
    return story


class FakeOpenAI:
    def __init__(self, latency=0.0, respond=default_respond, timeout_sleep=5.0, batch_polls=2,
                 retry_after_ms=20):
        self.latency, self.respond, self.timeout_sleep = latency, respond, timeout_sleep
        self.batch_polls, self.retry_after_ms = batch_polls, retry_after_ms
        self.faults = []             # queue of faults for the next chat requests
        self.error_message = "This model's maximum context length is 128 tokens"   # of a '400'
        self.always = None            # the fault of every request after the queue
        self.batch_fail_once = set()  # custom_ids that fail in the first batch holding them
        self.chat_calls = 0           # chat requests received (faulty ones included)
        self.answered = []            # request bodies answered with a 200
        self.auth_headers = set()
        self.files, self.batches = {}, {}
        self.lock = threading.Lock()

    # -- lifecycle
    def __enter__(self):
        server = self

        class Handler(_Handler):
            fake = server
        ThreadingHTTPServer.request_queue_size = 512   # 64+ clients connect at once
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f'http://127.0.0.1:{self.httpd.server_address[1]}/v1'
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_fault(self):
        with self.lock:
            self.chat_calls += 1
            return self.faults.pop(0) if self.faults else self.always

    # -- the chat answer, as the API shapes it
    def completion(self, body, content):
        prompt_chars = sum(len(m['content']) for m in body['messages'])
        return {'id': 'chatcmpl-' + uuid.uuid4().hex[:12], 'object': 'chat.completion',
                'created': int(time.time()), 'model': body.get('model', 'fake'),
                'choices': [{'index': 0, 'finish_reason': 'stop',
                             'message': {'role': 'assistant', 'content': content}}],
                'usage': {'prompt_tokens': prompt_chars // 4 + 1,
                          'completion_tokens': len(content) // 4 + 1,
                          'total_tokens': prompt_chars // 4 + len(content) // 4 + 2}}

    # -- batches: run when retrieved `batch_polls` times
    def advance(self, batch):
        batch['_polls'] += 1
        if batch['status'] in ('completed', 'failed') or batch['_polls'] < self.batch_polls:
            if batch['status'] == 'validating':
                batch['status'] = 'in_progress'
            return
        out, err = [], []
        lines = self.files[batch['input_file_id']]['data'].decode().splitlines()
        for line in lines:
            item = json.loads(line)
            cid = item['custom_id']
            if cid in self.batch_fail_once:
                self.batch_fail_once.discard(cid)
                err.append({'id': 'r', 'custom_id': cid, 'response': None,
                            'error': {'code': 'server_error', 'message': 'try again'}})
                continue
            body = item['body']
            out.append({'id': 'r', 'custom_id': cid, 'error': None,
                        'response': {'status_code': 200, 'request_id': 'x',
                                     'body': self.completion(body, self.respond(body))}})
        out.reverse()                 # the API does not keep the input order: neither do we
        batch['output_file_id'] = self.add_file(''.join(json.dumps(o) + '\n' for o in out).encode(), 'batch_output')
        if err:
            batch['error_file_id'] = self.add_file(''.join(json.dumps(e) + '\n' for e in err).encode(), 'batch_output')
        batch['status'] = 'completed'
        batch['request_counts'] = {'total': len(lines), 'completed': len(out), 'failed': len(err)}

    def add_file(self, data, purpose):
        fid = 'file-' + uuid.uuid4().hex[:12]
        self.files[fid] = {'data': data, 'purpose': purpose}
        return fid

    def batch_view(self, b):
        return {k: v for k, v in b.items() if not k.startswith('_')}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True   # else headers and body go out apart, and a delayed ACK adds 40 ms
    fake = None

    def log_message(self, *args):   # quiet
        pass

    def send_json(self, code, obj, headers=()):
        self.send_raw(code, json.dumps(obj).encode(), 'application/json', headers)

    def send_raw(self, code, data, content_type, headers=()):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n)

    def do_POST(self):
        fake = self.fake
        with fake.lock:
            fake.auth_headers.add(self.headers.get('Authorization', ''))
        raw = self.read_body()
        if self.path.endswith('/chat/completions'):
            return self.chat(json.loads(raw))
        if self.path.endswith('/files'):
            return self.upload(raw)
        if self.path.endswith('/batches'):
            body = json.loads(raw)
            if body.get('input_file_id') not in fake.files:
                return self.send_json(400, {'error': {'message': 'no such file'}})
            bid = 'batch_' + uuid.uuid4().hex[:12]
            with fake.lock:
                fake.batches[bid] = {
                    'id': bid, 'object': 'batch', 'endpoint': body['endpoint'], 'status': 'validating',
                    'input_file_id': body['input_file_id'], 'completion_window': body['completion_window'],
                    'created_at': int(time.time()), 'output_file_id': None, 'error_file_id': None,
                    'request_counts': {'total': 0, 'completed': 0, 'failed': 0}, '_polls': 0}
                return self.send_json(200, fake.batch_view(fake.batches[bid]))
        self.send_json(404, {'error': {'message': f'no route {self.path}'}})

    def do_GET(self):
        fake = self.fake
        with fake.lock:
            fake.auth_headers.add(self.headers.get('Authorization', ''))
            m = re.search(r'/files/([\w-]+)/content$', self.path)
            if m and m.group(1) in fake.files:
                return self.send_raw(200, fake.files[m.group(1)]['data'], 'application/octet-stream')
            m = re.search(r'/batches/([\w-]+)$', self.path)
            if m and m.group(1) in fake.batches:
                b = fake.batches[m.group(1)]
                fake.advance(b)
                return self.send_json(200, fake.batch_view(b))
            if re.search(r'/batches(\?.*)?$', self.path):
                data = [fake.batch_view(b) for b in reversed(list(fake.batches.values()))]
                return self.send_json(200, {'object': 'list', 'data': data, 'has_more': False,
                                            'first_id': None, 'last_id': None})
        self.send_json(404, {'error': {'message': f'no route {self.path}'}})

    def upload(self, raw):
        boundary = self.headers['Content-Type'].split('boundary=', 1)[1].strip('"').encode()
        fields = {}
        for part in raw.split(b'--' + boundary):
            head, sep, content = part.partition(b'\r\n\r\n')
            m = re.search(rb'name="([^"]+)"', head)
            if sep and m:
                fields[m.group(1).decode()] = content[:-2] if content.endswith(b'\r\n') else content
        fid = self.fake.add_file(fields['file'], fields.get('purpose', b'').decode())
        self.send_json(200, {'id': fid, 'object': 'file', 'bytes': len(fields['file']),
                             'created_at': int(time.time()), 'filename': 'input.jsonl',
                             'purpose': fields.get('purpose', b'').decode(), 'status': 'processed'})

    def chat(self, body):
        fake = self.fake
        fault = fake.next_fault()
        if fake.latency:
            time.sleep(fake.latency)
        if fault == '429':
            return self.send_json(429, {'error': {'message': 'rate limited', 'type': 'rate_limit'}},
                                  [('retry-after-ms', str(fake.retry_after_ms)), ('Retry-After', '0')])
        if fault == '500':
            return self.send_json(500, {'error': {'message': 'server error'}})
        if fault == '401':
            return self.send_json(401, {'error': {'message': 'Incorrect API key provided'}})
        if fault == '401-echo':
            key = self.headers.get('Authorization', '').replace('Bearer ', '')
            return self.send_json(401, {'error': {'message': f'Incorrect API key provided: {key}'}})
        if fault == '400':
            key = self.headers.get('Authorization', '').replace('Bearer ', '')
            return self.send_json(400, {'error': {'message': fake.error_message.format(key_end=key[-10:]),
                                                  'type': 'invalid_request_error'}})
        if fault == 'text-500':
            return self.send_raw(500, b'Internal Server Error', 'text/plain; charset=utf-8')
        if fault == 'timeout':
            time.sleep(fake.timeout_sleep)
            return
        if fault == 'reset':
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
            self.close_connection = True
            self.connection.close()
            return
        if fault == 'malformed':
            return self.send_raw(200, b'{"id": "chatcmpl-1", "choices": [{"mess', 'application/json')
        content = {'empty': '', 'refusal': "I'm sorry, but I can't help with that."}.get(fault)
        if content is None:
            content = fake.respond(body)
        with fake.lock:
            fake.answered.append(body)
        self.send_json(200, fake.completion(body, content))
