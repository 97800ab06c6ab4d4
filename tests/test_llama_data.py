"""Bins in a Llama model's tokenizer (issue 24): prepare.py --tokenizer=<a llama2.c model.bin> writes
llama2.c's data layout (BOS before each story, no EOS; ids checked against run.c's own encode loop,
tests/llama_reference.py), the data_dir carries tokenizer.bin, and train.py fine-tunes the .bin on
it; the run is then a model location (sample.py, load_run, resume, export). A Hugging Face Llama
that stops at EOS gets BOS s EOS per story, as its re-encoded splits are. Bits per byte count the
UTF-8 bytes of the story text (byte-fallback Unicode included), checked against run.c's forward
pass. The refusals are one line. The model and tokenizer are tiny ones made here."""
import collections
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_stories, write_byte_dataset
from llama_reference import BOS, CONFIGS, EOS, random_weights, reference_encode, reference_forward
from tinystories import llama2c
from tinystories.checkpoint import load_run, load_tokenizer
from tinystories.dataset import Reencoded, damaged_files, open_dataset, read_meta
from tinystories.evaluate import whole_split_loss
from tinystories.llama2c_tokenizer import (Llama2cTokenizer, special_pieces, tokenizer_bin, tokenizer_json,
                                           write_tokenizer_bin)
from tinystories.records import read_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = tiny_stories(60) + ["Mia ate a cake. It was très bon 😀. The end."]
VAL = tiny_stories(12, seed=1) + ["Ben said, \"Olé!\" 😀 The end."]
FORBIDDEN = "Tom saw a sign.\n<s>\nIt said stop."  # holds BOS's piece: dropped, or the bins would cut it there
NOT_PIECES = set('éè😀')  # byte fallback


def stage(*args, check=True):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def one_line_error(r, *words):
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and last.startswith('error: ') and all(w in last for w in words), r.stderr[-2000:]


def tiny_vocab():
    """A llama2.c tokenizer for the stories: the specials, their characters (but NOT_PIECES), and
    every prefix of their commonest words as merges (each scored apart)."""
    chars = sorted(set(''.join(TRAIN + VAL)) - NOT_PIECES)
    words = collections.Counter(w for s in TRAIN for w in s.split()).most_common(25)
    merged = sorted({(' ' + w)[:n] for w, _ in words for n in range(2, len(w) + 2)} - set(chars), key=len)
    pieces = special_pieces() + [c.encode() for c in chars] + [m.encode() for m in merged]
    scores = [0.0] * (259 + len(chars)) + [-float(i) for i in range(len(merged))]
    return pieces, scores


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    """A llama2.c model with its tokenizer beside it, stories, and prepare.py's bins in that tokenizer."""
    d = tmp_path_factory.mktemp('llama_data')
    pieces, scores = tiny_vocab()
    config = dict(CONFIGS['mha-tied'], vocab_size=len(pieces), seq_len=64)
    weights = random_weights(config, seed=3)
    (d / 'model').mkdir()
    llama2c.write_checkpoint(str(d / 'model' / 'm.bin'), weights, config, version=0)
    write_tokenizer_bin(str(d / 'model' / 'tokenizer.bin'), pieces, scores)
    sep = '\n<|endoftext|>\n'
    (d / 'train.txt').write_text(sep.join(TRAIN + [FORBIDDEN]) + sep, encoding='utf-8')
    (d / 'val.txt').write_text(sep.join(VAL) + sep, encoding='utf-8')
    r = stage('prepare.py', f'--source={d / "train.txt"}', f'--val_source={d / "val.txt"}',
              f'--tokenizer={d / "model" / "m.bin"}', f'--data_dir={d / "data"}', '--workers=2', '--block_mb=0.001')
    assert "a start or stop token's text" in r.stdout
    return {'dir': d, 'model': str(d / 'model' / 'm.bin'), 'data': str(d / 'data'), 'pieces': pieces,
            'scores': scores, 'config': config, 'weights': weights}


