"""interpret.py: the head classifier on synthetic attention with known answers, the neuron ranking
on a tiny model with planted neurons, and the report rendered in headless Chromium."""
import html
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import byte_tokenizer_record, python_env, write_tiny_checkpoint
import interpret
from interpret import (calibration, choose_threshold, describe_heads, head_scores, label_heads,
                       neuron_activations, planted_heads, rank_neurons, write_report)
from model import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def causal_rows(T, weights_of_row):
    """(T, T) attention whose row q is weights_of_row(q) (over keys 0..q), normalised."""
    att = torch.zeros(T, T)
    for q in range(T):
        w = torch.as_tensor(weights_of_row(q), dtype=torch.float32)
        att[q, :q + 1] = w / w.sum()
    return att


def synthetic_heads(T=60, seed=0):
    """Heads with known answers on a token sequence where token 7 (a "name") recurs at irregular
    places: previous-token, offsets 2 and 3, the name, the first token, uniform."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(20, 60, (T,), generator=g)
    name_at = [3, 11, 12, 30, 44, 57]
    tokens[name_at] = 7
    tokens[0] = 0  # the EOT every story starts with

    def one_hot(q, ks):
        w = torch.zeros(q + 1)
        for k in ks:
            if 0 <= k <= q:
                w[k] += 1
        return w if w.sum() else torch.eye(q + 1)[q]  # nothing to look at yet: itself

    heads = {
        'previous': causal_rows(T, lambda q: one_hot(q, [q - 1])),
        'offsets 2+3': causal_rows(T, lambda q: one_hot(q, [q - 2, q - 3])),
        'name': causal_rows(T, lambda q: one_hot(q, [k for k in name_at if k <= q]) * 0.9
                            + torch.full((q + 1,), 0.1 / (q + 1))),
        'first token': causal_rows(T, lambda q: one_hot(q, [0]) * 0.8 + torch.full((q + 1,), 0.2 / (q + 1))),
        'uniform': causal_rows(T, lambda q: torch.ones(q + 1)),
    }
    return torch.stack(list(heads.values())), tokens, list(heads)


def test_head_classifier_known_answers():
    att, tokens, names = synthetic_heads()
    s = head_scores(att, tokens)
    labels = dict(zip(names, label_heads(s)))
    assert labels == {'previous': 'distance', 'offsets 2+3': 'distance', 'name': 'semantic',
                      'first token': 'first-token', 'uniform': 'uniform'}
    # the numbers behind the labels
    assert s['offsets'][0].argmax() == 1 and s['distance'][0] == pytest.approx(1.0, abs=1e-5)
    assert set(s['offsets'][1].topk(2).indices.tolist()) == {2, 3}
    assert s['token_mass'][2].argmax() == 7                   # the semantic head's token: the name
    assert s['semantic'][2] > 0.6 and s['distance'][2] < 0.5   # ... at no fixed distance
    assert s['sink'][3] > 0.75 and s['sink'][0] < 0.05
    assert abs(float(s['semantic'][4])) < 1e-5                 # uniform attention: nothing extra
    # offsets and token shares are shares of the attention off the first token
    assert torch.allclose(s['offsets'].sum(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(s['token_mass'].sum(dim=1), torch.ones(5), atol=1e-5)


def test_untrained_heads_are_labelled_uniform():
    """A freshly initialised model's heads average their context: uniform, never semantic."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, block_size=128, n_layer=2, n_head=4, n_embd=64)).eval()
    ids = torch.tensor(list(b'Once upon a time, there was a little girl named Lily. She loved to play in the park.'))
    for att in model.attention_maps(ids[None]):
        assert label_heads(head_scores(att[0] if att.dim() == 4 else att, ids)) == ['uniform'] * 4


def test_head_classifier_thresholds():
    att, tokens, names = synthetic_heads(seed=1)
    s = head_scores(att, tokens)
    strict = dict(zip(names, label_heads(s, distance_min=1.01, semantic_min=2.0, sink_min=0.99, uniform_min=1.01)))
    assert set(strict.values()) == {'mixed'}


def story_tokens(n, seed=0):
    """n byte-tokenised stories, each starting with the EOT (256)."""
    from helpers import tiny_stories
    return [torch.tensor([256] + list(t.encode()[:120])) for t in tiny_stories(n, seed=seed)]


def test_planted_heads_get_their_labels_with_the_chosen_thresholds():
    """The thresholds in interpret.py's keys (chosen in docs/instruments.md) label every planted
    head as planted, on stories the thresholds were not chosen on."""
    thresholds = (interpret.distance_threshold, interpret.semantic_threshold,
                  interpret.sink_threshold, interpret.uniform_threshold)
    for i, tokens in enumerate(story_tokens(4, seed=5)):
        att, names, expected = planted_heads(tokens, seed=i)
        got = label_heads(head_scores(att, tokens), *thresholds)
        assert dict(zip(names, got)) == dict(zip(names, expected))


