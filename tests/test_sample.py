"""sample.py from only --out_dir: streamed text, --json for tools, prompts from a file."""
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


def test_json_samples_from_a_prompt_file(tmp_path):
    write_tiny_checkpoint(str(tmp_path))
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('Once upon a time\nTom had a red ball. \u2764\n', encoding='utf-8')
    r = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompts}', '--num_samples=2',
               '--max_new_tokens=20', '--json')
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row['prompt'] for row in rows] == ['Once upon a time'] * 2 + ['Tom had a red ball. \u2764'] * 2
    assert all(1 <= row['tokens'] <= 20 and isinstance(row['completion'], str) for row in rows)
    again = sample(f'--out_dir={tmp_path}', f'--start=FILE:{prompts}', '--num_samples=2',
                   '--max_new_tokens=20', '--json')
    assert again.stdout == r.stdout  # seeded


def test_streamed_text_and_errors(tmp_path):
    write_tiny_checkpoint(str(tmp_path))
    r = sample(f'--out_dir={tmp_path}', '--start=Hello', '--num_samples=1', '--max_new_tokens=10',
               '--temperature=0')
    assert r.returncode == 0 and r.stdout.startswith('Hello') and '-' * 60 in r.stdout
    r = sample('--out_dir=/nonexistent')
    assert r.returncode != 0 and 'no checkpoint' in r.stderr.strip().splitlines()[-1]
    r = sample(f'--out_dir={tmp_path}', '--start=FILE:/nonexistent.txt')
    assert r.returncode != 0 and 'cannot read prompts' in r.stderr.strip().splitlines()[-1]
