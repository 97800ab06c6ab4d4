"""export.py for Llama-style models: --llama2c_dir writes run.c's legacy fp32 file and tokenizer.bin,
read back here by an independent reader written from the format's description (7 int32, the
tensors grouped by kind, two RoPE tables, an untied classifier; tokenizer.bin's max length, then
score, length, bytes per piece); run.c's own loops (tests/llama_reference.py) on those files write
the greedy tokens of our model from BOS alone; a llama2.c file re-exported is the same bytes; a
GPT-2-style model is refused in one line. --hf_dir writes a LlamaForCausalLM that transformers
loads with our logits and tokenizer, for our BPE and for a llama2.c tokenizer."""
import base64
import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from hf_helpers import training_text
from llama_reference import CONFIGS, random_weights, reference_encode, reference_forward, reference_generate
from model import GPT, GPTConfig
from tinystories import llama2c as L
from tinystories import tokenizer as T
from tinystories.checkpoint import load_run
from tinystories.llama2c_tokenizer import special_pieces, write_tokenizer_bin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA = dict(block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2, mlp_hidden=48, bias=False,
             activation='swiglu', norm='rmsnorm', rotary=True)


@pytest.fixture(scope='module')
def record():
    """Our BPE, trained here, as a checkpoint's tokenizer record."""
    ranks = T.train_bpe(training_text(150), vocab_size=400)
    text = ''.join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    return {'name': 'bpe', 'pat_str': T.PAT_STR, 'tiktoken': text, 'eot_token': len(ranks),
            'vocab_size': len(ranks) + 1, 'sha256': hashlib.sha256(text.encode()).hexdigest()}


