"""
One client for every OpenAI-compatible chat endpoint (api.openai.com, vLLM, Ollama, llama.cpp,
...), shared by generate_data.py and grade.py: bounded concurrency, retries, a budget, the Batch
API, and a response log so that an answer already received is never paid for twice.

Public API (stable):

    report = llm.run(requests, state_dir, validate=None, on_result=None, **settings)

  requests   a list of dicts {"custom_id": str (unique), "messages": [{"role", "content"}, ...],
             "params": {...}}; params go into the chat request as they are (max_tokens,
             temperature, ...; "model" there overrides the settings' model).
  state_dir  a folder of its own for this job: responses.jsonl (every paid answer, appended and
             flushed as it arrives) and batches.json (Batch API jobs in flight). Re-running the
             same requests with the same state_dir re-delivers the answers already received,
             without a request, and sends only the rest.
  validate   validate(request, text) -> None to accept, or a short reason string to reject
             ("empty", "refusal", "missing words", ...). A rejected request is sent again, up to
             `max_rejects` times; rejects are counted by reason in the report.
  on_result  on_result(request, result) for each accepted answer, in completion order, where
             result = {"custom_id", "text", "usage": {"prompt_tokens", "completion_tokens"},
             "cached": bool}. Called from the caller's thread (the asyncio loop's), never twice
             for one custom_id in a run.
  settings   the keys every stage shares (docs/contracts.md): backend ("openai" | "batch"), model,
             base_url ('' for api.openai.com), api_key_env ("OPENAI_API_KEY"), concurrency,
             max_requests (0: none; requests sent by this run, retries included), max_cost_usd
             (0: none; the spend recorded in state_dir, earlier runs included), yes; and
             timeout, max_retries, max_rejects, price (USD per 1M input, output tokens; None:
             PRICES[model], or 0 for models it does not know), poll_seconds, batch_max_requests,
             desc (progress-bar label), out_tokens_guess (for the estimate).
  report     {"requests", "answers", "cached", "kept", "rejected": {reason: n}, "failed":
             {reason: n}, "reasons": {reason: the server's words}, "retries": {error: n},
             "stopped": None or "max_requests"/"max_cost_usd",
             "prompt_tokens", "completion_tokens", "cost_usd", "spent_usd_total",
             "unfinished": [custom_id, ...]}. A failure's reason is its status ("http 400", or
             the client's error: "APITimeoutError"), what counts and matching key on; "reasons"
             holds, for each, the first ~200 characters of one error body the server sent with
             it (key masked), which failure messages show (failures_text).

    llm.settings_from(namespace)   the shared keys above, picked out of a stage's globals()
    llm.estimate_cost(requests, model, batch=False, price=None, out_tokens_guess=None)
    llm.failures_text(report)   'http 400 x3 (the server said: ...)', one reason per status
    llm.followup(request, answer, text, custom_id)   a multi-turn request: request's messages,
             the assistant's answer, then a new user turn. A 2-turn job runs as two run() calls
             on one state_dir: turn 1's results build turn 2's requests.

Before a paid run it prints an estimate and goes on only with yes=True or a "y" typed at a
terminal; without a terminal and without yes it stops with a one-line error. The API key is
read from the environment variable named by api_key_env and is never printed or written: every
message printed passes through mask(), since a server may echo the key in an error. Five requests
in a row that fail after all their retries stop the run (the server is down or broken): the report
says why, and a re-run continues. The Batch API backend is in llm_batch.py.
"""
import asyncio
import json
import os
import sys
import time
from collections import Counter

from tinystories.jsonl import append_jsonl, read_jsonl, repair_jsonl
from tinystories.llm_client import (classify, cost_of, error_name, error_text, estimate_cost, make_client,
                                    price_of, retry_after_of, retry_delay, server_reason)
from tinystories.progress import progress

SHARED_KEYS = ('backend', 'model', 'grader_model', 'base_url', 'api_key_env', 'concurrency',
               'max_requests', 'max_cost_usd', 'yes', 'timeout', 'max_retries', 'max_rejects')
