"""diversity.py: Rouge-k on hand-computed cases, the k-gram index (kgram_index.py) against brute
force, the stage end to end (report, resume from its journal, the metrics table)."""
import random

import pytest

from diversity import rouge_f, rouge_precision
from tinystories.kgram_index import KGramIndex, closest_brute_force, kgrams, words


def test_words_lowercase_and_keep_apostrophes():
    assert words("Lily's dog, Max, ran! THE END.") == ["lily's", 'dog', 'max', 'ran', 'the', 'end']


def test_rouge_hand_computed():
    a = "the cat sat on the mat"        # bigrams: the cat, cat sat, sat on, on the, the mat (5)
    b = "the cat ran on the mat today"  # bigrams: the cat, cat ran, ran on, on the, the mat, mat today (6)
    # shared: the cat, on the, the mat = 3
    assert rouge_precision(a, b) == pytest.approx(3 / 5)
    assert rouge_precision(b, a) == pytest.approx(3 / 6)
    p, r = 3 / 5, 3 / 6
    assert rouge_f(a, b) == pytest.approx(2 * p * r / (p + r))
    assert rouge_f(b, a) == pytest.approx(rouge_f(a, b))
    # k-grams are a set: a repeated bigram counts once
    assert rouge_precision("a b a b a b", "a b", k=2) == pytest.approx(1 / 2)  # {a b, b a}
    assert rouge_precision(a, b, k=1) == pytest.approx(4 / 5)  # {the,cat,sat,on,mat} vs b
    assert rouge_precision(a, b, k=3) == pytest.approx(1 / 4)  # only "on the mat"
    assert rouge_precision("same words here", "Same, words here!") == 1.0


def test_rouge_degenerate():
    assert rouge_precision("one", "one two") == 0.0  # no bigram at all
    assert rouge_f("", "") == 0.0
    assert rouge_f("x y", "z w") == 0.0


def zipf_stories(rng, n, vocab=300, max_len=120):
    """Word salad with a Zipf-like word distribution: some bigrams are in most stories (like
    "once upon"), most are rare, so the index's bound has real work to do."""
    vs = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) ** 1.2 for i in range(vocab)]
    return [' '.join(rng.choices(vs, weights, k=rng.randint(0, max_len))) for _ in range(n)], vs, weights


@pytest.mark.parametrize('k', [2, 3])
def test_index_equals_brute_force(k):
    rng = random.Random(k)
    stories, vs, weights = zipf_stories(rng, 1500)
    stories += [stories[7], stories[7]]          # exact duplicates: ties go to the lowest id
    index = KGramIndex(stories, k=k, chunk=613)  # several chunks, boundaries mid-way
    assert index.n_stories == len(stories)
    skipped = 0
    for t in range(90):
        if t % 3 == 0:    # a training story, or a piece of one
            q = stories[rng.randrange(len(stories))]
            q = q[:rng.randint(0, len(q))]
        elif t % 3 == 1:  # fresh text, sometimes with words the index has never seen
            q = ' '.join(rng.choices(vs + ['unseen'], weights + [0.2], k=rng.randint(0, 80)))
        else:             # a splice of two stories
            q = stories[rng.randrange(len(stories))][:150] + ' ' + stories[rng.randrange(len(stories))][-150:]
        assert index.closest(q) == closest_brute_force(stories, q, k), q
        skipped += index.last_stats.get('skipped_grams', 0) > 0
    assert skipped > 5  # the bound really left common k-grams uncounted on many queries


def test_index_small_cases():
    stories = ["Once upon a time there was a cat.", "", "A dog. Once upon a time!", "the end"]
    index = KGramIndex(stories, k=2, also_ks=(3,))
    assert index.closest("once upon a time") == (0, 3, 3)  # story 0 and 2 tie: lowest id
    assert index.closest("the end of it") == (3, 1, 3)
    assert index.closest("nothing shared here") == (-1, 0, 2)
    assert index.closest("") == (-1, 0, 0)
    q, n = index.query_grams("once upon zebra upon a")
    assert n == 4 and len(q) == 2  # "upon zebra", "zebra upon" cannot be in the index
    assert index.overlap("once upon zebra upon a") == 0.5  # 2 of its 4 bigrams are known
    assert index.overlap("once upon a time", k=3) == 1.0
    assert index.overlap("a time there is", k=3) == 0.5  # "time there is" is not there
    assert index.overlap("once") is None
    assert kgrams(words("a b c"), 2) == {('a', 'b'), ('b', 'c')}


