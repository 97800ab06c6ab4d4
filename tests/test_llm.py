"""llm.py against the local stand-in server (tests/fake_openai.py, 127.0.0.1 only): faults and
retries, the response log (never paying twice), budgets, confirmation, the Batch API."""
import json
import os
import time

import pytest

from tinystories import gpt_eval, llm, llm_client
from tinystories.fake_openai import FakeOpenAI


def requests_(n, prefix='r'):
    return [{'custom_id': f'{prefix}{i}', 'params': {'max_tokens': 50},
             'messages': [{'role': 'user', 'content': f'Tell story {i}. use the verb "run"'}]}
            for i in range(n)]


def no_refusal(req, text):
    return 'refusal' if text.startswith("I'm sorry") else None


@pytest.fixture
def server():
    with FakeOpenAI(latency=0.005) as s:
        yield s


def run(server, reqs, state, **kw):
    got = []
    settings = dict(base_url=server.base_url, yes=True, concurrency=4, timeout=1.0, poll_seconds=0.02)
    settings.update(kw)
    report = llm.run(reqs, str(state), validate=no_refusal,
                     on_result=lambda req, res: got.append(res), **settings)
    return report, got


def test_every_fault_is_retried_and_each_answer_delivered_once(server, tmp_path):
    server.timeout_sleep = 1.5
    server.faults += ['429', '500', 'malformed', 'empty', 'reset', 'timeout', 'refusal', '429']
    report, got = run(server, requests_(25), tmp_path)
    assert sorted(r['custom_id'] for r in got) == sorted(f'r{i}' for i in range(25))
    assert report['kept'] == 25 and report['unfinished'] == []
    assert report['rejected'] == {'empty': 1, 'refusal': 1}
    assert report['retries']['http 429'] == 2 and report['retries']['http 500'] == 1
    assert {'JSONDecodeError', 'APIConnectionError', 'APITimeoutError'} <= set(report['retries'])
    assert report['prompt_tokens'] > 0 and report['completion_tokens'] > 0 and report['cost_usd'] > 0


def test_retry_after_is_honoured(server, tmp_path):
    server.retry_after_ms = 400
    server.faults += ['429']
    t0 = time.perf_counter()
    report, got = run(server, requests_(1), tmp_path)
    assert len(got) == 1 and time.perf_counter() - t0 >= 0.4
    assert llm_client.retry_delay(1, retry_after=3.0) >= 3.0 and llm_client.retry_delay(20) <= 30.0


def test_an_answer_received_is_never_paid_for_twice(server, tmp_path):
    reqs = requests_(12)
    run(server, reqs, tmp_path)
    calls = server.chat_calls
    log = tmp_path / 'responses.jsonl'
    with open(log, 'a', encoding='utf-8') as f:      # a kill in the middle of a write
        f.write('{"custom_id": "r99", "te')
    report, got = run(server, reqs + requests_(3, prefix='new'), tmp_path)
    assert server.chat_calls == calls + 3                 # only the new ones were sent
    assert report['cached'] == 12 and report['kept'] == 15
    assert all(r['cached'] for r in got if r['custom_id'].startswith('r'))
    assert all(json.loads(line) for line in log.read_text().splitlines())   # torn line cut