FAILURE_STREAK = 5   # requests failed in a row (after their retries) that stop a run


def settings_from(namespace):
    """The LLM settings of a stage's config (grade.py's grader_model becomes model)."""
    s = {k: namespace[k] for k in SHARED_KEYS if k in namespace}
    if 'grader_model' in s:
        s['model'] = s.pop('grader_model')
    return s


def followup(request, answer, text, custom_id):
    """Turn 2 of a conversation: turn 1's messages, its answer, and a new user message."""
    return {'custom_id': custom_id, 'params': dict(request.get('params', {})),
            'messages': list(request['messages']) + [{'role': 'assistant', 'content': answer},
                                                     {'role': 'user', 'content': text}]}


def failures_text(report):
    """'http 400 x3 (the server said: prompt too long); APITimeoutError x1 (...)': each failure
    count with one reason the server gave for it."""
    reasons = report.get('reasons') or {}
    return '; '.join(f'{k} x{n}' + (f' (the server said: {reasons[k]})' if reasons.get(k) else '')
                     for k, n in report['failed'].items())


# ----------------------------------------------------------------------------- the log
class ResponseLog:
    """state_dir/responses.jsonl: one line per paid answer {"custom_id", "text", "usage",
    "usd", "rejected"}, appended (jsonl.py) before the answer is used, so a kill -9 never loses a
    paid answer; fsynced at least once a second (an fsync per answer would stall the event loop)
    and on close, against power loss."""

    def __init__(self, state_dir):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, 'responses.jsonl')
        self.answers, self.usd = {}, 0.0
        repair_jsonl(self.path)          # cut a line torn by a kill in mid-write
        for rec in read_jsonl(self.path):
            self.usd += rec.get('usd', 0.0)
            if not rec.get('rejected'):
                self.answers[rec['custom_id']] = rec
        self.synced = time.monotonic()

    def add(self, custom_id, text, usage, usd, rejected=None):
        rec = {'custom_id': custom_id, 'text': text, 'usage': usage, 'usd': usd}
        if rejected:
            rec['rejected'] = rejected
        sync = time.monotonic() - self.synced > 1.0
        append_jsonl(self.path, [rec], fsync=sync)
        if sync:
            self.synced = time.monotonic()
        self.usd += usd
        if not rejected:
            self.answers[custom_id] = rec

    def close(self):
        if os.path.exists(self.path):
            fd = os.open(self.path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


# ----------------------------------------------------------------------------- one job
class Job:
    """The bookkeeping both backends share: what is left, what it cost, what was rejected."""

    def __init__(self, requests, state_dir, validate, on_result, settings):
        self.s = settings
        self.batch = settings['backend'] == 'batch'
        self.price = price_of(settings['model'], settings.get('price'))
        self.validate, self.on_result = validate, on_result
        self.log = ResponseLog(state_dir)
        self.state_dir = state_dir
        ids = [r['custom_id'] for r in requests]
        if len(set(ids)) != len(ids):
            raise SystemExit('error: llm.run: custom_ids must be unique')
        self.by_id = {r['custom_id']: r for r in requests}
        self.rejects = Counter()          # per custom_id
        self.rejected, self.failed, self.retries = Counter(), Counter(), Counter()   # per reason
        self.reasons = {}                 # per failure reason: the server's words, the first time
        self.stopped = None               # why the run stopped early (a budget, a dead server)
        self.streak = 0                   # requests failed in a row
        self.sent = self.answers = self.cached = self.kept = 0
        self.tokens = [0, 0]
        self.delivered = set()

    @property
    def cost(self):
        return cost_of(*self.tokens, self.price, self.batch)

    @property
    def spent_total(self):
        return self.log.usd

    def over_budget(self, upcoming_usd=0.0):
        if self.s['max_requests'] and self.sent >= self.s['max_requests']:
            return 'max_requests'
        if self.s['max_cost_usd'] and self.spent_total + upcoming_usd >= self.s['max_cost_usd']:
            return 'max_cost_usd'
        return None

    def should_stop(self):
        """Why no more requests should be sent (a budget is spent, the server keeps failing)."""
        self.stopped = self.stopped or self.over_budget()
        return self.stopped

    def fail(self, reason, detail=''):
        """A request is given up (after its retries): counted by reason (its status), the
        server's `detail` kept once per reason, and a streak of them stops the run."""
        self.failed[reason] += 1
        if detail and reason not in self.reasons:
            self.reasons[reason] = detail
        self.streak += 1
        if self.streak >= FAILURE_STREAK and not self.stopped:
            self.stopped = f'{self.streak} requests in a row failed ({reason})'

    def deliver_cached(self):
        """Answers received by an earlier run: delivered again, for free. Returns the rest."""
        todo = []
        for cid, req in self.by_id.items():
            rec = self.log.answers.get(cid)
            if rec is None:
                todo.append(req)
                continue
            self.cached += 1
            self.kept += 1
            self.delivered.add(cid)
            if self.on_result:
                self.on_result(req, {'custom_id': cid, 'text': rec['text'], 'usage': rec['usage'], 'cached': True})
        return todo

    def answer(self, req, text, usage):
        """A paid answer arrived: log it first, then validate and deliver it. Returns True when
        kept, False when the request should be sent again, None when it has been rejected too
        often."""
        usage = {'prompt_tokens': int(usage.get('prompt_tokens') or 0),
                 'completion_tokens': int(usage.get('completion_tokens') or 0)}
        self.answers += 1
        self.streak = 0
        self.tokens[0] += usage['prompt_tokens']
        self.tokens[1] += usage['completion_tokens']
        cid = req['custom_id']
        reason = 'empty' if not (text or '').strip() else (self.validate(req, text) if self.validate else None)
        self.log.add(cid, text, usage, cost_of(usage['prompt_tokens'], usage['completion_tokens'],
                                               self.price, self.batch), rejected=reason)
        if reason:
            self.rejected[reason] += 1
            self.rejects[cid] += 1
            if self.rejects[cid] > self.s['max_rejects']:
                self.failed['rejected too often'] += 1
                return None
            return False
        if cid not in self.delivered:
            self.delivered.add(cid)
            self.kept += 1
            if self.on_result:
                self.on_result(req, {'custom_id': cid, 'text': text, 'usage': usage, 'cached': False})
        return True

    def report(self):
        return {'requests': self.sent, 'answers': self.answers, 'cached': self.cached, 'kept': self.kept,
                'rejected': dict(self.rejected), 'failed': dict(self.failed), 'reasons': dict(self.reasons),
                'retries': dict(self.retries),
                'stopped': self.stopped,
                'prompt_tokens': self.tokens[0], 'completion_tokens': self.tokens[1],
                'cost_usd': round(self.cost, 4), 'spent_usd_total': round(self.spent_total, 4),
                'unfinished': sorted(set(self.by_id) - self.delivered)}

    def postfix(self):
        return {'tok': self.tokens[0] + self.tokens[1], 'usd': f'{self.cost:.3f}',
                'rej': sum(self.rejected.values())}


# ----------------------------------------------------------------------------- set-up
def confirm(todo, job):
    """Print the estimate; go on only with yes, or a 'y' typed at a terminal."""
    s = job.s
    if s['max_requests']:
        todo = todo[:s['max_requests']]
    tin, tout, usd = estimate_cost(todo, s['model'], job.batch, s.get('price'), s.get('out_tokens_guess'))
    paid = usd > 0 or not s['base_url'] or 'api.openai.com' in s['base_url']
    limit = f", stopping at ${s['max_cost_usd']:.2f}" if s['max_cost_usd'] else ''
    print(f"llm: {len(todo)} requests to {s['model']} ({s['backend']}), about {tin:,} input and at most "
          f"{tout:,} output tokens: estimated cost up to ${usd:.2f}{limit}"
          + ('' if paid else ' (a local server: no charge)'), flush=True)
    if not paid or s['yes']:
        return
    if not sys.stdin.isatty():
        raise SystemExit('error: this run costs money; pass --yes to confirm (no terminal to ask on)')
    if input('Proceed? [y/N] ').strip().lower() not in ('y', 'yes'):
        raise SystemExit('error: cancelled')


# ----------------------------------------------------------------------------- backend: openai
async def _chat(client, req, model, timeout):
    """One chat request -> (text, usage). A body that is not a chat completion raises
    ValueError (a transient fault: malformed JSON from a proxy, a truncated answer)."""
    body = dict(model=model, messages=req['messages'])
    body.update(req.get('params', {}))
    raw = await asyncio.wait_for(client.chat.completions.with_raw_response.create(**body), timeout * 1.5)
    data = json.loads(raw.http_response.content)
    try:
        text = data['choices'][0]['message'].get('content') or ''
    except (KeyError, IndexError, TypeError):
        raise ValueError('not a chat completion')
    return text, data.get('usage') or {}


async def _ask(client, req, job, fatal):
    """Send one request until it is answered and kept, given up, or the run must stop.
    Returns True when the request is done with (kept or given up)."""
    s = job.s
    model = req.get('params', {}).get('model', s['model'])
    attempt = 0
    while not fatal and not job.should_stop():
        job.sent += 1
        try:
            text, usage = await _chat(client, req, model, s['timeout'])
        except Exception as exc:   # noqa: BLE001 (sorted by classify)
            kind = classify(exc)
            if kind == 'fatal':
                fatal.append(error_text(exc, s))
                return False
            attempt += 1
            if kind == 'bad request' or attempt > s['max_retries']:
                job.fail(error_name(exc), server_reason(exc, s))
                return True
            job.retries[error_name(exc)] += 1
            await asyncio.sleep(retry_delay(attempt, retry_after_of(exc)))
            continue
        if job.answer(req, text, usage) is not False:   # kept, or rejected too often
            return True
    return False


async def _run_openai(todo, job):
    """`concurrency` workers take requests from one queue until it is empty or the run stops."""
    client = make_client(job.s, asynchronous=True)
    queue = asyncio.Queue()
    for r in todo:
        queue.put_nowait(r)
    bar = progress(total=len(todo), desc=job.s.get('desc', 'requests'), unit='req', mininterval=0.5)
    fatal = []

    async def worker():
        while not fatal and not queue.empty() and not job.should_stop():
            if await _ask(client, queue.get_nowait(), job, fatal):
                bar.update(1)
                bar.set_postfix(job.postfix(), refresh=False)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, job.s['concurrency']))))
    finally:
        bar.close()
        await client.close()
    if fatal:
        raise SystemExit(f'error: the API refused the request ({fatal[0]}); check the key, model and base_url')


# ----------------------------------------------------------------------------- the entry point
DEFAULTS = dict(backend='openai', model='gpt-4.1-mini', base_url='', api_key_env='OPENAI_API_KEY',
                concurrency=16, max_requests=0, max_cost_usd=0.0, yes=False, timeout=60.0,
                max_retries=6, max_rejects=3, price=None, poll_seconds=30, batch_max_requests=50000,
                desc='requests', out_tokens_guess=None)


def run(requests, state_dir, validate=None, on_result=None, **settings):
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"error: llm.run: unknown settings {', '.join(sorted(unknown))}")
    s = {**DEFAULTS, **settings}
    if s['backend'] not in ('openai', 'batch'):
        raise SystemExit(f"error: backend must be openai or batch, not {s['backend']!r}")
    job = Job(requests, state_dir, validate, on_result, s)
    try:
        todo = job.deliver_cached()
        if todo:
            if job.should_stop():
                print(f'llm: budget already spent ({job.stopped}); nothing sent', flush=True)
            else:
                confirm(todo, job)
                if s['backend'] == 'openai':
                    asyncio.run(_run_openai(todo, job))
                else:
                    from tinystories import llm_batch
                    llm_batch.run_batch(todo, job)
    finally:
        job.log.close()
    return job.report()