def test_bins_are_llama2c_data(made):
    """BOS s1 BOS s2 ... BOS, each story as run.c encodes it, tokenizer.bin carried with its sha256."""
    meta = read_meta(made['data'])
    tok_bytes = open(os.path.join(made['data'], 'tokenizer.bin'), 'rb').read()
    assert tok_bytes == open(os.path.join(os.path.dirname(made['model']), 'tokenizer.bin'), 'rb').read()
    assert meta['tokenizer_sha256'] == hashlib.sha256(tok_bytes).hexdigest()
    assert (meta['tokenizer_kind'], meta['start_token'], meta['stop_token']) == ('llama2c', BOS, BOS)
    assert 'eot_token' not in meta and 'pat_str' not in meta and meta['vocab_size'] == len(made['pieces'])
    assert not os.path.exists(os.path.join(made['data'], 'tokenizer.tiktoken'))
    for split, texts in (('train', TRAIN), ('val', VAL)):
        want = [t for s in texts for t in [BOS] + reference_encode(made['pieces'], made['scores'], s)] + [BOS]
        ds = open_dataset(made['data'])
        assert ds.tokens(split).tolist() == want, split
        # stories split at the start token; texts decode back; bytes are the text's UTF-8 bytes
        assert len(ds.stories(split)) == len(texts) == meta['splits'][split]['stories']
        assert ds.texts(split) == texts
        assert meta['splits'][split]['bytes'] == sum(len(s.encode('utf-8')) for s in texts)
    assert damaged_files(made['data'], meta) == {}


def test_bits_per_byte_per_utf8_byte_of_text(made):
    """whole_split_loss on the llama2.c model's own bins = run.c's forward pass over the same windows,
    the cross-entropy in bits over the UTF-8 bytes of the stories (Unicode counted by bytes)."""
    ds = open_dataset(made['data'])
    model, tok, info = load_run(made['model'], 'cpu')
    assert ds.for_model(tok, info['tokenizer']) is ds  # the same tokenizer: its bins, not re-encoded
    loss, bpb = whole_split_loss(model, ds, 'val', batch_size=4, device='cpu', show_progress=False)
    ids = ds.tokens('val').astype(np.int64)
    T, total = made['config']['seq_len'], 0.0
    for s in range(0, len(ids) - 1, T):
        x, y = ids[s:s + T], ids[s + 1:s + 1 + T]
        logits = reference_forward(made['weights'], made['config'], x.tolist())[:len(y)]
        total += F.cross_entropy(logits.double(), torch.from_numpy(y), reduction='sum').item()
    n_bytes = sum(len(s.encode('utf-8')) for s in VAL)
    assert n_bytes > sum(map(len, VAL))  # some characters are several bytes
    assert math.isclose(bpb, total / math.log(2) / n_bytes, rel_tol=1e-5)
    assert math.isclose(loss, total / (len(ids) - 1), rel_tol=1e-5)


