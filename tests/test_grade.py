"""grade.py: probe scoring on a model whose preferences the test sets, the grader's answer
parser (gpt_eval.py), exact aggregation, --compare, GPT-Eval end to end against a local
stand-in server, and prompts too long for the context reported, never graded."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from tinystories import gpt_eval
import grade
from tinystories import probes
from tinystories import probes as probes_module  # (tests name their probe files `probes`)
from model import GPT, GPTConfig
from tinystories.words import word_used
from helpers import write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unigram_model(prefs, block_size=64):
    """A byte-level GPT that ignores its context: every position predicts logits `prefs`
    {char: logit} (0 for the other bytes). All blocks are zeroed, and the final LayerNorm has
    gain 0 and bias e0, so the hidden state is e0 everywhere and the tied output layer reads
    column 0 of the embedding, where the test writes its logits."""
    model = GPT(GPTConfig(vocab_size=257, block_size=block_size, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ch, logit in prefs.items():
            model.wte.weight[ord(ch), 0] = logit
        model.ln_f.bias[0] = 1.0
    return model.eval()


def expected_score(prefs, text, norm='token'):
    logp = torch.log_softmax(torch.tensor([prefs.get(chr(i), 0.0) for i in range(256)] + [0.0]),
                             dim=0)
    total = sum(logp[b].item() for b in text.encode())
    return total / len(text.encode()) if norm in ('token', 'byte') else total


PREFS = {'a': 4.0, 'b': -3.0, 'c': 1.0, ' ': 2.0}


@pytest.fixture(scope='module')
def unigram_ckpt(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('unigram'))
    write_tiny_checkpoint(out, model=unigram_model(PREFS))
    return out


def write_jsonl(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')
    return str(path)


def test_repo_data_files_are_valid():
    items = grade.load_probes(grade.probes_file)
    cats = {c: sum(it['category'] == c for it in items) for c in grade.CATEGORIES}
    assert all(n >= 200 for n in cats.values()), cats
    assert len({it['id'] for it in items}) == len(items)
    for it in items:  # one right answer, distinct candidates
        cands = [it['answer']] + it['distractors']
        assert len(set(cands)) == len(cands) >= 3, it['id']
    prompts = grade.load_prompts(grade.prompts_file)
    assert len(prompts) >= 50 and len({p['id'] for p in prompts}) == len(prompts)
    # cut off mid-sentence: no prompt ends a sentence
    assert all(not p['prompt'].rstrip().endswith(('.', '!', '?')) for p in prompts)
    assert all(len(w['words']) == 3 for w in grade.read_jsonl(grade.words_file))


def test_probe_scores_follow_the_models_preferences(unigram_ckpt):
    from tinystories.checkpoint import load_run
    model, enc, ckpt = load_run(unigram_ckpt, 'cpu')
    items = [
        {'id': 'k1', 'category': 'knowledge', 'prompt': 'The', 'answer': 'aaa',
         'distractors': ['bbb', 'ccc']},                                    # right: a is liked
        {'id': 'k2', 'category': 'knowledge', 'prompt': 'The', 'answer': 'bbb',
         'distractors': ['aaa']},                                           # wrong: picks aaa
        # length normalisation decides: per token "aaaaab" beats "c", in total it does not
        {'id': 'r1', 'category': 'reasoning', 'prompt': 'It was ', 'answer': 'aaaaab',
         'distractors': ['c', 'bb', 'cb']},
        # a prompt longer than the context is cut from the left, and still scores
        {'id': 'c1', 'category': 'context', 'prompt': 'x' * 200, 'answer': 'ca',
         'distractors': ['cb']},
    ]
    report = grade.run_probes(model, enc, items, 'token', batch_size=3)
    rows = {r['id']: r for r in report['items']}
    assert [rows[i]['correct'] for i in ('k1', 'k2', 'r1', 'c1')] == [True, False, True, True]
    assert rows['k2']['chosen'] == 'aaa'
    for it in items:  # exact scores: mean log-prob of the continuation's bytes (space included)
        cands = [it['answer']] + it['distractors']
        want = [expected_score(PREFS, probes.continuation(it['prompt'], c)) for c in cands]
        assert rows[it['id']]['scores'] == pytest.approx(want, abs=1e-5)
    assert report['by_category']['knowledge'] == {'items': 2, 'correct': 1, 'accuracy': 0.5,
                                                  'chance': pytest.approx((1 / 3 + 1 / 2) / 2),
                                                  'stderr': pytest.approx(math.sqrt(0.25 / 2))}
    assert report['by_category']['reasoning']['chance'] == 0.25
    assert report['overall']['correct'] == 3 and report['overall']['accuracy'] == 0.75
    assert report['overall']['chance'] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4 + 1 / 2) / 4)
    # unnormalised, the short candidate wins
    total = grade.run_probes(model, enc, items[2:3], 'none')
    assert total['items'][0]['chosen'] == 'c' and not total['items'][0]['correct']


def test_probes_cli_writes_report(unigram_ckpt, tmp_path):
    probes = write_jsonl(tmp_path / 'p.jsonl', [
        {'category': 'knowledge', 'prompt': 'A', 'answer': 'aa', 'distractors': ['bb']},
        {'category': 'mine', 'prompt': 'B', 'answer': 'bb', 'distractors': ['cc', 'aa']}])
    run = subprocess.run([sys.executable, 'grade.py', f'--out_dir={unigram_ckpt}', '--probes',
                          f'--probes_file={probes}', '--device=cpu'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 'knowledge' in run.stdout and 'mine' in run.stdout and 'overall' in run.stdout
    with open(os.path.join(unigram_ckpt, 'grade', 'probes.json')) as f:
        report = json.load(f)
    assert report['by_category']['knowledge']['accuracy'] == 1.0
    assert report['by_category']['mine']['accuracy'] == 0.0
    assert report['overall'] == {'items': 2, 'correct': 1, 'accuracy': 0.5,
                                 'chance': pytest.approx((1 / 2 + 1 / 3) / 2),
                                 'stderr': pytest.approx(0.5 / math.sqrt(2))}
    header = run.stdout.splitlines()[1].split()  # the table keeps its columns, stderr added
    assert header == ['category', 'items', 'correct', 'accuracy', 'chance', 'stderr']
    assert report['checkpoint']['params'] > 0 and report['items'][0]['id'] == 'item-1'
    # the probe file's hash (a changed file means a rescore) and the baselines, below the table
    assert report['probes_sha256'] == probes_module.file_sha256(probes)
    assert report['baselines']['knowledge']['copy_most'] == 0.5  # neither candidate is in the prompt
    assert run.stdout.splitlines()[5].split()[:3] == ['baseline', 'chance', 'copy']


def test_bad_probes_file_is_a_clear_error(unigram_ckpt, tmp_path):
    bad = write_jsonl(tmp_path / 'bad.jsonl', [{'prompt': 'A', 'answer': 'aa'}])
    with pytest.raises(SystemExit, match='item 1: needs prompt, answer'):
        grade.load_probes(bad)
    with pytest.raises(SystemExit, match='not found'):
        grade.load_probes(str(tmp_path / 'missing.jsonl'))
    (tmp_path / 'broken.jsonl').write_text('{"prompt": \n')
    with pytest.raises(SystemExit, match='line 1 is not valid JSON'):
        grade.load_probes(str(tmp_path / 'broken.jsonl'))


def test_words_score_counts_required_words(tmp_path):
    assert word_used('jump', 'The dogs jumped over a Ball.')
    assert word_used('dog', 'The dogs jumped over a Ball.')
    assert word_used('ball', 'The dogs jumped over a Ball.')
    assert not word_used('cat', 'He caught it.')
    # a model that only ever writes "a": every story is "aaaa...", so only the word "a" is used
    from tinystories.tokenizer_interface import tokenizer_from_record
    from helpers import byte_tokenizer_record
    model = unigram_model({'a': 50.0})
    enc = tokenizer_from_record(byte_tokenizer_record())
    words = write_jsonl(tmp_path / 'w.jsonl', [{'words': ['b', 'c']}, {'words': ['aaaa', 'd']}])
    r = grade.run_words(model, enc, words, 'Words: {words}\nStory:', 4, 1.0, 0, 8)
    assert r['items'][0]['story'] == 'aaaa' and r['items'][1]['used'] == ['aaaa']
    assert (r['words'], r['used'], r['fraction']) == (4, 1, 0.25)


@pytest.mark.parametrize('answer', [
    '{"grammar": 8, "creativity": 6, "consistency": 7, "plot": 5, "age_group": "C"}',
    'Here are my grades:\n```json\n{"Grammar": "8/10", "Creativity": 6, "Consistency": '
    '{"score": 7}, "Plot": 5.0, "Age group": "C: 6-7"}\n```',
    'Grammar: 8/10\nCreativity: 6/10\nConsistency: 7/10\nPlot: 5/10\nAge group: C',
    '**Grammar:** 8 out of 10\n**Creativity:** 6 out of 10\n**Consistency with the beginning '
    '(out of 10):** 7\n**Plot (1-10):** 5\n**Age group:** I would guess C (6-7).',
    '- grammar - 8\n- creativity - 6\n- consistency - 7\n- plot makes sense - 5\n'
    '- Estimated age: 6-7',
])
def test_parse_grades_reads_varied_formats(answer):
    assert gpt_eval.parse_grades(answer) == {'grammar': 8, 'creativity': 6, 'consistency': 7,
                                          'plot': 5, 'age_group': 'C'}


@pytest.mark.parametrize('answer', [
    'The story is lovely and the grammar is good.',                      # no grades at all
    'Grammar: 8/10\nCreativity: 6/10\nConsistency: 7/10\nAge group: C',  # plot missing
    'Grammar: 18\nCreativity: 6\nConsistency: 7\nPlot: 5\nAge group: C',  # off the scale
    'Grammar: 8\nCreativity: 6\nConsistency: 7\nPlot: 5\nAge group: G',   # no such group
])
def test_parse_grades_rejects_incomplete_answers(answer):
    assert gpt_eval.parse_grades(answer) is None


def test_summary_aggregates_exactly():
    def rec(g, c, k, p, a):
        return {'scores': {'grammar': g, 'creativity': c, 'consistency': k, 'plot': p,
                           'age_group': a}}
    records = [rec(8, 6, 7, 5, 'C'), rec(6, 4, 9, 7, 'C'), rec(10, 5, 8, 6, 'D'),
               {'error': 'unparseable', 'scores': None}, {'error': 'HTTP 500', 'scores': None}]
    s = gpt_eval.summarise(records)
    assert s['counts'] == {'completions': 5, 'graded': 3, 'unparseable': 1, 'too_long': 0, 'failed': 1}
    assert s['scores']['grammar'] == {'mean': 8.0, 'std': 2.0, 'min': 6, 'max': 10, 'n': 3}
    assert s['scores']['creativity']['mean'] == 5.0 and s['scores']['creativity']['std'] == 1.0
    assert s['scores']['plot']['mean'] == 6.0
    assert s['age_groups']['C'] == {'ages': '6-7', 'count': 2, 'fraction': 2 / 3}
    assert s['age_groups']['A']['count'] == 0


def test_compare_prints_one_row_per_checkpoint(tmp_path, capsys):
    for name, acc in (('a', 0.5), ('b', 0.75)):
        d = tmp_path / name / 'grade'
        d.mkdir(parents=True)
        info = {'out_dir': str(tmp_path / name), 'iter_num': 100, 'params': 1_500_000}
        score = {'accuracy': acc, 'items': 4, 'chance': 0.25}  # (probes.json's fields: records.PROBES)
        (d / 'probes.json').write_text(json.dumps(
            {'checkpoint': info, 'by_category': {c: score for c in grade.CATEGORIES}, 'overall': score}))
    summary = gpt_eval.summarise([{'scores': {'grammar': 7, 'creativity': 5, 'consistency': 6,
                                           'plot': 4, 'age_group': 'B'}}])
    summary['checkpoint'] = {'out_dir': str(tmp_path / 'b'), 'iter_num': 100, 'params': 1_500_000}
    (tmp_path / 'b' / 'grade' / 'summary.json').write_text(json.dumps(summary))
    table = grade.compare_table([str(tmp_path / 'a'), str(tmp_path / 'b')]).splitlines()
    assert len(table) == 3 and 'grammar' in table[0] and 'knowledge' in table[0]
    assert table[1].split()[1:4] == ['1.50M', '100', '-'] and table[1].split()[-1] == '50.0%'
    assert table[2].split()[3:8] == ['7.00', '5.00', '6.00', '4.00', 'B']
    with pytest.raises(SystemExit, match='no reports'):
        grade.compare_table([str(tmp_path / 'none')])


# -----------------------------------------------------------------------------
# GPT-Eval end to end, against a stand-in grader on 127.0.0.1

GRADES = {  # per prompt: what the stand-in grader answers, in a different format each
    'Mia had a kite': '{"grammar": 8, "creativity": 6, "consistency": 7, "plot": 5, "age_group": "C"}',
    'Tom saw a frog': 'Grammar: 6/10\nCreativity: 4/10\nConsistency: 9/10\nPlot: 7/10\n'
                      'Age group: B (4-5)',
    'Sam lost his hat': 'I cannot grade this.',   # never parses: retried, then reported
}


def grader_respond(body, calls):
    msgs = body['messages']
    beginning = msgs[0]['content'].split('\n\n')[1].split('***')[0]
    calls.append((beginning, len(msgs)))
    if len(msgs) == 1:
        return f'An assessment of "{beginning}".'
    return GRADES[beginning]


def run_grade(args, env_key='sk-test-123'):
    env = dict(os.environ, GRADE_TEST_KEY=env_key)
    return subprocess.run([sys.executable, 'grade.py', '--device=cpu', '--api_key_env=GRADE_TEST_KEY',
                           '--grader_model=fake-grader', '--max_new_tokens=12', '--batch_size=4'] + args,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_gpt_eval_end_to_end(tmp_path):
    from tinystories.fake_openai import FakeOpenAI
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out)
    prompts = write_jsonl(tmp_path / 'prompts.jsonl', [{'id': f'p{i}', 'prompt': p}
                                                        for i, p in enumerate(GRADES)])
    calls = []
    with FakeOpenAI(respond=lambda body: grader_respond(body, calls)) as server:
        server.faults += ['500']  # a transient failure is llm.py's to retry
        run = run_grade([f'--out_dir={out}', f'--prompts_file={prompts}', '--num_samples=2',
                         f'--base_url={server.base_url}', '--parse_retries=1'])
        assert run.returncode == 0, run.stderr
        answered = list(server.answered)
        first_calls = len(calls)
        # a second run re-uses every answer already received; only the never-parsed grades
        # (which llm.py does not keep as answers) are asked again
        again = run_grade([f'--out_dir={out}', f'--prompts_file={prompts}', '--num_samples=2',
                           f'--base_url={server.base_url}', '--parse_retries=1'])
        assert again.returncode == 0, again.stderr
        assert calls[first_calls:] == [('Sam lost his hat', 3)] * 4
    assert server.auth_headers == {'Bearer sk-test-123'}

    # the two turns, as specified
    with open(os.path.join(out, 'grade', 'completions.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert [(r['id'], r['sample']) for r in records] == [(f'p{i}', j) for i in range(3) for j in range(2)]
    turn1 = [b for b in answered if len(b['messages']) == 1]
    turn2 = [b for b in answered if len(b['messages']) == 3]
    assert len(turn1) == 6 and len(turn2) == 4 + 2 * 2  # unparseable: asked 1 + parse_retries times
    by_text = {b['messages'][0]['content']: b for b in turn1}
    for r in records:
        body = by_text[gpt_eval.ASSESS.format(beginning=r['prompt'], completion=r['completion'])]
        assert f"{r['prompt']}***{r['completion']}" in body['messages'][0]['content']
        assert body['model'] == 'fake-grader'
    for b in turn2:
        assert b['messages'][0]['role'] == 'user' and b['messages'][1]['role'] == 'assistant'
        assert b['messages'][1]['content'].startswith('An assessment of')
        assert b['messages'][2]['content'] == gpt_eval.GRADE
        assert b['response_format']['json_schema']['schema']['required'][-1] == 'age_group'

    # scores parse from both formats; the unparseable answer is reported, never scored
    for r in records:
        assert r['assessment'] == f'An assessment of "{r["prompt"]}".'
        if r['prompt'] == 'Sam lost his hat':
            assert r['scores'] is None and r['error'] == 'unparseable'
            assert r['grades_text'] == 'I cannot grade this.'
        else:
            assert r['error'] is None and r['scores'] == gpt_eval.parse_grades(GRADES[r['prompt']])
    with open(os.path.join(out, 'grade', 'summary.json')) as f:
        summary = json.load(f)
    assert summary['counts'] == {'completions': 6, 'graded': 4, 'unparseable': 2, 'too_long': 0,
                                 'failed': 0}
    assert summary['scores']['grammar']['mean'] == 7.0 and summary['scores']['plot']['mean'] == 6.0
    assert summary['scores']['consistency']['min'] == 7 and summary['scores']['consistency']['max'] == 9
    assert summary['age_groups']['B']['count'] == 2 and summary['age_groups']['C']['fraction'] == 0.5
    md = open(os.path.join(out, 'grade', 'summary.md')).read()
    assert '| grammar | 7.00 |' in md and 'unparseable' in run.stdout + md
    # the key never lands in a report or the log
    for root, _, files in os.walk(os.path.join(out, 'grade')):
        for name in files:
            assert 'sk-test-123' not in open(os.path.join(root, name), errors='replace').read()
    assert 'sk-test-123' not in run.stdout + run.stderr


def test_gpt_eval_needs_a_key_for_the_real_api(tmp_path):
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out)
    prompts = write_jsonl(tmp_path / 'prompts.jsonl', [{'prompt': 'Once upon a time'}])
    run = run_grade([f'--out_dir={out}', f'--prompts_file={prompts}'], env_key='')
    assert run.returncode != 0 and 'GRADE_TEST_KEY' in run.stderr
    assert run.stderr.strip().count('\n') == 0 or 'Traceback' not in run.stderr


def test_completions_resume_after_a_kill(tmp_path):
    from tinystories.checkpoint import load_run
    write_tiny_checkpoint(str(tmp_path))
    model, enc, ckpt = load_run(str(tmp_path), 'cpu')
    prompts = [{'id': f'p{i}', 'prompt': f'Once upon a time {i}'} for i in range(5)]
    args = ('ckpt', 3, 8, 1.0, 7, 4)  # key, num_samples, max_new_tokens, temperature, seed, batch
    full = grade.sample_completions(model, enc, prompts, str(tmp_path / 'a.jsonl'), *args)
    assert [r['key'] for r in full] == [f'p{i}/{j}' for i in range(5) for j in range(3)]
    assert len({r['completion'] for r in full}) > 1 and not any(r['too_long'] for r in full)
    # a run killed in the middle of writing batch 2: batches 0-1 whole, a torn line after them
    lines = open(tmp_path / 'a.jsonl').read().splitlines(keepends=True)
    assert len(lines) == 4  # 15 completions in batches of 4, a line per batch
    (tmp_path / 'b.jsonl').write_text(''.join(lines[:2]) + lines[2][:20])
    resumed = grade.sample_completions(model, enc, prompts, str(tmp_path / 'b.jsonl'), *args)
    assert resumed == full
    assert open(tmp_path / 'b.jsonl').read() == open(tmp_path / 'a.jsonl').read()


def test_too_long_prompts_are_reported_never_graded(tmp_path):
    """block_size 64: a prompt of 80 bytes has no room. It is marked, warned about, not sent to
    the grader and not scored as an empty completion; the prompts that fit are graded."""
    from tinystories.fake_openai import FakeOpenAI
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out, block_size=64)
    prompts = write_jsonl(tmp_path / 'prompts.jsonl', [
        {'id': 'short', 'prompt': 'Mia had a kite'}, {'id': 'long', 'prompt': 'Tom saw a frog ' * 6}])
    calls = []
    with FakeOpenAI(respond=lambda body: grader_respond(body, calls)) as server:
        run = run_grade([f'--out_dir={out}', f'--prompts_file={prompts}', f'--base_url={server.base_url}'])
    assert run.returncode == 0, run.stderr
    assert 'warning: 1 of 2 prompts' in run.stderr and 'too_long' in run.stderr
    assert {c[0] for c in calls} == {'Mia had a kite'}  # the long one never reached the grader
    records = [json.loads(line) for line in open(os.path.join(out, 'grade', 'completions.jsonl'))]
    long = [r for r in records if r['id'] == 'long'][0]
    assert long['too_long'] and long['completion'] is None and long['error'] == 'too_long'
    assert long['scores'] is None
    summary = json.load(open(os.path.join(out, 'grade', 'summary.json')))
    assert summary['counts'] == {'completions': 2, 'graded': 1, 'unparseable': 0, 'too_long': 1,
                                 'failed': 0}


def test_a_run_can_be_graded_while_it_trains_but_not_twice_at_once(unigram_ckpt, tmp_path):
    """grade.py locks <run>/grade/, not the run: train.py's lock on the run does not stop it,
    a second grade.py of the same run does."""
    from tinystories.dirlock import lock_dir, unlock_dir
    probes = write_jsonl(tmp_path / 'p.jsonl', [{'prompt': 'A', 'answer': 'aa', 'distractors': ['bb']}])
    cmd = [sys.executable, 'grade.py', f'--out_dir={unigram_ckpt}', '--probes', f'--probes_file={probes}',
           '--device=cpu']
    lock_dir(unigram_ckpt, 'run')  # as train.py would hold it
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        lock_dir(os.path.join(unigram_ckpt, 'grade'), 'grade.py')  # as another grade.py would
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode != 0 and run.stderr.startswith('error:') and str(os.getpid()) in run.stderr
    finally:
        unlock_dir(os.path.join(unigram_ckpt, 'grade'))
        unlock_dir(unigram_ckpt)


def test_gpt_eval_falls_back_when_structured_output_is_refused(tmp_path, monkeypatch):
    from tinystories import fake_openai
    chat = fake_openai._Handler.chat

    def no_json_schema(handler, body):  # a server that does not know response_format
        if 'response_format' in body:
            return handler.send_json(400, {'error': {'message': 'response_format unsupported'}})
        return chat(handler, body)
    monkeypatch.setattr(fake_openai._Handler, 'chat', no_json_schema)
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out)
    prompts = write_jsonl(tmp_path / 'prompts.jsonl', [{'prompt': 'Tom saw a frog'}])
    with fake_openai.FakeOpenAI(respond=lambda body: grader_respond(body, [])) as server:
        run = run_grade([f'--out_dir={out}', f'--prompts_file={prompts}',
                         f'--base_url={server.base_url}'])
    assert run.returncode == 0, run.stderr
    assert 'refused structured output' in run.stdout
    with open(os.path.join(out, 'grade', 'summary.json')) as f:
        summary = json.load(f)
    assert summary['counts']['graded'] == 1 and summary['scores']['grammar']['mean'] == 6


# -----------------------------------------------------------------------------
# Instruct grading: the grader scores how well each instruction line is followed

def test_parse_instruct_grades():
    names = ['Summary', 'Words']
    want = {'Summary': {'score': 7, 'reason': 'Close.'}, 'Words': {'score': 9, 'reason': 'All used.'}}
    assert gpt_eval.parse_instruct_grades(
        '{"Summary": {"score": 7, "reason": "Close."}, "Words": {"score": 9, "reason": "All used."}}', names) == want
    assert gpt_eval.parse_instruct_grades('```json\n{"summary": "7/10", "WORDS": 9}\n```', names) == {
        'Summary': {'score': 7, 'reason': ''}, 'Words': {'score': 9, 'reason': ''}}
    assert gpt_eval.parse_instruct_grades('**Summary:** 7/10 - Close.\n- Words: 9 out of 10, All used.', names) == want
    for bad in ('A fine story.', '{"Summary": 7}', '{"Summary": 7, "Words": 12}', '{"Summary": 0, "Words": 5}'):
        assert gpt_eval.parse_instruct_grades(bad, names) is None, bad


def test_instruct_prompt_set_is_shipped_and_complete(tmp_path):
    from tinystories.instruct_eval import FIELDS, PROMPT_SET_HOLDOUT, load_prompt_set
    records = load_prompt_set(grade.instruct_file)
    assert len(records) >= 50 and len({r['id'] for r in records}) == len(records)
    assert all(r['source'] == 'offline' and set(r['lines']) <= set(FIELDS) for r in records)
    held = [r for r in records if r['held_out']]
    assert held and all(sorted(r['lines']) == sorted(PROMPT_SET_HOLDOUT) for r in held)
    assert {tuple(r['lines']) for r in records if not r['held_out']} and len(held) < len(records)
    with pytest.raises(SystemExit, match='item 1: needs an id'):
        load_prompt_set(write_jsonl(tmp_path / 'bad.jsonl', [dict(records[0], lines=['Colour'])]))


def test_instruct_grading_end_to_end(tmp_path):
    """grade.py --instruct: the model writes from each record's instruction lines; the stand-in
    grader answers in JSON, in labelled lines, malformed (never parses: retried, then reported)
    and off the scale; the scores, the held-out split and the offline scores reach the summary."""
    from tinystories.fake_openai import FakeOpenAI
    from tinystories.instruct_eval import load_prompt_set, summarise_following
    shipped = load_prompt_set(grade.instruct_file)
    chosen = [shipped[0], shipped[1], shipped[2], shipped[3]]  # all four lines, Summary+Words (held out), ...
    prompts = write_jsonl(tmp_path / 'instruct.jsonl', chosen)
    answers = {chosen[0]['id']: '{"Summary": {"score": 8, "reason": "ok"}, "Words": {"score": 6, "reason": "two"}, '
                                '"Sentence": {"score": 4, "reason": "no"}, "Features": {"score": 2, "reason": "no"}}',
               chosen[1]['id']: 'Summary: 6/10 - partly\nWords: 10/10 - all three',
               chosen[2]['id']: 'I cannot grade this story.',
               chosen[3]['id']: '{"Summary": 11, "Sentence": 3}'}
    seen = []

    def respond(body):
        text = body['messages'][0]['content']
        rec = next(r for r in chosen if r['summary'] in text or ', '.join(r['instruction']['words']) in text)
        seen.append(rec['id'])
        assert 'The student\'s story:' in text and body['response_format']['type'] == 'json_schema'
        return answers[rec['id']]
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out, block_size=512)  # byte-level: room for the instruction lines
    with FakeOpenAI(respond=respond) as server:
        run = run_grade([f'--out_dir={out}', '--instruct', f'--instruct_file={prompts}',
                         f'--base_url={server.base_url}', '--parse_retries=1'])
    assert run.returncode == 0, run.stderr
    assert sorted(seen) == sorted([r['id'] for r in chosen[:2]] + [chosen[2]['id'], chosen[3]['id']] * 2)
    records = [json.loads(l) for l in open(os.path.join(out, 'grade', 'instruct_completions.jsonl'))]
    by_id = {r['id']: r for r in records}
    assert by_id[chosen[0]['id']]['scores']['Words'] == {'score': 6, 'reason': 'two'}
    assert by_id[chosen[1]['id']]['scores'] == {'Summary': {'score': 6, 'reason': 'partly'},
                                                'Words': {'score': 10, 'reason': 'all three'}}
    assert by_id[chosen[1]['id']]['held_out'] and not by_id[chosen[0]['id']]['held_out']
    for bad in chosen[2:]:
        r = by_id[bad['id']]
        assert r['scores'] is None and r['error'] == 'unparseable' and r['grades_text'] == answers[bad['id']]
    summary = json.load(open(os.path.join(out, 'grade', 'instruct_summary.json')))
    assert summary['counts'] == {'stories': 4, 'graded': 2, 'unparseable': 2, 'too_long': 0, 'failed': 0}
    assert summary['following'] == pytest.approx((5 + 8) / 2) and summary['held_out'] == 8
    assert summary['seen'] == 5 and summary['by_line']['Summary'] == 7 and summary['by_line']['Features'] == 2
    assert summary == dict(summary, **summarise_following(records))
    assert 0 <= summary['words_used'] <= 1 and 0 <= summary['summary_nouns_used'] <= 1
    md = open(os.path.join(out, 'grade', 'instruct_summary.md')).read()
    assert '| ... on the held-out combination | 8.00 |' in md
