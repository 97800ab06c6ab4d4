"""llama2.c's files and tokenizer, on tiny files made here: checkpoints (legacy and version 1) read
from bytes laid out by hand as run.c and export.py describe them, written back and read again; the
fast score-based BPE against run.c's own loop (tests/llama_reference.py) on random vocabularies
and text (Unicode, runs of spaces, byte fallback); tokenizer.bin and the checkpoint records; and
the Hugging Face Llama layout against transformers' LlamaForCausalLM (logits within 1e-5)."""
import base64
import struct

import numpy as np
import pytest
import torch

from llama_reference import (CONFIGS, random_texts, random_vocab, random_weights, reference_decode, reference_encode,
                             reference_forward, reference_generate)
from tinystories import llama2c as L
from tinystories.llama2c_tokenizer import (Llama2cTokenizer, from_tokenizer_json, parse_tokenizer_bin,
                                           tokenizer_bin, tokenizer_json, write_tokenizer_bin)
from tinystories.tokenizer import byte_tokenizer_record
from tinystories.tokenizer_interface import TiktokenTokenizer, tokenizer_from_record

def f32(*tensors):
    return b''.join(t.numpy().astype('<f4').tobytes() for t in tensors)


def legacy_file(w, c, rope_junk):
    """A legacy file laid out as run.c's memory_map_weights reads it, written here by hand."""
    n = range(c['n_layers'])
    vocab = c['vocab_size'] if c['tied'] else -c['vocab_size']
    out = struct.pack('<7i', c['dim'], c['hidden_dim'], c['n_layers'], c['n_heads'], c['n_kv_heads'],
                      vocab, c['seq_len']) + f32(w['tok_embeddings.weight'])
    for kind in ('attention_norm', 'attention.wq', 'attention.wk', 'attention.wv', 'attention.wo',
                 'ffn_norm', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3'):
        out += f32(*(w[f'layers.{i}.{kind}.weight'] for i in n))
    out += f32(w['norm.weight']) + rope_junk  # the freq_cis tables: skipped by the reader
    return out + (b'' if c['tied'] else f32(w['output.weight']))


@pytest.mark.parametrize('name', CONFIGS)
def test_checkpoint_formats_read_and_round_trip(tmp_path, name):
    c = CONFIGS[name]
    w = random_weights(c)
    head = c['dim'] // c['n_heads']
    junk = np.random.default_rng(0).standard_normal(2 * c['seq_len'] * head // 2).astype('<f4').tobytes()
    (tmp_path / 'legacy.bin').write_bytes(legacy_file(w, c, junk))
    got, cfg = L.read_checkpoint(str(tmp_path / 'legacy.bin'))
    assert cfg == dict(c, version=0)
    assert got.keys() == w.keys() and all(torch.equal(got[k], w[k]) for k in w)

    for version in (0, 1):
        path = str(tmp_path / f'v{version}.bin')
        L.write_checkpoint(path, w, c, version=version)
        again, cfg = L.read_checkpoint(path)
        assert cfg == dict(c, version=version)
        assert all(torch.equal(again[k], w[k]) for k in w) and again.keys() == w.keys()
    # the legacy file written here differs from the hand-made one only in the RoPE tables' values
    written = (tmp_path / 'v0.bin').read_bytes()
    cos, sin = L.rope_tables(c)
    assert written == legacy_file(w, c, f32(cos, sin))
    # version 1, read by hand as export.py's version1_export lays it out
    data = (tmp_path / 'v1.bin').read_bytes()
    magic, version, *header = struct.unpack_from('<Ii7i', data)
    assert (magic, version, data[36], data[37:256]) == (0x616b3432, 1, int(c['tied']), bytes(219))
    assert header == [c[k] for k in L.CONFIG_KEYS]
    floats = np.frombuffer(data[256:], dtype='<f4')
    d, n = c['dim'], c['n_layers']
    norms = floats[:(2 * n + 1) * d].reshape(2 * n + 1, d)
    assert np.array_equal(norms[n], w['layers.0.ffn_norm.weight'].numpy())  # attention norms, ffn norms, final
    assert np.array_equal(norms[2 * n], w['norm.weight'].numpy())
    emb = floats[(2 * n + 1) * d:][:c['vocab_size'] * d]
    assert np.array_equal(emb, w['tok_embeddings.weight'].numpy().ravel())
    last = w['output.weight'] if not c['tied'] else w[f'layers.{n - 1}.feed_forward.w3.weight']
    assert np.array_equal(floats[-last.numel():], last.numpy().ravel())  # the classifier only if untied


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    c = CONFIGS['gqa-untied']
    good = tmp_path / 'good.bin'
    L.write_checkpoint(str(good), random_weights(c), c, version=1)
    data = good.read_bytes()
    cases = {
        'truncated': (data[:-4], 'bytes, but its header'),
        'one byte more': (data + b'\0', 'bytes, but its header'),
        'version 2': (data[:4] + struct.pack('<i', 2) + data[8:], 'version 2 is not read here'),
        'tiny': (b'\1\2\3', 'too short'),
        'bad heads': (struct.pack('<7i', 10, 8, 1, 3, 3, 5, 4) + bytes(100), 'whole heads'),
        'zero layers': (struct.pack('<7i', 8, 8, 0, 2, 2, 5, 4), 'must be positive'),
    }
    for name, (blob, words) in cases.items():
        path = tmp_path / f'{name}.bin'
        path.write_bytes(blob)
        with pytest.raises(SystemExit) as e:
            L.read_checkpoint(str(path))
        msg = str(e.value)
        assert msg.startswith('error: ') and '\n' not in msg and words in msg, (name, msg)
    with pytest.raises(SystemExit, match='^error: cannot read llama2.c checkpoint'):
        L.read_checkpoint(str(tmp_path / 'missing.bin'))
    # a weight of the wrong shape stops the writer, and the file it would have replaced is intact
    with pytest.raises(ValueError, match='norm.weight has shape'):
        L.write_checkpoint(str(good), dict(random_weights(c), **{'norm.weight': torch.ones(3)}), c)
    assert good.read_bytes() == data and not any(p.name.startswith('.') for p in tmp_path.iterdir())


# -----------------------------------------------------------------------------
# tokenizer

@pytest.mark.parametrize('spaces_inside', [False, True])
def test_fast_encoder_matches_run_c(spaces_inside):
    pieces, scores = random_vocab(1 + spaces_inside, spaces_inside)
    tok = Llama2cTokenizer(tokenizer_bin(pieces, scores), 'test')
    assert tok.cuttable == (not spaces_inside)
    for text in random_texts(spaces_inside, 300):
        ids = tok.encode(text)
        assert ids == reference_encode(pieces, scores, text), repr(text)
        assert tok.decode([tok.start_token] + ids) == text
        # the decoder as run.c prints token by token (its decode(prev, token)), after BOS
        seq = [1] + ids
        assert tok.decode_bytes(seq) == b''.join(reference_decode(pieces, a, b) for a, b in zip(seq, seq[1:]))
    # cached segments give the same ids the second time, and a long text encodes as its parts do
    long_text = ' '.join(random_texts(7, 50))
    assert tok.encode(long_text) == reference_encode(pieces, scores, long_text) == tok.encode(long_text)


def test_encoder_details():
    pieces, scores = random_vocab(3, False)
    pieces += [b' st', b' s', b'ab', b'<0x41>b']
    scores += [-1.0, -1.0, -1e10, 5.0]  # ' st' and ' s' tie; 'ab' scores too low for run.c to merge
    tok = Llama2cTokenizer(tokenizer_bin(pieces, scores), 'test')
    for text in ('st', 'ab', 'Ab', 'sts', '😀'):
        assert tok.encode(text) == reference_encode(pieces, scores, text)
    assert 'ab' not in [pieces[i].decode() for i in tok.encode('ab')]
    assert tok.encode('😀') == [tok.id_of[b' ']] + [b + 3 for b in '😀'.encode()]
    assert tok.encode('') == [] and tok.decode([]) == ''
    # after BOS a piece loses its leading space; elsewhere it keeps it; BOS and EOS print nothing
    sp = tok.id_of[b' ']
    assert tok.decode([1, sp, sp]) == ' ' and tok.decode([sp, 1, 2]) == ' '
    assert tok.decode([1, 3 + 0xC3, 3 + 0xA9]) == 'é'


def test_tokenizer_bin_round_trip_and_errors(tmp_path):
    pieces, scores = random_vocab(4, False)
    path = tmp_path / 'tok.bin'
    write_tokenizer_bin(str(path), pieces, scores)
    data = path.read_bytes()
    # the layout by hand: max_token_length, then (score, length, bytes) per token
    by_hand = struct.pack('<i', max(map(len, pieces))) + b''.join(
        struct.pack('<fi', s, len(p)) + p for p, s in zip(pieces, scores))
    assert data == by_hand
    tok = Llama2cTokenizer.from_file(str(path))
    assert (tok.pieces, tok.scores, tok.vocab_size, tok.name) == (pieces, scores, len(pieces), 'tok')
    for blob, words in ((data[:-1], 'claims'), (data[:-len(pieces[-1]) - 5], 'torn entry'),
                        (b'\0\0', 'too short'), (tokenizer_bin(pieces[:100], scores[:100]), 'byte pieces')):
        with pytest.raises(SystemExit) as e:
            parse_tokenizer_bin(blob, 'tok.bin')
        assert str(e.value).startswith('error: tok.bin: ') and words in str(e.value)
    with pytest.raises(SystemExit, match='^error: cannot read llama2.c tokenizer'):
        Llama2cTokenizer.from_file(str(tmp_path / 'missing.bin'))


def test_both_kinds_meet_the_interface():
    pieces, scores = random_vocab(5, False)
    kinds = [Llama2cTokenizer(tokenizer_bin(pieces, scores), 'tok', stop_token=2),
             TiktokenTokenizer.from_record(byte_tokenizer_record())]
    for tok in kinds:
        record = tok.record()
        again = tokenizer_from_record(record)
        assert (again.kind, again.vocab_size, again.start_token, again.stop_token) == \
            (tok.kind, tok.vocab_size, tok.start_token, tok.stop_token)
        for text in random_texts(5, 20):
            ids = again.encode(text)
            assert ids == tok.encode(text) and all(0 <= i < tok.vocab_size for i in ids)
            assert again.decode([again.start_token] + ids + [again.stop_token]) == text
        assert len(record['sha256']) == 64
    assert kinds[0].stop_token == 2 and kinds[1].start_token == kinds[1].stop_token == 256
    # a checkpoint of before (no 'kind') is a tiktoken record; a corrupt one is refused
    assert tokenizer_from_record(byte_tokenizer_record()).kind == 'tiktoken'
    bad = dict(kinds[0].record(), tokenizer_bin=base64.b64encode(b'x' * 8).decode())
    with pytest.raises(SystemExit, match='^error: llama2.c tokenizer record is corrupt'):
        tokenizer_from_record(bad)
    with pytest.raises(SystemExit, match='^error: tokenizer record of unknown kind'):
        tokenizer_from_record({'kind': 'sentencepiece-model'})


def test_tokenizer_json_encodes_as_hugging_face_does():
    """tokenizer.json written from a tokenizer.bin: Hugging Face's tokenizers library encodes and
    decodes as we do; read back, it encodes as the original."""
    tokenizers = pytest.importorskip('tokenizers')
    import json
    pieces, scores = random_vocab(6, False, distinct_scores=True)
    tok = Llama2cTokenizer(tokenizer_bin(pieces, scores), 'tok')
    tj = tokenizer_json(tok)
    hf = tokenizers.Tokenizer.from_str(json.dumps(tj))
    back = from_tokenizer_json(json.loads(json.dumps(tj)))
    assert back.vocab_size == tok.vocab_size and back.pieces[3:] == tok.pieces[3:]
    for text in random_texts(6, 200):
        ids = tok.encode(text)
        assert hf.encode(text, add_special_tokens=False).ids == ids == back.encode(text), repr(text)
        assert hf.decode(ids) == tok.decode([1] + ids)
    assert hf.encode('a').ids[0] == tok.start_token  # Hugging Face adds BOS itself
    for broken, words in ((dict(tj, model=dict(tj['model'], byte_fallback=False)), 'byte fallback'),
                          (dict(tj, normalizer=None), 'dummy'),
                          (dict(tj, model=dict(tj['model'], merges=[['x', 'y']])), 'makes no token')):
        with pytest.raises(SystemExit) as e:
            from_tokenizer_json(broken)
        assert str(e.value).startswith('error: tokenizer.json: ') and words in str(e.value)


# -----------------------------------------------------------------------------
# Hugging Face's Llama

def test_hf_row_permutations_are_inverse():
    w = torch.randn(24, 5)
    for heads in (1, 2, 3):
        assert torch.equal(L.llama2c_rows(L.hf_rows(w, heads), heads), w)
    # in one head of size 4: llama2.c's pairs (0,1), (2,3) become Hugging Face's (0,2), (1,3)
    assert L.hf_rows(torch.arange(4.0)[:, None], 1).flatten().tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize('name', CONFIGS)
def test_reference_forward_equals_transformers_llama(name):
    transformers = pytest.importorskip('transformers')
    c = CONFIGS[name]
    w = random_weights(c, seed=2)
    hf_cfg = {k: v for k, v in L.hf_config(c).items() if k not in ('architectures', 'model_type')}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_cfg, attn_implementation='eager'))
    state = L.hf_state_dict(w, c)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {'lm_head.weight'}  # tied: lm_head is the embedding
    model.eval()
    tokens = torch.randint(0, c['vocab_size'], (c['seq_len'],), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = model(tokens[None]).logits[0]
    ours = reference_forward(w, c, tokens.tolist())
    assert (ours - theirs).abs().max().item() < 1e-5
    # greedy continuation: the same tokens
    prompt = tokens[:3].tolist()
    with torch.no_grad():
        hf_out = model.generate(torch.tensor([[1] + prompt]), max_new_tokens=5, do_sample=False,
                                eos_token_id=None, pad_token_id=0)[0, 1:].tolist()
    ours_out = reference_generate(w, c, prompt, len(hf_out))  # stops early only where BOS comes
    assert ours_out == hf_out[:len(ours_out)]
    assert len(ours_out) == len(hf_out) or hf_out[len(ours_out)] == 1
    # and back: Hugging Face's layout returns to ours exactly
    back = L.weights_from_hf(state, L.config_from_hf(L.hf_config(c)))
    assert back.keys() == w.keys() and all(torch.equal(back[k], w[k]) for k in w)
