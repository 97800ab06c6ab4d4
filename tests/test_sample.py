"""sample.py from only --out_dir: streamed text, --json for tools, prompts from a file (a .txt is
one prompt, a .jsonl one per line), and a prompt too long for the context warned about, not
answered with 0 tokens in silence."""
import json
import os
import subprocess
import sys

from helpers import write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample(*args):
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    return r


def test_json_samples_from_a_jsonl_prompt_file(tmp_path):
    write_tiny_checkpoint(str(tmp_path))
    prompts = tmp_path / 'prompts.jsonl'
    prompts.write_text(json.dumps({'prompt': 'Once upon a time'}) + '\n' +
                       json.dumps({'prompt': 'Tom had a red ball. \u2764'}) + '\n', encoding='utf-8')
    r = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompts}', '--num_samples=2',
               '--max_new_tokens=20', '--json')
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row['prompt'] for row in rows] == ['Once upon a time'] * 2 + ['Tom had a red ball. \u2764'] * 2
    assert all(1 <= row['tokens'] <= 20 and isinstance(row['completion'], str) for row in rows)
    again = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompts}', '--num_samples=2',
                   '--max_new_tokens=20', '--json')
    assert again.stdout == r.stdout  # seeded


def test_a_txt_file_is_one_prompt(tmp_path):
    write_tiny_checkpoint(str(tmp_path))
    prompt = tmp_path / 'prompt.txt'
    prompt.write_text('Words: ball, red\nStory: Tom had\n', encoding='utf-8')
    r = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompt}', '--num_samples=1',
               '--max_new_tokens=5', '--json')
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and [row['prompt'] for row in rows] == ['Words: ball, red\nStory: Tom had']


def test_a_prompt_longer_than_the_context_is_warned_about_and_the_others_run(tmp_path):
    write_tiny_checkpoint(str(tmp_path))  # block_size 64, one token per byte
    prompts = tmp_path / 'prompts.jsonl'
    long = 'Once upon a time there was a very long prompt that does not fit at all.'  # 72 bytes
    prompts.write_text('\n'.join(json.dumps({'prompt': p}) for p in ['Hi', long, 'Tom ran']) + '\n')
    r = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompts}', '--num_samples=1',
               '--max_new_tokens=10', '--json', '--temperature=0')
    assert r.returncode == 0, r.stderr
    warnings = r.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith('WARNING: prompt 2 of 3') and '64' in warnings[0]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row['prompt'] for row in rows] == ['Hi', 'Tom ran']
    assert all(row['tokens'] >= 1 for row in rows)
    r = sample(f'--out_dir={tmp_path}', f'--start={long}', '--max_new_tokens=10')  # streamed, alone
    assert r.returncode != 0 and r.stderr.strip().splitlines()[0].startswith('WARNING: prompt 1 of 1')
    assert r.stderr.strip().splitlines()[-1].startswith('error: no prompt leaves room')


def test_streamed_text_and_errors(tmp_path):
    write_tiny_checkpoint(str(tmp_path))
    r = sample(f'--out_dir={tmp_path}', '--start=Hello', '--num_samples=1', '--max_new_tokens=10',
               '--temperature=0')
    assert r.returncode == 0 and r.stdout.startswith('Hello') and '-' * 60 in r.stdout
    r = sample('--out_dir=/nonexistent')
    assert r.returncode != 0 and 'no checkpoint' in r.stderr.strip().splitlines()[-1]
    r = sample(f'--out_dir={tmp_path}', '--start=FILE:/nonexistent.txt')
    assert r.returncode != 0 and 'cannot read' in r.stderr.strip().splitlines()[-1]