def make_run(out_dir, record, pad=0, **kw):
    """A checkpoint of ours with jittered random weights (so every mapping error shows)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=record['vocab_size'] + pad, **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'model_args': vars(model.config), 'model': model.state_dict(), 'iter_num': 3,
                'config': {}, 'tokenizer': record}, os.path.join(out_dir, 'ckpt.pt'))
    return model.eval()


def export(out_dir, *args):
    return subprocess.run([sys.executable, 'export.py', f'--out_dir={out_dir}', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def read_legacy(path):
    """An independent reader of llama2.c's legacy checkpoint, from the format's description."""
    data = open(path, 'rb').read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from('<7i', data)
    tied, vocab = vocab > 0, abs(vocab)
    floats = np.frombuffer(data, dtype='<f4', offset=28)
    kv, at, out = dim // heads * kv_heads, 0, {}

    def take(name, *shape):
        nonlocal at
        n = int(np.prod(shape))
        out[name] = torch.tensor(floats[at:at + n].reshape(shape).copy())
        at += n
    take('tok_embeddings.weight', vocab, dim)
    for kind, shape in (('attention_norm', (dim,)), ('attention.wq', (dim, dim)), ('attention.wk', (kv, dim)),
                        ('attention.wv', (kv, dim)), ('attention.wo', (dim, dim)), ('ffn_norm', (dim,)),
                        ('feed_forward.w1', (hidden, dim)), ('feed_forward.w2', (dim, hidden)),
                        ('feed_forward.w3', (hidden, dim))):
        for i in range(layers):
            take(f'layers.{i}.{kind}.weight', *shape)
    take('norm.weight', dim)
    take('freq_cis_real', seq_len, dim // heads // 2)
    take('freq_cis_imag', seq_len, dim // heads // 2)
    if not tied:
        take('output.weight', vocab, dim)
    assert at == len(floats)  # nothing left over
    config = dict(dim=dim, hidden_dim=hidden, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
                  vocab_size=vocab, seq_len=seq_len, tied=tied)
    return out, config


def read_tokenizer(path, vocab_size):
    """tokenizer.bin: int32 max token length, then per piece float32 score, int32 length, bytes."""
    data = open(path, 'rb').read()
    (max_len,), at, pieces, scores = struct.unpack_from('<i', data), 4, [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from('<fi', data, at)
        pieces.append(data[at + 8:at + 8 + n])
        scores.append(score)
        at += 8 + n
    assert at == len(data) and max_len == max(map(len, pieces))
    return pieces, scores


def test_llama_of_our_bpe_to_run_c(tmp_path, record):
    ours = make_run(str(tmp_path / 'run'), record, pad=3, tie_embeddings=False, **LLAMA)
    r = export(tmp_path / 'run', f'--llama2c_dir={tmp_path / "c"}')
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / 'c')) == ['README.md', 'model.bin', 'tokenizer.bin']
    w, c = read_legacy(tmp_path / 'c' / 'model.bin')
    assert c == dict(dim=32, hidden_dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=record['vocab_size'] + 3,
                     seq_len=32, tied=False)
    pieces, scores = read_tokenizer(tmp_path / 'c' / 'tokenizer.bin', c['vocab_size'])
    # run.c's layout: BOS at 1, byte b at b + 3; every piece is the text of the token of ours it holds
    enc = T.encoding_from_record(record)
    eot, n = record['eot_token'], record['vocab_size']
    assert pieces[3:259] == [bytes([b]) for b in range(256)]
    old = [eot if i == 1 else i if i >= n else enc._mergeable_ranks[p] for i, p in enumerate(pieces)]
    assert sorted(old) == list(range(c['vocab_size']))  # a permutation of our ids
    assert all(scores[i] == -old[i] for i in range(c['vocab_size']) if 259 <= i < n or i in (0, 2))
    assert torch.allclose(w['freq_cis_real'][3], torch.cos(3 * 10000 ** (-torch.arange(0, 8, 2) / 8)))
    # the embedding and output rows follow the ids; the layers are ours as they are
    sd = ours.state_dict()
    assert torch.equal(w['tok_embeddings.weight'], sd['wte.weight'][old])
    assert torch.equal(w['output.weight'], sd['lm_head.weight'][old])
    assert torch.equal(w['layers.1.attention.wk.weight'], sd['h.1.attn.c_attn.weight'][32:48])
    assert torch.equal(w['layers.0.feed_forward.w3.weight'], sd['h.0.mlp.c_fc.weight'][48:])

    # run.c's forward pass and greedy loop on the files = our model, from BOS alone (an empty prompt)
    tokens = torch.randint(0, c['vocab_size'], (20,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ours(torch.tensor([[old[t] for t in tokens]]))[0][0][:, old]
    assert (reference_forward(w, c, tokens.tolist()) - want).abs().max().item() < 1e-4  # logits of about 5
    run_c = reference_generate(w, c, [], c['seq_len'] - 1)
    mine = ours.generate([[eot]], c['seq_len'] - 1, temperature=0, eot_token=eot)[0]
    assert [old[t] for t in run_c] == [t for t in mine if t != eot] and len(run_c) > 5
    # a prompt: run.c puts a space in front and does not pre-split; on story text the ids are ours
    for text in ['Once upon a time, there was a little girl.', 'The dog said "hi" to the cat.']:
        ids = reference_encode(pieces, scores, text)
        assert [old[t] for t in ids] == enc.encode_ordinary(' ' + text), text
    # and the folder is a model location: the same greedy story
    back, tok, info = load_run(str(tmp_path / 'c' / 'model.bin'), 'cpu')
    assert info['kind'] == 'llama2c' and (tok.start_token, tok.stop_token) == (1, 1)
    assert tok.decode([1] + run_c) == enc.decode(mine[:-1] if mine[-1] == eot else mine).removeprefix(' ')


def test_a_llama2c_file_re_exported_is_the_same_bytes(tmp_path):
    """A llama2.c checkpoint with its tokenizer (tied multi-head, untied grouped-query) through
    --llama2c_dir: model.bin and tokenizer.bin are the originals, byte for byte; and --hf_dir
    writes a LlamaForCausalLM with its tokenizer as a BPE with byte fallback. The folder may lie
    beside the file; the file or its tokenizer as the folder is refused."""
    transformers = pytest.importorskip('transformers')
    pieces = special_pieces() + [p.encode() for p in ' abcdefghij'] + [b' a', b' b', b'ab', b' ab']
    for name, config in CONFIGS.items():
        c = dict(config, vocab_size=len(pieces))
        src = tmp_path / name
        src.mkdir()
        L.write_checkpoint(str(src / 'm.bin'), random_weights(c, seed=4), c, version=0)
        write_tokenizer_bin(str(src / 'tokenizer.bin'), pieces, [0.0] * 270 + [1.0, 2.0, 3.0, 4.0])
        r = export(src / 'm.bin', f'--llama2c_dir={src / "c"}')  # in the file's own folder
        assert r.returncode == 0, r.stderr
        for a, b in (('m.bin', 'model.bin'), ('tokenizer.bin', 'tokenizer.bin')):
            assert (src / a).read_bytes() == (src / 'c' / b).read_bytes()
        r = export(src / 'm.bin', f'--hf_dir={tmp_path / (name + "-hf")}')
        assert r.returncode == 0, r.stderr
        folder = str(tmp_path / (name + '-hf'))
        theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
        mine, tok, _ = load_run(str(src / 'm.bin'), 'cpu')
        idx = torch.randint(0, c['vocab_size'], (2, c['seq_len']), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert (theirs(idx).logits - mine(idx)[0]).abs().max().item() < 1e-5
        assert (hf_tok.bos_token_id, hf_tok.eos_token_id) == (1, 1)  # run.c stops at BOS
        for text in ['ab a', 'a  b ab', 'jihgf z', '']:
            assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text)
        chat = hf_tok.apply_chat_template([{'role': 'user', 'content': 'ab a'}], tokenize=False)
        assert chat == '<s>ab a'
    before = (src / 'tokenizer.bin').read_bytes()
    r = export(src / 'm.bin', f'--llama2c_dir={src / "tokenizer.bin"}', '--overwrite')
    assert r.returncode != 0 and r.stderr.strip().startswith('error:') and 'the model being exported' in r.stderr
    assert (src / 'tokenizer.bin').read_bytes() == before


def test_llama_of_our_bpe_to_hugging_face(tmp_path, record):
    transformers = pytest.importorskip('transformers')
    ours = make_run(str(tmp_path / 'run'), record, **LLAMA)  # tied
    r = export(tmp_path / 'run', f'--hf_dir={tmp_path / "hf"}')
    assert r.returncode == 0, r.stderr
    assert 'LlamaForCausalLM' in r.stdout
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / 'hf').eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / 'hf')
    assert type(theirs).__name__ == 'LlamaForCausalLM' and theirs.config.tie_word_embeddings
    idx = torch.randint(0, record['vocab_size'], (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (theirs(idx).logits - ours(idx)[0]).abs().max().item() < 1e-5
    eot = record['eot_token']
    assert hf_tok.bos_token_id == hf_tok.eos_token_id == theirs.config.eos_token_id == eot
    enc = T.encoding_from_record(record)
    for text in training_text(20)[-20:]:
        assert hf_tok.encode(text, add_special_tokens=False) == enc.encode_ordinary(text)
    assert '`<|endoftext|>` (id' in open(tmp_path / 'hf' / 'README.md').read()
    back, _, _ = load_run(str(tmp_path / 'hf'), 'cpu')
    with torch.no_grad():
        assert (back(idx)[0] - ours(idx)[0]).abs().max().item() < 1e-5


def test_what_run_c_cannot_run(tmp_path, record):
    """A GPT-2-style model, a Llama with another rope_theta than run.c's, or with value embeddings:
    one line, no folder."""
    wrong = ["activation='gelu'", 'rope_theta=500000.0', 'value_embeddings=True']
    for i, kw in enumerate([dict(n_layer=1, n_head=2, n_embd=16, block_size=16),
                            dict(LLAMA, rope_theta=5e5), dict(LLAMA, value_embeddings=True)]):
        make_run(str(tmp_path / f'run{i}'), record, **kw)
        r = export(tmp_path / f'run{i}', f'--llama2c_dir={tmp_path / "c"}')
        assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
        assert r.stderr.startswith('error: a llama2.c file holds only a Llama-style model')
        assert wrong[i] in r.stderr
    assert not os.path.exists(tmp_path / 'c')
    r = export(tmp_path / 'run0', f'--llama2c_dir={tmp_path / "c"}', f'--hf_dir={tmp_path / "h"}')
    assert r.returncode == 1 and r.stderr.startswith('error: name the one folder to write')
