"""The LLM stages against a real OpenAI-compatible server: a model of ours, exported by export.py,
served by transformers' `transformers serve` on 127.0.0.1 (offline, CPU), and
- a direct chat request (the exported chat template puts the message after <|endoftext|>);
- generate_data.py --backend=openai through it to its end, every answer validated and counted,
  then a re-run that neither asks again for a kept story nor loses one;
- grade.py GPT-Eval with the served model as the grader: its prompts are longer than the
  model's context, and the server's refusal, with its reason, is what the report says.

The served model is built by hand so that its answers are known: its one MLP maps each token to
the next word of a fixed story (a bigram chain over word tokens), whatever came before. The
story holds the three words of generate_data's story 0, so that story is kept and the others
are rejected ('missing words'). Skips only where the serving packages are missing."""
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict

import pytest
import torch

pytest.importorskip('transformers', reason='transformers is not installed (requirements-dev.txt)')
for _package in ('fastapi', 'uvicorn', 'openai'):
    pytest.importorskip(_package, reason=f'{_package} is missing: pip install -r requirements-dev.txt '
                                         '(transformers[serving])')

import generate_data as gd  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from tinystories import tokenizer as T  # noqa: E402
from tinystories.jsonl import read_jsonl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 7            # generate_data's seed: story 0's words go into the served story
STORY = 'Once upon a time , Lily saw VERB NOUN ADJECTIVE and smiled . Then she slept'.split()


def chain_model(words, block_size, n_embd=128):
    """(model, tokenizer record): a GPT whose every next token is the next word of the story
    `words` (distinct words, each one token), then <|endoftext|>; after any other token, the
    first word.
    Attention is zeroed; the MLP has one hidden unit per token that fires only for that token
    (its input weights are the token's embedding) and writes the next word's embedding, 20 times
    stronger than the residual, so the tied output layer picks it by a margin of ~80 logits."""
    text = ' '.join(words * 20)
    ranks = T.train_bpe([text], vocab_size=256 + 1 + 200)
    record_text = ''.join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    record = {'name': 'chain', 'pat_str': T.PAT_STR, 'tiktoken': record_text, 'eot_token': len(ranks),
              'vocab_size': len(ranks) + 1, 'sha256': hashlib.sha256(record_text.encode()).hexdigest()}
    enc = T.encoding_from_record(record)
    chain = [enc.encode_ordinary(' ' + w) for w in words]
    assert all(len(ids) == 1 for ids in chain), 'every story word must be one token'
    chain = [ids[0] for ids in chain] + [record['eot_token']]   # the story ends, as ours do
    assert len(set(chain)) == len(chain), 'the story words must be distinct'
    V, C = record['vocab_size'], n_embd
    assert V <= 4 * C
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=1, n_head=2, n_embd=C))
    nxt = torch.full((V,), chain[0])
    nxt[chain] = torch.tensor(chain[1:] + chain[:1])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.h[0].ln_1, model.h[0].ln_2, model.ln_f):
            ln.weight.fill_(1.0)
        emb = torch.randn(V, C, generator=g)
        emb = (emb - emb.mean(1, keepdim=True)) / emb.std(1, unbiased=False, keepdim=True)
        model.wte.weight.copy_(emb)      # LayerNorm leaves each row as it is
        mlp, A = model.h[0].mlp, 40.0
        mlp.c_fc.weight[:V] = A * emb / C   # unit j: A for token j, |.| < 0.3 A for the others
        mlp.c_fc.bias.fill_(-0.5 * A)
        mlp.c_proj.weight[:, :V] = emb[nxt].T
    return model.eval(), record


def save_run(out_dir, model, record):
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'model_args': asdict(model.config), 'model': model.state_dict(), 'iter_num': 0,
                'config': {'data_dir': '', 'out_dir': str(out_dir)}, 'tokenizer': record},
               os.path.join(out_dir, 'ckpt.pt'))