def test_choose_threshold_plain_numbers():
    # planted: positives at least 0.8, negatives at most 0.2; the model's heads leave 0.3-0.7 empty
    t, bracket = choose_threshold([0.9, 0.8], [0.1, 0.2], [0.05, 0.25, 0.3, 0.7, 0.95])
    assert bracket == (0.2, 0.8) and t == pytest.approx(0.5)
    assert choose_threshold([0.3], [0.4], [0.35]) == (None, (0.4, 0.3))  # planted heads overlap


def test_calibration_on_a_model():
    """calibration() scores planted heads and the model's heads on the same stories; an untrained
    model's heads read uniform on every story, and the planted heads leave a bracket."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, block_size=128, n_layer=1, n_head=2, n_embd=32)).eval()
    c = calibration(model, [t.tolist() for t in story_tokens(3)], (0.5, 0.5, 0.5, 0.9))
    assert c['stories'] == 3 and len(c['heads']) == 2
    assert all(h['label'] == 'uniform' and h['label_share'] == 1.0 for h in c['heads'])
    assert {p['expected'] for p in c['planted'].values()} >= {'distance', 'semantic', 'uniform', 'mixed'}
    for score in ('distance', 'semantic'):
        low, high = c['suggested'][score]['bracket']
        assert low < c['suggested'][score]['threshold'] <= high


def test_report_lists_what_semantic_heads_attend_to(tmp_path):
    """Each semantic head's most attended tokens are in the report (escaped) and in its record."""
    text = 'Lily saw <b>Max</b>. Max ran to Lily. Then Max and Lily went home. Max was happy.'
    tokens = torch.tensor([256] + list(text.encode()))
    att, names, expected = planted_heads(tokens)
    token_text = lambda t: '<EOT>' if t == 256 else '<sp>' if t == 32 else chr(t)  # markup to escape
    heads = describe_heads([att], tokens, token_text, (0.5, 0.5, 0.5, 0.9), attended=5)
    semantic = [h for h in heads if h['label'] == 'semantic']
    assert [names[h['head']] for h in semantic] == [n for n, e in zip(names, expected) if e == 'semantic']
    assert all('attended_tokens' not in h for h in heads if h['label'] != 'semantic')
    for h in semantic:
        shares = [v for _, v, _ in h['attended_tokens']]
        assert len(shares) == 5 and shares == sorted(shares, reverse=True)
    meta = {'out_dir': 'run<x>', 'n_layer': 1, 'n_head': len(names), 'n_embd': 8, 'params': 1,
            'iter': 0, 'story_tokens': len(tokens)}
    write_report(str(tmp_path / 'report.html'), meta, text, heads, [], [])
    page = (tmp_path / 'report.html').read_text()
    table = page.split("<table id='attended'>")[1].split('</table>')[0]
    assert table.count("<tr class='attended'>") == len(semantic)
    for h in semantic:
        for t, v, b in h['attended_tokens']:
            assert f"<code>{html.escape(repr(t))}</code> {v:.2f} / {b:.2f}" in table
    assert '&lt;sp&gt;' in table and '<sp>' not in page and '<b>Max' not in page