def test_fine_tune_the_bin_then_use_the_run_everywhere(made, tmp_path):
    """prepare -> train.py --init_from=model.bin -> sample.py on the run -> resume -> export; the
    run's checkpoint holds the llama2.c tokenizer, so loading it finds it."""
    out, data = str(tmp_path / 'ft'), made['data']
    common = [f'--data_dir={data}', f'--out_dir={out}', '--device=cpu', '--dtype=float32', '--compile=False',
              '--threads=1', '--batch_size=4', '--block_size=32', '--eval_interval=100', '--eval_iters=1',
              '--progress=False', '--warmup_iters=1']
    stage('train.py', f'--init_from={made["model"]}', '--max_iters=3', *common)
    ckpt = torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)
    tok_bytes = open(os.path.join(data, 'tokenizer.bin'), 'rb').read()
    assert ckpt['tokenizer']['kind'] == 'llama2c' and ckpt['tokenizer']['sha256'] == hashlib.sha256(tok_bytes).hexdigest()
    model, tok, info = load_run(out, 'cpu')
    assert isinstance(tok, Llama2cTokenizer) and tok.data == tok_bytes and info['model_args']['rotary']
    assert load_tokenizer(out).record() == tok.record()  # what prepare.py --tokenizer=<the run> writes bins in
    ds = open_dataset(data)
    final = read_log(out)[-1]
    assert final['final'] and math.isclose(final['val_bpb'], whole_split_loss(model, ds, 'val', 4, 'cpu',
                                                                               show_progress=False)[1], rel_tol=1e-4)
    r = stage('sample.py', f'--out_dir={out}', '--start=Once upon a time', '--num_samples=2',
              '--max_new_tokens=8', '--device=cpu', '--json', '--seed=3')
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{')]
    assert len(lines) == 2 and all(s['prompt'] == 'Once upon a time' and 1 <= s['tokens'] <= 8 for s in lines), r.stdout
    stage('train.py', '--init_from=resume', '--max_iters=5', *common)
    assert torch.load(os.path.join(out, 'ckpt.pt'), weights_only=True)['iter_num'] == 5
    # run.c's files: the model's own tokenizer.bin, unchanged
    stage('export.py', f'--out_dir={out}', f'--llama2c_dir={tmp_path / "c"}')
    assert (tmp_path / 'c' / 'tokenizer.bin').read_bytes() == tok_bytes
    x = torch.tensor([[BOS] + tok.encode('Once upon a time')])
    exported, resumed = load_run(str(tmp_path / 'c' / 'model.bin'), 'cpu')[0], load_run(out, 'cpu')[0]
    assert torch.allclose(exported(x)[0], resumed(x)[0], atol=1e-5)


def test_a_llama_that_stops_at_eos(made, tmp_path):
    """A Hugging Face Llama folder whose eos_token_id is 2: its bins are BOS s EOS BOS s EOS ...,
    exactly the splits of another data_dir re-encoded for it, and read back as the same stories."""
    folder = tmp_path / 'hf'  # (prepare reads only the tokenizer: no weights needed)
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps({'model_type': 'llama', 'eos_token_id': EOS}))
    llama = Llama2cTokenizer(tokenizer_bin(made['pieces'], made['scores']))
    (folder / 'tokenizer.json').write_text(json.dumps(tokenizer_json(llama)))
    data = str(tmp_path / 'data')
    d = made['dir']
    stage('prepare.py', f'--source={d / "train.txt"}', f'--val_source={d / "val.txt"}',
          f'--tokenizer={folder}', f'--data_dir={data}', '--workers=1')
    ds = open_dataset(data)
    tok = load_tokenizer(str(folder))
    assert (ds.meta['start_token'], ds.meta['stop_token'], tok.stop_token) == (BOS, EOS, EOS)
    assert ds.tokenizer_record()['sha256'] == tok.record()['sha256']
    other = Reencoded(open_dataset(made['data']), tok)
    for split, texts in (('train', TRAIN), ('val', VAL)):
        ids = ds.tokens(split).tolist()
        assert ids == other.tokens(split).tolist() and ids[0] == BOS and ids[-1] == EOS
        assert ds.texts(split) == texts and [s.tolist() for s in ds.stories(split)] == tok.encode_batch(texts)


def test_refusals(made, tmp_path):
    # a data_dir of one tokenizer asked for another
    r = stage('prepare.py', f'--source={made["dir"] / "train.txt"}', f'--data_dir={made["data"]}',
              '--tokenizer=bpe', '--vocab_size=300', check=False)
    one_line_error(r, 'holds another tokenizer', made['model'])
    # a llama2.c checkpoint without its tokenizer beside it
    lone = tmp_path / 'lone'
    lone.mkdir()
    shutil.copy(made['model'], lone / 'm.bin')
    with pytest.raises(SystemExit, match=r"^error: no tokenizer for llama2.c checkpoint .*tokenizer.bin"):
        load_tokenizer(str(lone / 'm.bin'))
    # a damaged tokenizer.bin: found by the check of outputs, and a one-line error for a reader
    broken = str(tmp_path / 'broken')
    shutil.copytree(made['data'], broken)
    with open(os.path.join(broken, 'tokenizer.bin'), 'r+b') as f:
        f.truncate(1000)
    assert 'tokenizer.bin' in damaged_files(broken, read_meta(broken))
    with pytest.raises(SystemExit, match=r'^error: .*tokenizer.bin: torn entry'):
        open_dataset(broken).tokenizer_record()
    # fine-tuning on bins of another tokenizer
    other = str(tmp_path / 'bytes')
    write_byte_dataset(other, tiny_stories(20), tiny_stories(5, seed=2))
    r = stage('train.py', f'--init_from={made["model"]}', f'--data_dir={other}', f'--out_dir={tmp_path / "o"}',
              '--device=cpu', '--max_iters=1', '--block_size=16', check=False)
    one_line_error(r, f"is not in {made['model']}'s tokenizer", 'prepare.py --tokenizer=')
