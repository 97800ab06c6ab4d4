"""
llm.py's second backend: the OpenAI Batch API (half price, answers within 24 hours).

    llm.run(requests, state_dir, backend='batch', ...)    # calls run_batch(todo, job)

The loop, in the order things happen: submit what is neither answered nor in flight (in batches
of at most batch_max_requests, within the budget), wait poll_seconds, collect the batches that
finished (each answer goes through the Job like a chat answer: logged, validated, delivered),
and go round again until nothing is in flight. Failed requests go back into the next batch.

state_dir/batches.json records each batch as soon as it exists (written atomically), so a
restart polls the batches in flight instead of submitting, and paying for, them again. A
submission killed between the upload and that record is found again by its input file.
"""
import json
import os
import time
from collections import Counter

from tinystories.atomic_write import atomic_write
from tinystories.llm_client import (classify, error_text, estimate_cost, make_client, reason_line,
                                    retry_after_of, retry_delay)
from tinystories.progress import progress

DONE = ('completed', 'failed', 'expired', 'cancelled')


def _with_retries(fn, s, what):
    """A Batch/Files API call, retried like chat requests."""
    for attempt in range(1, s['max_retries'] + 2):
        try:
            return fn()
        except Exception as exc:   # noqa: BLE001
            if classify(exc) != 'transient' or attempt > s['max_retries']:
                raise SystemExit(f'error: {what} failed ({error_text(exc, s)})')
            time.sleep(retry_delay(attempt, retry_after_of(exc)))


class BatchState:
    """batches.json: [{id, input_file_id, status, custom_ids}], saved after every change."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, 'batches.json')
        self.batches = []
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding='utf-8') as f:
                    self.batches = json.load(f)['batches']
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"error: {self.path} is damaged ({e}); it lists the batches in "
                                 "flight: restore it, or delete it to submit them again (paid twice)")

    def save(self):
        atomic_write(self.path, json.dumps({'batches': self.batches}, indent=1))

    def in_flight(self):
        return [b for b in self.batches if b['status'] == 'in_flight']

    def recover(self, client, s):
        """A submission killed before its batch id was saved: find the batch by its input file."""
        for b in self.batches:
            if b.get('id') is None:
                found = _with_retries(lambda: [x for x in client.batches.list(limit=100).data
                                               if x.input_file_id == b['input_file_id']], s, 'listing batches')
                b['id'] = found[0].id if found else None
                b['status'] = 'in_flight' if found else 'lost'
        self.save()


# ----------------------------------------------------------------------------- submit
def _batch_line(req, model):
    body = {'model': req.get('params', {}).get('model', model), 'messages': req['messages']}
    body.update(req.get('params', {}))
    return json.dumps({'custom_id': req['custom_id'], 'method': 'POST', 'url': '/v1/chat/completions',
                       'body': body}, ensure_ascii=False) + '\n'


def _next_chunk(submit, job):
    """The next batch's requests: at most batch_max_requests, and only what the request and
    cost budgets still cover (at the estimate)."""
    s = job.s
    chunk = submit[:s.get('batch_max_requests', 50000)]
    if s['max_requests']:
        chunk = chunk[:max(0, s['max_requests'] - job.sent)]
    if s['max_cost_usd']:
        cost = lambda c: estimate_cost(c, s['model'], True, s.get('price'), s.get('out_tokens_guess'))[2]  # noqa: E731
        while chunk and job.spent_total + cost(chunk) > s['max_cost_usd']:
            chunk = chunk[:len(chunk) // 2]
    return chunk


def submit(pending, state, client, job, attempts, bar):
    """Submit every pending request that is not in flight, as budgets allow."""
    s = job.s
    flying = {cid for b in state.in_flight() for cid in b['custom_ids']}
    todo = [r for cid, r in pending.items() if cid not in flying]
    while todo and not job.over_budget():
        chunk = _next_chunk(todo, job)
        if not chunk:
            break
        todo = todo[len(chunk):]
        data = ''.join(_batch_line(r, s['model']) for r in chunk).encode('utf-8')
        # kept beside the state, to see what was sent
        atomic_write(os.path.join(job.state_dir, f'batch-input-{len(state.batches):04d}.jsonl'), data)
        upload = _with_retries(lambda: client.files.create(
            file=('batch-input.jsonl', data), purpose='batch'), s, 'file upload')
        entry = {'id': None, 'input_file_id': upload.id, 'status': 'submitting',
                 'custom_ids': [r['custom_id'] for r in chunk]}
        state.batches.append(entry)
        state.save()
        batch = _with_retries(lambda: client.batches.create(
            input_file_id=upload.id, endpoint='/v1/chat/completions', completion_window='24h'),
            s, 'batch creation')
        entry.update(id=batch.id, status='in_flight')
        state.save()
        job.sent += len(chunk)
        attempts.update(entry['custom_ids'])
        bar.write(f'llm: submitted batch {batch.id} with {len(chunk)} requests')


# ----------------------------------------------------------------------------- collect
def _take(item, pending, job, attempts):
    """One line of a batch's output or error file. Returns True when its request is done with
    (kept, or given up), False when it goes into the next batch."""
    cid = item.get('custom_id')
    req = pending.get(cid)
    if req is None:
        return False              # answered already (a batch read twice after a restart)
    resp = item.get('response') or {}
    body = resp.get('body') or {}
    if resp.get('status_code') == 200 and body.get('choices'):
        content = body['choices'][0].get('message', {}).get('content') or ''
        return job.answer(req, content, body.get('usage') or {}) is not False
    error = item.get('error') or (body.get('error') if isinstance(body.get('error'), dict) else {})
    reason = (item.get('error') or {}).get('code') or f"http {resp.get('status_code')}"
    job.retries[reason] += 1
    if attempts[cid] <= job.s['max_retries']:
        return False
    job.fail(reason, reason_line(error.get('message') or '', job.s))
    return True


def collect(pending, state, client, job, attempts, bar):
    """Poll the batches in flight; read the answers of those that finished."""
    s = job.s
    for b in state.in_flight():
        info = _with_retries(lambda: client.batches.retrieve(b['id']), s, 'batch polling')
        if info.status not in DONE:
            continue
        for fid in (info.output_file_id, info.error_file_id):
            if fid:
                text = _with_retries(lambda: client.files.content(fid).text, s, 'result download')
                for line in text.splitlines():
                    item = json.loads(line)
                    if _take(item, pending, job, attempts):
                        pending.pop(item['custom_id'])
                        bar.update(1)
        b['status'] = info.status
        state.save()
        bar.set_postfix(job.postfix(), refresh=False)


# ----------------------------------------------------------------------------- the loop
def run_batch(todo, job):
    """Submit, poll, collect, resubmit failures, until nothing is in flight."""
    client = make_client(job.s, asynchronous=False)
    state = BatchState(job.state_dir)
    state.recover(client, job.s)
    pending = {r['custom_id']: r for r in todo}
    attempts = Counter()
    bar = progress(total=len(todo), desc=job.s.get('desc', 'batch requests'), unit='req')
    try:
        while True:
            if not job.stopped:
                submit(pending, state, client, job, attempts, bar)
            if not state.in_flight():
                break
            time.sleep(job.s.get('poll_seconds', 30))
            collect(pending, state, client, job, attempts, bar)
    finally:
        bar.close()
        client.close()
    if pending and job.over_budget():
        job.stopped = job.over_budget()
