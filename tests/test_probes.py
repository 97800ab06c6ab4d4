"""tinystories/probes.py (python -m tinystories.probes): the probe-set generator (reproduces eval/probes.jsonl byte for byte, deterministic
per seed, large, varied, no duplicates, no answer among its distractors) and the standard errors."""
import collections
import json
import math
import os
import subprocess
import sys

import pytest

from tinystories import probes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_FILE = os.path.join(ROOT, 'eval', 'probes.jsonl')


def test_generator_reproduces_the_repo_file_byte_for_byte():
    text = open(REPO_FILE, encoding='utf-8').read()
    n = sum(1 for line in text.splitlines() if json.loads(line)['category'] == 'knowledge')
    assert probes.probes_jsonl(probes.generate_probes(probes.seed, n)) == text


def test_cli_writes_the_same_bytes(tmp_path):
    out = tmp_path / 'p.jsonl'
    run = subprocess.run([sys.executable, '-m', 'tinystories.probes', '--seed=3', '--per_category=40', f'--out={out}'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert out.read_text(encoding='utf-8') == probes.probes_jsonl(probes.generate_probes(3, 40))
    bad = subprocess.run([sys.executable, '-m', 'tinystories.probes', '--per_category=0', f'--out={out}'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.strip().startswith('error: --per_category=0')


def test_deterministic_per_seed():
    a, b, c = (probes.generate_probes(s, 60) for s in (5, 5, 6))
    assert a == b and a != c


def test_the_set_is_large_varied_and_clean():
    items = [json.loads(line) for line in open(REPO_FILE, encoding='utf-8')]
    cats = collections.Counter(it['category'] for it in items)
    assert set(cats) == set(probes.CATEGORIES) and min(cats.values()) >= 200, cats
    assert len({it['id'] for it in items}) == len(items)
    assert len({it['prompt'] for it in items}) == len(items)  # no duplicates
    for it in items:
        cands = [it['answer']] + it['distractors']
        assert len(cands) == 1 + probes.DISTRACTORS
        assert len({c.lower() for c in cands}) == len(cands), it  # the answer is no distractor
    for cat in probes.CATEGORIES:  # every template contributes, and the prompts vary
        mine = [it for it in items if it['category'] == cat]
        assert len({it['answer'] for it in mine}) >= 25, cat
        names = {w for it in mine for w in it['prompt'].split() if w.strip('.,"\'s') in probes.GIRLS + probes.BOYS}
        assert len(names) >= 20, cat


def test_templates_read_right():
    """A few hand-checked properties of what the templates say."""
    items = probes.generate_probes(probes.seed, 250)
    for it in items:
        p, a = it['prompt'], it['answer']
        if ' gave one to ' in p or ' gave him one more' in p or ' gave her one more' in p:
            had = probes.NUMBERS.index(p.split(' had ')[1].split()[0])
            assert probes.NUMBERS.index(a.split()[0]) == had + (1 if 'more' in p else -1), p
        if 'moved the' in p:
            assert p.split(' to the ')[-1].split('.')[0] == a.rstrip('.'), p
        assert ' a a' not in p and ' a e' not in p and ' a o' not in p, p  # articles agree


def test_stderr_is_binomial():
    rows = [{'correct': i < 30, 'candidates': 4} for i in range(40)]
    s = probes.stats(rows)
    assert s['accuracy'] == 0.75 and s['chance'] == 0.25
    assert s['stderr'] == pytest.approx(math.sqrt(0.75 * 0.25 / 40))
    assert probes.stats([{'correct': True, 'candidates': 2}])['stderr'] == 0.0