# ----------------------------------------------------------------------------- the stage, end to end
import json
import os
import subprocess
import sys

import numpy as np

from helpers import byte_tokenizer_record, write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_dataset(data_dir, train, val):
    """A prepared dataset with the byte-level tokenizer (what prepare.py writes, in small)."""
    os.makedirs(data_dir, exist_ok=True)
    rec = byte_tokenizer_record()
    splits = {}
    for split, stories in (('train', train), ('val', val)):
        ids = []
        for s in stories:
            ids += [rec['eot_token']] + list(s.encode('utf-8'))
        np.array(ids, dtype=np.uint16).tofile(os.path.join(data_dir, f'{split}.bin'))
        splits[split] = {'stories': len(stories), 'tokens': len(ids), 'bytes': len(''.join(stories).encode())}
    with open(os.path.join(data_dir, 'tokenizer.tiktoken'), 'w') as f:
        f.write(rec['tiktoken'])
    with open(os.path.join(data_dir, 'meta.json'), 'w') as f:
        json.dump({'vocab_size': 257, 'eot_token': 256, 'tokenizer': 'bytes',
                   'pat_str': rec['pat_str'], 'dtype': 'uint16', 'splits': splits}, f)


def run_stage(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'diversity.py'), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_stage_writes_report_and_resumes(tmp_path):
    rng = random.Random(0)
    stories = [f"Once upon a time, {rng.choice(['Lily', 'Tom', 'Mia'])} had a "
               f"{rng.choice(['ball', 'kite', 'boat'])}. It was <b>fun</b> & "
               f"{rng.choice(['happy', 'sad'])}. The end." for _ in range(60)]
    data, out = str(tmp_path / 'data'), str(tmp_path / 'run')
    write_dataset(data, stories[:50], stories[50:])
    write_tiny_checkpoint(out, block_size=128)
    args = [f'--out_dir={out}', f'--data_dir={data}', '--num_stories=8', '--max_new_tokens=40',
            '--overlap_ks=2,3', '--batch_size=5', '--device=cpu']
    r = run_stage(*args)
    assert r.returncode == 0, r.stderr
    rep = os.path.join(out, 'diversity')
    for name in ('summary.json', 'histograms.png', 'overlap.png', 'closest.html', 'completions.jsonl'):
        assert os.path.getsize(os.path.join(rep, name)) > 0, name
    with open(os.path.join(rep, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['train_stories'] == 50 and summary['completions'] == 8
    with open(os.path.join(rep, 'completions.jsonl')) as f:
        recs = [json.loads(line) for line in f]
    assert len(recs) == 8
    for rec in recs:  # each prompt is the first 40% of the training story it came from
        assert not rec['too_long']
        assert stories[rec['story']].startswith(rec['prompt'] )
        assert rec['prompt'] + rec['ending'] == stories[rec['story']]
    # the reported closest-story figures are the brute-force ones
    best = max(closest_brute_force(stories[:50], r['completion'])[1] / max(len(kgrams(words(r['completion']), 2)), 1)
               for r in recs)
    assert summary['closest_precision']['max'] == pytest.approx(best, abs=1e-4)
    assert 'Rouge-2 precision of the completion against the true ending' in r.stdout
    assert 'max Rouge-2 F against the other completions' in r.stdout
    assert summary['measures']['closest_precision'].startswith('max Rouge-2 precision')
    # resume: the journal keeps batch 0 whole and a torn line (what kill -9 mid-write leaves);
    # a re-run makes only the rest, and every completion is what the first run made
    journal = os.path.join(rep, '.state', 'samples.jsonl')
    lines = open(journal).read().splitlines(keepends=True)
    assert len(lines) == 2  # 8 completions in batches of 5
    with open(journal, 'w') as f:
        f.write(lines[0] + lines[1][:30])
    os.remove(os.path.join(rep, 'completions.jsonl'))
    r = run_stage(*args)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(rep, 'completions.jsonl')) as f:
        again = [json.loads(line) for line in f]
    assert again == recs
    assert open(journal).read().splitlines(keepends=True)[0] == lines[0]


def test_stage_bad_input(tmp_path):
    r = run_stage(f'--out_dir={tmp_path}/none')
    assert r.returncode != 0 and 'error: no checkpoint' in r.stderr
    write_tiny_checkpoint(str(tmp_path / 'run'))
    r = run_stage(f'--out_dir={tmp_path}/run', '--device=cpu')  # the tiny checkpoint names no data_dir
    assert r.returncode != 0 and 'error:' in r.stderr and 'data_dir' in r.stderr


def test_closest_html_escapes_and_marks(tmp_path):
    from diversity import write_closest_html
    row = {'story': 1, 'closest': 4, 'closest_precision': 0.5, 'prompt': 'A <i>prompt</i>',
           'completion': 'the dog <script>alert(1)</script> ran home',
           'closest_text': 'Then the dog ran home & slept.'}
    path = str(tmp_path / 'c.html')
    write_closest_html(path, [row], 2)
    page = open(path, encoding='utf-8').read()
    assert '<script>' not in page and '&lt;script&gt;' in page and '&lt;i&gt;' in page
    assert '&amp; slept' in page
    assert '<mark>ran</mark> <mark>home</mark>' in page  # "ran home" is shared
    assert '<mark>the</mark> <mark>dog</mark>' in page


def test_stage_source_txt_and_jsonl(tmp_path):
    """--source: the training stories come from files (as prepare.py reads them), not train.bin."""
    rng = random.Random(1)
    stories = [f"Once upon a time, {rng.choice(['Lily', 'Tom', 'Mia'])} saw a "
               f"{rng.choice(['frog', 'star', 'cake'])}. It was {i} days old. The end." for i in range(30)]
    (tmp_path / 'train.txt').write_text(''.join(s + '\n<|endoftext|>\n' for s in stories), encoding='utf-8')
    d = tmp_path / 'shards'
    (d / '.state').mkdir(parents=True)  # generate_data.py's state: skipped
    (d / '.state' / 'batch.jsonl').write_text('{"story": "not a training story"}\n')
    (d / 'stories-00000.jsonl').write_text(
        ''.join(json.dumps({'id': str(i), 'story': s, 'source': 'offline'}) + '\n' for i, s in enumerate(stories)))
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out, block_size=128)  # it names no data_dir: --source is enough
    for source in (tmp_path / 'train.txt', d):
        r = run_stage(f'--out_dir={out}', f'--source={source}', '--num_stories=4', '--max_new_tokens=20', '--device=cpu',
                      '--overlap_ks=2', '--max_train_stories=25')
        assert r.returncode == 0, r.stderr
        with open(os.path.join(out, 'diversity', 'summary.json')) as f:
            summary = json.load(f)
        assert summary['train_stories'] == 25 and summary['completions'] == 4
        assert summary['val_overlap']['2'] == {'n': 0}  # no held-out baseline from files
        with open(os.path.join(out, 'diversity', 'completions.jsonl')) as f:
            recs = [json.loads(line) for line in f]
        assert len(recs) == 4
        for rec in recs:
            assert rec['story'] < 25 and rec['prompt'] + rec['ending'] == stories[rec['story']]
    r = run_stage(f'--out_dir={out}', f'--source={tmp_path / "nope.jsonl"}')
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith('error: --source:')