def story_words():
    """STORY with generate_data's story 0 (of SEED) words in it."""
    words = list(STORY)
    words[words.index('VERB'):words.index('ADJECTIVE') + 1] = gd.story_spec(SEED, 0)['words']
    return words


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(url, body=None, timeout=30):
    """(status, JSON body) of a GET, or of a POST of `body`."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """The chain model as a run of ours, exported, and served by `transformers serve` on a free
    port of 127.0.0.1, offline; the server's process group is killed whatever happens."""
    tmp = tmp_path_factory.mktemp('serve')
    model, record = chain_model(story_words(), block_size=2048)  # room for the grading prompts
    save_run(tmp / 'run', model, record)
    r = subprocess.run([sys.executable, 'export.py', f"--out_dir={tmp / 'run'}", f"--hf_dir={tmp / 'hf'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HUB_DISABLE_UPDATE_CHECK='1',
               HF_HUB_DISABLE_TELEMETRY='1', TRANSFORMERS_VERBOSITY='error')
    log = open(tmp / 'serve.log', 'w')
    server = subprocess.Popen([sys.executable, '-m', 'transformers.cli.transformers', 'serve', str(tmp / 'hf'),
                               '--host', '127.0.0.1', '--port', str(port), '--device', 'cpu'],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f'http://127.0.0.1:{port}/v1'
    try:
        deadline = time.time() + 60
        while True:   # ready when it lists the model
            assert server.poll() is None, 'transformers serve exited:\n' + (tmp / 'serve.log').read_text()[-3000:]
            assert time.time() < deadline, 'transformers serve not ready in 60 s'
            try:
                if get(base_url + '/models', timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        yield {'base_url': base_url, 'model': str(tmp / 'hf'), 'run': str(tmp / 'run'), 'tmp': tmp}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def continuation(words, after):
    """What the chain model answers after the word `after`: the rest of the story."""
    return ''.join(' ' + w for w in words[words.index(after) + 1:])


def test_a_direct_chat_request_continues_the_story(served):
    words = story_words()
    url, name = served['base_url'], served['model']
    status, chat = get(url + '/chat/completions', {
        'model': name, 'max_tokens': 100, 'messages': [
            {'role': 'system', 'content': 'You are a helpful assistant.'},   # left out
            {'role': 'user', 'content': 'Once upon a time'}]})
    assert status == 200, chat
    assert chat['choices'][0]['message']['content'] == continuation(words, 'time')
    assert chat['choices'][0]['finish_reason'] == 'stop'     # at <|endoftext|>
    status, done = get(url + '/completions', {'model': name, 'prompt': 'Once upon a time', 'max_tokens': 100})
    assert status == 200 and done['choices'][0]['text'] == continuation(words, 'time'), done


def generate(served, stories_dir, *extra):
    return subprocess.run([sys.executable, 'generate_data.py', '--backend=openai', f'--seed={SEED}',
                           f"--base_url={served['base_url']}", f"--model={served['model']}",
                           f'--stories_dir={stories_dir}', '--num_stories=3', '--max_tokens=30',
                           '--min_words=10', '--max_rejects=1', '--concurrency=1', '--timeout=30', *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_generate_data_through_the_server_counts_every_answer_and_resumes(served):
    stories = served['tmp'] / 'stories'
    state = stories / '.state'
    for attempt in (1, 2):
        r = generate(served, stories)
        assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
        # story 0's words are in the served story: kept; the others are rejected, each asked
        # 1 + max_rejects times, and given up with the reason
        assert r.stderr.strip().splitlines()[-1] == (   # (the lines above it: the progress bar)
            f'error: 2 of {4 - attempt} stories unfinished (failed: rejected too often x2; rejected: '
            'missing words x4); re-run the same command to continue them')
        assert r.stderr.count('error') == 1
        report = json.loads((state / 'report.json').read_text())
        assert report['requests'] == report['answers'] == 4 + (attempt == 1)
        # the re-run leaves the kept story alone (it is in the shards) and asks again for the others
        assert report['kept'] == 2 - attempt and report['stories_in_dir'] == 1 and report['cached'] == 0
        records = read_jsonl(str(stories / 'stories-00000.jsonl'))
        assert [rec['id'] for rec in records] == [f'{SEED}-00000000']
        assert records[0]['story'] == ' '.join(story_words())   # the prompt ends in '!': all of it
        assert records[0]['source'] == served['model']
        # every paid answer logged, the first run's too: the re-run asked only for the unfinished
        answers = read_jsonl(str(state / 'llm' / 'responses.jsonl'))
        assert len(answers) == 5 + 4 * (attempt - 1)
        assert [a['custom_id'] for a in answers].count(f'{SEED}-00000000') == 1


def test_the_servers_reason_reaches_the_failure_line(served):
    r = generate(served, served['tmp'] / 'refused', '--model=another-model')
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: 3 of 3 stories unfinished (failed: http 400 x3 (the server said: Server is pinned "
        f"to '{served['model']}'; requested 'another-model'.)); re-run the same command to continue them")
    assert r.stderr.count('error') == 1


def grade(served, grader, *extra):
    prompts = served['tmp'] / 'prompts.jsonl'
    prompts.write_text(json.dumps({'id': 'p0', 'prompt': 'Once upon a time'}) + '\n')
    return subprocess.run([sys.executable, 'grade.py', f"--out_dir={served['run']}", f'--prompts_file={prompts}',
                           '--device=cpu', '--num_samples=1', '--max_new_tokens=20', '--batch_size=1',
                           f"--base_url={served['base_url']}", f'--grader_model={grader}',
                           '--parse_retries=1', '--concurrency=1', *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_grade_with_the_served_model_as_grader(served):
    r = grade(served, served['model'])
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
    records = read_jsonl(os.path.join(served['run'], 'grade', 'completions.jsonl'))
    story = continuation(story_words(), 'time')
    assert len(records) == 1 and records[0]['completion'] == story
    # the served model answers a story, not grades: recorded as unparseable, never scored
    assert records[0]['assessment'] and records[0]['error'] == 'unparseable' and records[0]['scores'] is None
    assert records[0]['grades_text'].strip()
    summary = json.loads(open(os.path.join(served['run'], 'grade', 'summary.json')).read())
    assert summary['counts'] == {'completions': 1, 'graded': 0, 'unparseable': 1, 'too_long': 0, 'failed': 0}

    r = grade(served, 'another-model')     # refused: the reason in the error line and the record
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    why = (f"no answer: http 400 x1 (the server said: Server is pinned to '{served['model']}'; "
           f"requested 'another-model'.)")
    assert r.stderr.strip().splitlines()[-1] == (
        f'error: 1 of 1 completions got no grade: {why} (x1); re-run the same command to continue them')
    assert r.stderr.count('error') == 1
    records = read_jsonl(os.path.join(served['run'], 'grade', 'completions.jsonl'))
    assert records[0]['error'] == why


def test_the_chat_template_and_the_model_card(served):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(served['model'])
    chat = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Once upon'},
            {'role': 'assistant', 'content': ' a time'}, {'role': 'user', 'content': ', a cat'}]
    # <|endoftext|>, then the conversation as one story; the system message left out
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        '<|endoftext|>Once upon a time, a cat'
    card = open(os.path.join(served['model'], 'README.md')).read()
    assert 'Its context is 2048 tokens' in card and 'max_new_tokens=tok.model_max_length - ids.shape[1]' in card
    assert 'transformers serve ./hf --host 127.0.0.1' in card and '"max_tokens": 200' in card