def planted_model():
    """A 1-layer model whose MLP neuron 5 fires on 'Z' (strongly) and neuron 9 on 'Q' (more
    weakly), through the real forward pass: attention switched off, no position embedding, 'Z'
    and 'Q' alone on embedding dimensions 0 and 1, and those neurons reading those dimensions."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, block_size=64, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        model.wpe.weight.zero_()
        model.h[0].attn.c_proj.weight.zero_()
        model.h[0].attn.c_proj.bias.zero_()
        model.wte.weight[:, :2] = 0
        model.wte.weight[ord('Z'), 0] = 1.0
        model.wte.weight[ord('Q'), 1] = 1.0
        fc = model.h[0].mlp.c_fc
        fc.weight[5].zero_()
        fc.weight[5, 0] = 5.0
        fc.bias[5] = -2.0
        fc.weight[9].zero_()
        fc.weight[9, 1] = 2.0
        fc.bias[9] = -2.0
    return model.eval()


def test_neuron_ranking_finds_planted_neurons():
    model = planted_model()
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b'abcdefghijklmnop rstuvwxy ', dtype=np.uint8)
    seqs = []
    for _ in range(30):
        s = rng.choice(letters, 50).tolist()
        if rng.random() < 0.4:
            s[rng.integers(50)] = ord('Z')
        if rng.random() < 0.25:
            s[rng.integers(50)] = ord('Q')
        seqs.append([256] + s)
    acts = neuron_activations(model, seqs, [0], batch=7)[0]  # batches of uneven lengths
    assert acts.shape == (sum(map(len, seqs)), 128)
    flat = np.concatenate(seqs)
    n_z, n_q = int((flat == ord('Z')).sum()), int((flat == ord('Q')).sum())
    assert n_z >= 6 and n_q >= 3
    order, sel, positions = rank_neurons(acts, top=3, skip=flat == 256)
    assert set(order[:2].tolist()) == {5, 9}      # the planted neurons are the most selective
    assert all(flat[p] == ord('Z') for p in positions[5])  # and fire on their tokens
    assert all(flat[p] == ord('Q') for p in positions[9])
    a5 = acts[positions[5], 5].astype(float)
    assert (np.diff(a5) <= 0).all() and a5[0] > 20    # highest first; 'Z' drives it hard
    # the same numbers with each sequence alone (padding in a batch changes nothing)
    alone = neuron_activations(model, seqs[:1], [0])[0]
    np.testing.assert_allclose(alone, acts[:len(seqs[0])], atol=1e-2)


def test_rank_neurons_plain_numbers():
    acts = np.zeros((100, 3), dtype=np.float16)
    acts[:, 0] = np.linspace(0, 1, 100)   # spread out: not selective
    acts[[10, 50], 1] = [5, 9]            # two spikes: selective
    acts[0, 2] = 100                      # a spike on a skipped row does not count
    skip = np.zeros(100, bool)
    skip[0] = True
    order, sel, positions = rank_neurons(acts, top=2, skip=skip)
    assert order[0] == 1 and positions[1].tolist() == [50, 10]
    assert positions[2][0] != 0


def write_dataset(data_dir, stories):
    os.makedirs(data_dir, exist_ok=True)
    rec = byte_tokenizer_record()
    ids = []
    for s in stories:
        ids += [256] + list(s.encode('utf-8'))
    np.array(ids, dtype=np.uint16).tofile(os.path.join(data_dir, 'val.bin'))
    with open(os.path.join(data_dir, 'tokenizer.tiktoken'), 'w') as f:
        f.write(rec['tiktoken'])
    with open(os.path.join(data_dir, 'meta.json'), 'w') as f:
        json.dump({'vocab_size': 257, 'eot_token': 256, 'tokenizer': 'bytes', 'pat_str': rec['pat_str'],
                   'dtype': 'uint16', 'splits': {'train': {'stories': 0, 'tokens': 0, 'bytes': 0},  # no train.bin
                                                 'val': {'stories': len(stories), 'tokens': len(ids),
                                                         'bytes': len(''.join(stories).encode())}}}, f)


EVIL = 'Tom said "<script>document.title=\'pwned\'</script>" & <img src=x onerror=alert(1)> </div>'


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('interp')
    out, data = str(tmp / 'run'), str(tmp / 'data')
    write_tiny_checkpoint(out, block_size=128, n_layer=2, n_head=2)
    write_dataset(data, [f"Lily had a ball {i}. {EVIL}" for i in range(12)])
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'interpret.py'), f'--out_dir={out}',
                        f'--data_dir={data}', f'--story=Once upon a time. {EVIL}', '--neurons=3',
                        '--top=2', '--calibrate=True'], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return os.path.join(out, 'interpret')


def test_report_files_and_escaping(report):
    for name in ('report.html', 'summary.json', 'attention_layer0.png', 'attention_layer1.png'):
        assert os.path.getsize(os.path.join(report, name)) > 0
    with open(os.path.join(report, 'summary.json')) as f:
        summary = json.load(f)
    assert len(summary['heads']) == 4 and len(summary['neurons']) == 2 * 3
    assert sum(summary['labels'].values()) == 4
    with open(os.path.join(report, 'calibration.json')) as f:  # --calibrate, on the 12 stories
        calibration = json.load(f)
    assert calibration['stories'] == 12 and len(calibration['heads']) == 4
    assert set(calibration['suggested']) == {'distance', 'semantic'}
    page = open(os.path.join(report, 'report.html'), encoding='utf-8').read()
    assert '<script' not in page and '<img src=x' not in page
    assert '&lt;script&gt;' in page
    assert re.search(r'src=["\'](?!data:)', page) is None  # self-contained: nothing fetched


def find_chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_renders_in_chromium(report, tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium not found: apt-get install -y chromium to run this test")
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--no-first-run',
             f'--user-data-dir={tmp_path / "profile"}']
    url = 'file://' + os.path.join(report, 'report.html')
    r = subprocess.run([browser, *flags, '--dump-dom', url], capture_output=True, text=True, timeout=90)
    dom = r.stdout
    assert r.returncode == 0 and '<table id="heads">' in dom, r.stderr[-2000:]
    # every head has its row, every shown neuron its block, the heatmaps are decoded images
    assert len(re.findall(r'<tr class="head ', dom)) == 4
    assert len(re.findall(r'<div class="neuron"', dom)) == 6
    assert '<title>interpret:' in dom and 'pwned' not in dom.split('</title>')[0]
    assert '<script' not in dom  # the story's script tag stayed text
    shot = tmp_path / 'shot.png'
    r = subprocess.run([browser, *flags, f'--screenshot={shot}', '--window-size=1200,2000', url],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]


def test_bad_input_is_one_line_error(tmp_path):
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out, n_layer=2)
    bad = tmp_path / 'latin1.txt'
    bad.write_bytes('Lily went to the caf\xe9.'.encode('latin-1'))
    for arg, msg in (('--layers=0,5', 'error: --layers=0,5'),
                     (f'--story=FILE:{tmp_path}/missing.txt', 'error: --story: cannot read'),
                     (f'--story=FILE:{bad}', 'is not UTF-8 text'),
                     ('--num_stories=0', 'error: --num_stories=0 must be at least 1'),
                     ('--batch_size=0', 'error: --batch_size=0'),
                     ('--distance_threshold=nan', 'error: --distance_threshold=nan'),
                     ('--device=foo', 'error:')):
        r = subprocess.run([sys.executable, os.path.join(ROOT, 'interpret.py'), f'--out_dir={out}', arg],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        err = r.stderr.strip()
        assert r.returncode != 0 and msg in err and 'Traceback' not in err and '\n' not in err, (arg, err)


def test_report_folder_is_locked(tmp_path):
    """interpret locks its own report folder: a second interpret of the same run is refused."""
    from tinystories.dirlock import lock_dir, unlock_dir
    out = str(tmp_path / 'run')
    write_tiny_checkpoint(out, n_layer=1)
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; '
                               'from tinystories.dirlock import lock_dir; lock_dir(sys.argv[1]); print("held", flush=True); '
                               'time.sleep(60)', os.path.join(out, 'interpret')],
                              stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        assert holder.stdout.readline().strip() == 'held'
        r = subprocess.run([sys.executable, os.path.join(ROOT, 'interpret.py'), f'--out_dir={out}'],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode != 0 and 'in use by another interpret' in r.stderr, r.stderr
    finally:
        holder.kill()
        holder.wait()


def plant_previous_token_head(model, head=0, angle=2 * np.pi / 80, scale=800.0):
    """Make `head` of layer 0 attend to the previous token, whatever the tokens are: positions get
    a rotating code on embedding dimensions 0-3 (cos, sin, -cos, -sin: it dominates LayerNorm),
    queries read it rotated back by one position, keys read it as is, so q_t . k_s peaks at s = t-1."""
    d, hd = model.config.n_embd, model.config.n_embd // model.config.n_head
    T = model.config.block_size
    pos = torch.arange(T, dtype=torch.float32) * angle
    with torch.no_grad():
        model.wte.weight[:, :4] = 0
        model.wpe.weight[:, :4] = 10 * torch.stack([pos.cos(), pos.sin(), -pos.cos(), -pos.sin()], 1)
        W, b = model.h[0].attn.c_attn.weight, model.h[0].attn.c_attn.bias
        q, k = slice(head * hd, head * hd + 2), slice(d + head * hd, d + head * hd + 2)
        W[head * hd:(head + 1) * hd] = 0
        W[d + head * hd:d + (head + 1) * hd] = 0
        b[head * hd:(head + 1) * hd] = 0
        b[d + head * hd:d + (head + 1) * hd] = 0
        c, s = np.cos(angle), np.sin(angle)
        W[q, :2] = scale * torch.tensor([[c, s], [-s, c]])  # rotate by -angle: position t -> t-1
        W[k, :2] = torch.eye(2)


def test_planted_previous_token_head_is_labelled_distance():
    """A tiny model trained for a few steps on byte text, then one head planted to attend to
    offset 1: the classifier labels it distance, with offset 1 on top."""
    from helpers import tiny_stories
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, block_size=64, n_layer=1, n_head=2, n_embd=32))
    text = torch.tensor(list(' '.join(tiny_stories(20)).encode()), dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(10):
        i = torch.randint(len(text) - 65, (8,))
        x = torch.stack([text[j:j + 64] for j in i])
        y = torch.stack([text[j + 1:j + 65] for j in i])
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    plant_previous_token_head(model, head=0)
    model.eval()
    ids = torch.tensor([[256] + list(tiny_stories(1, seed=3)[0].encode()[:63])])
    att = model.attention_maps(ids)[0][0]
    assert att[0, 10, 9] > 0.9  # the plant works: query 10 looks at key 9
    s = head_scores(att, ids[0])
    labels = label_heads(s)
    assert labels[0] == 'distance' and int(s['offsets'][0].argmax()) == 1, (labels, s['distance'])
    assert s['distance'][0] > 0.9