def test_max_requests_and_max_cost_stop_the_run(server, tmp_path):
    report, got = run(server, requests_(20), tmp_path / 'a', max_requests=5, concurrency=2)
    assert server.chat_calls == 5 and len(got) == 5
    assert report['stopped'] == 'max_requests' and len(report['unfinished']) == 15
    # about $1 an answer (a made-up price): a $3.5 budget buys 4 answers, one at a time
    tokens = (len(requests_(1)[0]['messages'][0]['content']) // 4 + 1)
    report, got = run(server, requests_(10), tmp_path / 'b', max_cost_usd=3.5, concurrency=1,
                      price=(1e6 / tokens, 0.0))
    assert len(got) == 4 and report['stopped'] == 'max_cost_usd'
    # the spend is remembered: a re-run with the same budget sends nothing
    calls = server.chat_calls
    report, got = run(server, requests_(10), tmp_path / 'b', max_cost_usd=3.5, concurrency=1,
                      price=(1e6 / tokens, 0.0))
    assert server.chat_calls == calls and report['cached'] == 4 and report['stopped'] == 'max_cost_usd'


def test_a_paid_run_needs_yes_and_a_key(server, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match='^error: .*--yes'):   # pytest's stdin is no terminal
        run(server, requests_(3), tmp_path, yes=False, price=(1.0, 1.0))
    assert server.chat_calls == 0
    monkeypatch.delenv('NO_SUCH_KEY_VAR', raising=False)
    with pytest.raises(SystemExit, match='^error: set the API key'):
        run(server, requests_(3), tmp_path, base_url='', api_key_env='NO_SUCH_KEY_VAR')
    # a local server at no charge needs neither
    report, got = run(server, requests_(3), tmp_path, yes=False, model='local-model')
    assert len(got) == 3


def test_a_bad_key_stops_the_run_with_one_clear_error(tmp_path):
    with FakeOpenAI() as server:
        server.faults += ['401'] * 10
        with pytest.raises(SystemExit, match='^error: the API refused'):
            run(server, requests_(3), tmp_path)


def test_two_turn_conversations(server, tmp_path):
    turn1 = requests_(3)
    run(server, turn1, tmp_path)
    report, got = run(server, turn1, tmp_path)        # turn 1's answers again, from the log, for free
    assert report['cached'] == 3
    answers = {r['custom_id']: r['text'] for r in got}
    turn2 = [llm.followup(r, answers[r['custom_id']], 'Now grade it.', r['custom_id'] + '/2') for r in turn1]
    report, got = run(server, turn2, tmp_path)
    assert len(got) == 3
    last = server.answered[-1]['messages']
    assert [m['role'] for m in last] == ['user', 'assistant', 'user'] and last[2]['content'] == 'Now grade it.'


def test_batch_api_splits_matches_and_resubmits(server, tmp_path):
    server.batch_fail_once |= {'r2', 'r7'}
    report, got = run(server, requests_(10), tmp_path, backend='batch', batch_max_requests=4)
    assert sorted(r['custom_id'] for r in got) == sorted(f'r{i}' for i in range(10))
    assert len(server.batches) == 4                      # 4 + 4 + 2, then the 2 failed ones
    assert report['retries'] == {'server_error': 2} and report['kept'] == 10
    assert server.chat_calls == 0                        # no chat request: all through batches


class Crash(Exception):
    pass


def test_a_restart_polls_batches_in_flight_instead_of_paying_again(server, tmp_path):
    server.batch_polls = 3

    def crash(req, res):
        raise Crash   # the process dies after the first answer: both batches are in flight
    with pytest.raises(Crash):
        llm.run(requests_(10), str(tmp_path), on_result=crash, base_url=server.base_url, yes=True,
                backend='batch', batch_max_requests=5, poll_seconds=0.02)
    assert len(server.batches) == 2
    state = json.load(open(tmp_path / 'batches.json'))
    assert [b['status'] for b in state['batches']].count('in_flight') >= 1
    report, got = run(server, requests_(10), tmp_path, backend='batch', batch_max_requests=5)
    assert len(server.batches) == 2                     # nothing submitted again
    assert sorted(r['custom_id'] for r in got) == sorted(f'r{i}' for i in range(10))
    assert report['cached'] == 1


def test_a_submission_killed_before_its_id_was_saved_is_found_again(server, tmp_path):
    report, got = run(server, requests_(3), tmp_path / 'a', backend='batch')
    fid = next(iter(server.batches.values()))['input_file_id']
    os.makedirs(tmp_path / 'b')
    ids = [f'r{i}' for i in range(3)]
    with open(tmp_path / 'b' / 'batches.json', 'w') as f:
        json.dump({'batches': [{'id': None, 'input_file_id': fid, 'status': 'submitting', 'custom_ids': ids}]}, f)
    report, got = run(server, requests_(3), tmp_path / 'b', backend='batch')
    assert len(server.batches) == 1 and len(got) == 3


def test_settings_from_a_stage_config():
    ns = {'backend': 'batch', 'grader_model': 'gpt-4o', 'concurrency': 3, 'yes': True, 'other': 1}
    assert llm.settings_from(ns) == {'backend': 'batch', 'model': 'gpt-4o', 'concurrency': 3, 'yes': True}
    with pytest.raises(SystemExit, match='^error: llm.run: unknown settings'):
        llm.run([], '/nonexistent', bogus=1)


def test_the_key_is_masked_in_errors_a_server_echoes(tmp_path, monkeypatch):
    key = 'sk-test-SECRET-0123456789'
    monkeypatch.setenv('OPENAI_API_KEY', key)
    with FakeOpenAI() as server:
        server.always = '401-echo'
        with pytest.raises(SystemExit) as e:
            run(server, requests_(3), tmp_path)
    assert 'Incorrect API key' in str(e.value) and key not in str(e.value) and 'SECRET' not in str(e.value)
    assert llm_client.mask(f'bad key {key}!', {'api_key_env': 'OPENAI_API_KEY'}) == 'bad key sk-***!'


def test_a_server_failing_every_request_stops_the_run_after_a_streak(server, tmp_path):
    server.always = '500'
    report, got = run(server, requests_(40), tmp_path, max_retries=0, concurrency=1)
    assert got == [] and len(report['unfinished']) == 40
    assert server.chat_calls == llm.FAILURE_STREAK and report['failed'] == {'http 500': llm.FAILURE_STREAK}
    assert report['stopped'].startswith(f'{llm.FAILURE_STREAK} requests in a row failed')


def test_the_servers_reason_is_kept_beside_its_status_and_the_key_masked(tmp_path, monkeypatch):
    key = 'sk-test-SECRET-0123456789'
    monkeypatch.setenv('OPENAI_API_KEY', key)
    settings = {'api_key_env': 'OPENAI_API_KEY'}
    # any run of 6 or more of the key's characters is masked, not only the whole key
    assert llm_client.mask('key ending in 0123456789, or T-0123', settings) == 'key ending in ***, or ***'
    assert llm_client.mask('sk-te and 01234: 5 in a row', settings) == 'sk-te and 01234: 5 in a row'
    with FakeOpenAI() as server:
        server.error_message = 'prompt too long for the context ({key_end})'
        server.faults += ['400', '400', 'text-500']
        report, got = run(server, requests_(4), tmp_path, concurrency=1, max_retries=0)
    # counts key on the status alone; the server's words sit beside it, once per status
    assert report['failed'] == {'http 400': 2, 'http 500': 1} and len(got) == 1
    assert report['reasons'] == {'http 400': 'prompt too long for the context (***)',
                                 'http 500': 'Internal Server Error'}
    assert llm.failures_text(report) == ('http 400 x2 (the server said: prompt too long for the '
                                         'context (***)); http 500 x1 (the server said: Internal Server Error)')
    assert gpt_eval.no_answer(dict(report, stopped=None)) == 'no answer: ' + llm.failures_text(report)
    assert '0123456789' not in json.dumps(report)
    long = type('E', (), {'response': type('R', (), {'text': json.dumps({'detail': 'x' * 500})})()})()
    assert llm_client.server_reason(long, settings) == 'x' * llm_client.REASON_CHARS + '...'


def test_the_hub_token_is_hidden_in_part_too(monkeypatch):
    """hub.py hides HF_TOKEN the same way llm_client hides the API key (secret.hide_secret)."""
    from tinystories import hub
    monkeypatch.setenv('HF_TOKEN', 'hf_abcdefSECRET123')
    assert hub.mask('401: token hf_abcdefSECRET123 refused') == '401: token *** refused'
    assert hub.mask('a token ending in SECRET123') == 'a token ending in ***'
    assert hub.mask('nothing to hide, not even abc') == 'nothing to hide, not even abc'
