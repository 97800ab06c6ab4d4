"""tinystories/probes.py (python -m tinystories.probes): the probe-set generator (reproduces eval/probes.jsonl byte for byte, deterministic
per seed, large, varied, no duplicates, no answer among its distractors), the standard errors,
and the baselines that show the reasoning and context items cannot be passed by copying."""
import collections
import json
import math
import os
import re
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
    seen = set()
    for it in items:
        p, a = it['prompt'], it['answer'].rstrip('.')
        if ' years old, ' in p:  # the oldest or the youngest, from the ages said
            ages = {name: probes.NUMBERS.index(n) for name, n in
                    re.findall(r'(\w+) is (\w+)', p.split('. The ')[0])}
            pick = max if 'oldest' in p else min
            assert ages[a] == pick(ages.values()), p
            seen.add('age')
        if ' first, then the ' in p:
            foods = re.findall(r'the (\w+)', p.split('. The ')[0])
            assert foods[probes.ORDINALS.index(p.split('. The ')[1].split()[0])] == a, p
            seen.add('order')
        if ' swapped toys. Now ' in p:
            had = dict(re.findall(r'(\w+) had an? ([\w-]+)', p))
            x, y = re.search(r'(\w+) and (\w+) swapped', p).groups()
            assert a == had[y if p.endswith(f"{x} had the") else x], p
            seen.add('swap')
        if 'Mom said ' in p:
            assert f"yes to the {a}" in p and f"no to the {a}" not in p, p
            seen.add('choice')
        assert ' a a' not in p and ' a e' not in p and ' a o' not in p, p  # articles agree
    assert seen == {'age', 'order', 'swap', 'choice'}


def test_reasoning_and_context_give_copying_nothing():
    """On the shipped set, every reasoning and context candidate appears in the prompt, all four
    equally often; the copy baselines (most mentioned, last mentioned) sit within two standard
    errors of chance; knowledge and the frequency baseline are reported, for every category."""
    items = probes.load_probes(REPO_FILE)
    base = probes.probe_baselines(items, probes.load_unigrams())
    assert list(base) == list(probes.CATEGORIES)
    for cat in ('reasoning', 'context'):
        mine = [it for it in items if it['category'] == cat]
        assert len(mine) >= 250
        for it in mine:
            counts = {len(probes.mentions(it['prompt'], c)) for c in [it['answer']] + it['distractors']}
            assert len(counts) == 1 and counts.pop() >= 1, it
        b = base[cat]
        assert b['chance'] == 0.25 and b['stderr_at_chance'] == pytest.approx(math.sqrt(0.25 * 0.75 / len(mine)))
        for name in ('copy_most', 'copy_last'):
            assert abs(b[name] - b['chance']) <= 2 * b['stderr_at_chance'], (cat, name, b)
    assert all(0 <= base[c]['unigram'] <= 1 for c in base)


def test_baselines_on_hand_made_items():
    items = [  # the answer is mentioned twice, last: both copy baselines get it
        {'category': 'a', 'prompt': 'Tom had a ball and a kite. He liked the ball.', 'answer': 'ball.',
         'distractors': ['kite.', 'drum.']},
        # none mentioned: a three-way tie, a third each; plurals and articles count
        {'category': 'b', 'prompt': 'It was a sunny day.', 'answer': 'a cherry.', 'distractors': ['a pear.', 'an egg.']},
        {'category': 'b', 'prompt': 'There were no cherries left, only pears.', 'answer': '"Pear!"',
         'distractors': ['cherry.']}]
    unigrams = {'kite': 100, 'ball': 10, 'cherry': 5, 'pear': 5, 'egg': 1}
    assert probes.mentions(items[2]['prompt'], 'a cherry.') == [14]
    assert probes.baseline_credits(items[0], unigrams) == {'copy_most': 1.0, 'copy_last': 1.0, 'unigram': 0.0}
    assert probes.baseline_credits(items[1], unigrams) == {'copy_most': pytest.approx(1 / 3),
                                                          'copy_last': pytest.approx(1 / 3), 'unigram': 0.5}
    assert probes.baseline_credits(items[2], unigrams) == {'copy_most': 0.5, 'copy_last': 1.0, 'unigram': 0.5}
    base = probes.probe_baselines(items, unigrams)
    assert base['b']['chance'] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert base['b']['copy_last'] == pytest.approx((1 / 3 + 1) / 2)
    assert 'copy most' in probes.baselines_table(base)


def test_unigram_table_names_its_source(tmp_path):
    with open(probes.UNIGRAMS, encoding='utf-8') as f:
        table = json.load(f)
    assert table['source'] == 'tinystories_train_sample.txt' and len(table['sha256']) == 64
    assert table['counts']['the'] > table['counts']['ball'] > table['counts']['elephant'] >= table['min_count']
    (tmp_path / 't.txt').write_text("The dog ran. the dog's ball! A dog, a cat.")
    made = probes.make_unigrams(str(tmp_path / 't.txt'), min_count=2)
    assert made['counts'] == {'dog': 2, 'a': 2, 'the': 2} and made['words'] == 10
    with pytest.raises(SystemExit, match='unigram table'):
        probes.load_unigrams(str(tmp_path / 'missing.json'))


def test_stderr_is_binomial():
    rows = [{'correct': i < 30, 'candidates': 4} for i in range(40)]
    s = probes.stats(rows)
    assert s['accuracy'] == 0.75 and s['chance'] == 0.25
    assert s['stderr'] == pytest.approx(math.sqrt(0.75 * 0.25 / 40))
    assert probes.stats([{'correct': True, 'candidates': 2}])['stderr'] == 0.0