def test_a_dataset_of_another_tokenizer_is_re_encoded(tmp_path):
    """The paper's models use GPT-2's tokenizer, our datasets our own: diversity.py decodes the
    dataset with its tokenizer and re-encodes the text with the model's."""
    stories = [f"Once upon a time, Tom had a red ball number {i}. He was happy. The end." for i in range(30)]
    data, out = str(tmp_path / 'data'), str(tmp_path / 'run')
    write_dataset(data, stories[:25], stories[25:])
    tok = os.path.join(data, 'tokenizer.tiktoken')  # the same size, two bytes' ids swapped
    lines = open(tok).read().splitlines()
    lines[0], lines[1] = lines[0].split()[0] + ' 1', lines[1].split()[0] + ' 0'
    open(tok, 'w').write('\n'.join(sorted(lines, key=lambda l: int(l.split()[1]))) + '\n')
    write_tiny_checkpoint(out, block_size=128)
    r = run_stage(f'--out_dir={out}', f'--data_dir={data}', '--num_stories=3', '--max_new_tokens=10',
                  '--batch_size=3', '--device=cpu')
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, 'diversity', 'completions.jsonl')) as f:
        recs = [json.loads(line) for line in f]
    assert len(recs) == 3 and all(stories[r['story']].startswith(r['prompt']) for r in recs)
