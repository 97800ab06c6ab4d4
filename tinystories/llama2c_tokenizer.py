"""
llama2.c's tokenizer.bin: the file, and its score-based BPE (sentencepiece's, as run.c runs it).

    tok = Llama2cTokenizer.from_file('tok512.bin')
    ids = tok.encode("Once upon a time")           # the dummy space in front, merges by score
    tok.decode([tok.start_token] + ids)            # == "Once upon a time"

The file: an int32 max_token_length, then per token a float32 score, an int32 length and that
many bytes (its piece; sentencepiece's '▁' already written as a space). The vocabulary size is not
in the file (run.c takes it from the checkpoint): here it is every entry up to the end of the file.
Ids 0, 1, 2 are <unk>, BOS and EOS; ids 3..258 are the byte-fallback pieces <0x00>..<0xFF>.

Encoding, exactly as run.c's encode() (tests/llama_reference.py holds run.c's loop verbatim):
1. A non-empty text gets a dummy space in front (sentencepiece's add_dummy_prefix).
2. The UTF-8 bytes are cut into code points (a byte and the continuation bytes after it, at most 4
   bytes); a code point that is a piece is that piece's id, else each of its bytes is id byte + 3.
3. Then, repeatedly, of all adjacent pairs whose concatenated pieces are a piece, the one with the
   highest score (ties: the leftmost) merges into it, until no pair does. Only scores above -1e10
   count (run.c's starting best).
run.c rescans the whole sequence for every merge (quadratic); here the pairs wait in a heap keyed by
(-score, position), which picks the same pair every time, and a text is cut into independent
segments before each space that follows a non-space, whenever no piece holds such a pair
(no merge can then cross the cut), with each distinct segment's ids cached.

Decoding, as run.c's decode(): a piece right after BOS loses one leading space (the dummy one);
<0xXX> pieces are that raw byte; BOS and EOS themselves are markers, not text, and decode to
nothing. So decode([start_token] + encode(text)) == text.
"""
import base64
import hashlib
import heapq
import os
import re
import struct

from tinystories.atomic_write import atomic_write

UNK, BOS, EOS = 0, 1, 2
BYTE_OFFSET = 3  # byte b is id b + 3 when a code point is not a piece
MIN_SCORE = -1e10  # run.c's starting best score: a merge must score above it
EOT_PIECE = b'<|endoftext|>'  # our BPE's start/stop token, written as BOS's piece by runc_layout
_BYTE_PIECE = re.compile(rb'<0x([0-9A-Fa-f]{2})>')
_CUT = re.compile(rb'(?<=[^ ])(?= )')  # before each space that follows a non-space


def fail(msg):
    raise SystemExit(f"error: {msg}")


def parse_tokenizer_bin(data, where='tokenizer.bin'):
    """(pieces as bytes, scores as floats) from a tokenizer.bin's bytes."""
    if len(data) < 4:
        fail(f"{where}: too short for a llama2.c tokenizer ({len(data)} bytes)")
    pieces, scores, at = [], [], 4
    while at < len(data):
        if at + 8 > len(data):
            fail(f"{where}: torn entry at byte {at} (token {len(pieces)})")
        score, n = struct.unpack_from('<fi', data, at)
        at += 8
        if n < 0 or at + n > len(data):
            fail(f"{where}: token {len(pieces)} claims {n} bytes at byte {at}; the file has {len(data)}")
        pieces.append(bytes(data[at:at + n]))
        scores.append(score)
        at += n
    if len(pieces) < BYTE_OFFSET + 256:
        fail(f"{where}: {len(pieces)} tokens; a llama2.c tokenizer has <unk>, BOS, EOS and the 256 "
             f"byte pieces first")
    return pieces, scores


def tokenizer_bin(pieces, scores):
    """The bytes of a tokenizer.bin holding these pieces and scores."""
    out = [struct.pack('<i', max(map(len, pieces), default=0))]
    for piece, score in zip(pieces, scores, strict=True):
        out.append(struct.pack('<fi', score, len(piece)) + piece)
    return b''.join(out)


def write_tokenizer_bin(path, pieces, scores):
    atomic_write(path, tokenizer_bin(pieces, scores))


def special_pieces():
    """The first 259 pieces of a llama2.c tokenizer, as its export writes them: <unk>, BOS, EOS
    and the byte-fallback pieces."""
    return [b'<unk>', b'\n<s>\n', b'\n</s>\n'] + [b'<0x%02X>' % b for b in range(256)]


def piece_to_bytes(piece):
    """The bytes a piece stands for: a <0xXX> piece is that raw byte, any other piece itself."""
    m = _BYTE_PIECE.fullmatch(piece)
    return bytes([int(m.group(1), 16)]) if m else piece


def code_points(data):
    """run.c's cut of UTF-8 bytes: each piece is a byte and up to 3 continuation bytes after it."""
    out, i, n = [], 0, len(data)
    while i < n:
        j = i + 1
        while j < n and j - i < 4 and data[j] & 0xC0 == 0x80:
            j += 1
        out.append(data[i:j])
        i = j
    return out


def runc_layout(ranks, eot, vocab_size):
    """Our byte-level BPE (tiktoken's ranks {token bytes: id}, EOT its one special token) laid out as
    run.c needs a tokenizer.bin: (pieces, scores, order), order[new id] = our id. EOT becomes BOS (1:
    run.c starts a story with it and stops there); byte b becomes id b + 3 (run.c's byte fallback),
    its piece the raw byte, so that run.c can merge it (not <0xXX>, which nothing merges with); the merged tokens, lowest rank first, fill
    ids 0, 2, 259, 260, ... (a permutation: no id is left without a trained row), each scored minus
    its rank, so run.c merges in tiktoken's order. Ids past the tokenizer (a padded embedding) get
    pieces <pad_N> that nothing merges into."""
    by_id = {i: t for t, i in ranks.items()}
    merged = sorted(i for i, t in by_id.items() if len(t) > 1)
    if sorted(by_id) != list(range(len(ranks))) or eot != len(ranks) or len(merged) < 2:
        fail("the tokenizer is not laid out as ours (ids 0..n-1, then EOT as n, 2 merges at least): "
             "it cannot be remapped to run.c's layout")
    slots = [UNK, EOS] + list(range(BYTE_OFFSET + 256, BYTE_OFFSET + 256 + len(merged) - 2))
    order = [None] * (len(ranks) + 1)
    order[BOS] = eot
    for b in range(256):
        order[b + BYTE_OFFSET] = ranks[bytes([b])]
    for slot, i in zip(slots, merged, strict=True):
        order[slot] = i
    pieces = [by_id.get(i, EOT_PIECE) for i in order]
    scores = [-float(i) if len(by_id.get(i, b'')) > 1 else 2 * MIN_SCORE for i in order]  # no merge makes a byte
    pad = range(len(order), vocab_size)
    return (pieces + [b'<pad_%d>' % i for i in pad], scores + [2 * MIN_SCORE] * len(pad),
            order + list(pad))


class Llama2cTokenizer:
    """llama2.c's tokenizer behind the tokenizer interface (tinystories/tokenizer_interface.py).

    start_token is BOS (1): llama2.c's data puts it before every story. stop_token is BOS too by
    default, because run.c stops when the model writes BOS (its data has no EOS); pass
    stop_token=EOS for a model trained with EOS after each story."""

    kind = 'llama2c'

    def __init__(self, data, name='tokenizer', stop_token=BOS, where=None):
        self.data, self.name = bytes(data), name
        self.pieces, self.scores = parse_tokenizer_bin(self.data, where or name)
        self.vocab_size = len(self.pieces)
        self.start_token, self.stop_token = BOS, stop_token
        # markers, not text: BOS, the stop token, and EOS when it is sentencepiece's (a file
        # export.py remapped from our BPE holds a token of text at id 2)
        self.markers = {BOS, stop_token} | ({EOS} if self.pieces[EOS] == special_pieces()[EOS] else set())
        self.id_of = {}
        for i, piece in enumerate(self.pieces):
            self.id_of.setdefault(piece, i)  # a repeated piece: the first id (no real file has one)
        # the bytes each id decodes to (<0xXX> pieces are raw bytes)
        self.piece_bytes = [piece_to_bytes(p) for p in self.pieces]
        self.cuttable = not any(_CUT.search(p) for p in self.pieces)
        self._pairs, self._segments = {}, {}

    @classmethod
    def from_file(cls, path, stop_token=BOS):
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as e:
            fail(f"cannot read llama2.c tokenizer {path}: {e.strerror or e}")
        name = os.path.splitext(os.path.basename(path))[0]
        return cls(data, name, stop_token, where=path)

    # -- encoding

    def _pair(self, a, b):
        """(score, id) of the piece that pieces a and b concatenate to, or None."""
        key = (a, b)
        if key not in self._pairs:
            i = self.id_of.get(self.pieces[a] + self.pieces[b])
            self._pairs[key] = None if i is None or not self.scores[i] > MIN_SCORE else (self.scores[i], i)
        return self._pairs[key]

    def _initial_ids(self, data):
        ids = []
        for cp in code_points(data):
            i = self.id_of.get(cp)
            ids.extend([i] if i is not None else [b + BYTE_OFFSET for b in cp])
        return ids

    def _merge(self, ids):
        """Merge as run.c does: best score first, the leftmost of equals. Nodes of a linked list
        keep their first position, so (-score, position) orders the heap exactly as run.c's scan."""
        n = len(ids)
        nxt, prv, ver = list(range(1, n + 1)), list(range(-1, n - 1)), [0] * n

        def entry(i):  # the heap entry of the pair (i, next of i), or None
            j = nxt[i] if i >= 0 else n
            pair = self._pair(ids[i], ids[j]) if j < n else None
            return None if pair is None else (-pair[0], i, j, ver[i], ver[j], pair[1])
        heap = [e for e in map(entry, range(n - 1)) if e is not None]
        heapq.heapify(heap)
        while heap:
            _, i, j, vi, vj, new = heapq.heappop(heap)
            if nxt[i] != j or ver[i] != vi or ver[j] != vj:
                continue  # stale: one of the two has merged since
            ids[i], ver[i], ver[j] = new, vi + 1, -1
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            for e in (entry(prv[i]), entry(i)):
                if e is not None:
                    heapq.heappush(heap, e)
        out, i = [], 0
        while i < n:
            out.append(ids[i])
            i = nxt[i]
        return out

    def _encode_segment(self, segment):
        ids = self._segments.get(segment)
        if ids is None:
            if len(self._segments) > 500_000:  # bounded memory on unusual text
                self._segments.clear()
            ids = self._segments[segment] = tuple(self._merge(self._initial_ids(segment)))
        return ids

    def encode(self, text):
        """The ids of text as run.c encodes a prompt, without BOS: the dummy space, then BPE."""
        return self.encode_next(' ' + text) if text else []

    def encode_next(self, text):
        """The ids of text that continues text already encoded: no dummy space (a probe's
        candidate after its prompt)."""
        data = text.encode('utf-8')
        if not data:
            return []
        if not self.cuttable:
            return self._merge(self._initial_ids(data))
        out = []
        for segment in _CUT.split(data):
            out.extend(self._encode_segment(segment))
        return out

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    # -- decoding

    def decode_bytes(self, ids):
        out, prev = [], None
        for t in ids:
            t = int(t)
            if t in self.markers:
                prev = t
                continue
            piece = self.pieces[t]
            # run.c strips the space after BOS first, then reads a <0xXX> piece as its byte
            out.append(piece_to_bytes(piece[1:]) if prev == BOS and piece[:1] == b' ' else self.piece_bytes[t])
            prev = t
        return b''.join(out)

    def decode(self, ids):
        return self.decode_bytes(ids).decode('utf-8', errors='replace')

    # -- checkpoints

    def record(self):
        """What a checkpoint stores: the file itself (base64) and its sha256."""
        return {'kind': self.kind, 'name': self.name, 'tokenizer_bin': base64.b64encode(self.data).decode('ascii'),
                'sha256': hashlib.sha256(self.data).hexdigest(), 'vocab_size': self.vocab_size,
                'start_token': self.start_token, 'stop_token': self.stop_token}

    @classmethod
    def from_record(cls, record):
        try:
            data = base64.b64decode(record['tokenizer_bin'], validate=True)
        except (KeyError, ValueError) as e:
            fail(f"llama2.c tokenizer record is unreadable ({e})")
        if hashlib.sha256(data).hexdigest() != record.get('sha256'):
            fail("llama2.c tokenizer record is corrupt (sha256 mismatch)")
        return cls(data, record.get('name', 'tokenizer'), record.get('stop_token', BOS))


# -----------------------------------------------------------------------------
# Hugging Face's tokenizer.json (a BPE with byte fallback, as transformers converts Llama's)

SPACE = '\u2581'  # sentencepiece's '▁', which tokenizer.json keeps and tokenizer.bin writes as ' '
HF_SPECIALS = ['<unk>', '<s>', '</s>']


def tokenizer_json(tok):
    """tokenizer.json (a dict) that encodes as tok does: the vocabulary with '▁' for spaces, and as
    merges every split of each piece into two pieces, best score first. Hugging Face's BPE merges by
    rank where run.c merges by score; they agree whenever scores are distinct, except where two
    different pairs making the same piece overlap (x+y == y+z, as ab+a and a+ba): then run.c
    takes the leftmost and Hugging Face the lower rank. Pieces must be UTF-8 text."""
    def text(i):
        return HF_SPECIALS[i] if i < len(HF_SPECIALS) else tok.pieces[i].decode('utf-8').replace(' ', SPACE)
    vocab = {text(i): i for i in range(tok.vocab_size)}
    merges = []
    for i in sorted(range(BYTE_OFFSET + 256, tok.vocab_size), key=lambda i: (-tok.scores[i], i)):
        piece = tok.pieces[i]
        if not tok.scores[i] > MIN_SCORE or tok.id_of[piece] != i:
            continue  # a piece run.c never merges into
        for cut in range(1, len(piece)):
            left, right = tok.id_of.get(piece[:cut]), tok.id_of.get(piece[cut:])
            if left is not None and right is not None:
                merges.append([text(left), text(right)])
    special = [{'id': i, 'content': c, 'single_word': False, 'lstrip': False, 'rstrip': False,
                'normalized': False, 'special': True} for i, c in enumerate(HF_SPECIALS)]
    return {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': special,
        'normalizer': {'type': 'Sequence', 'normalizers': [
            {'type': 'Prepend', 'prepend': SPACE},  # the dummy space
            {'type': 'Replace', 'pattern': {'String': ' '}, 'content': SPACE}]},
        'pre_tokenizer': None,
        'post_processor': {'type': 'TemplateProcessing',
                           'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                                      {'Sequence': {'id': 'A', 'type_id': 0}}],
                           'pair': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                                    {'Sequence': {'id': 'A', 'type_id': 0}},
                                    {'SpecialToken': {'id': '<s>', 'type_id': 1}},
                                    {'Sequence': {'id': 'B', 'type_id': 1}}],
                           'special_tokens': {'<s>': {'id': '<s>', 'ids': [BOS], 'tokens': ['<s>']}}},
        'decoder': {'type': 'Sequence', 'decoders': [
            {'type': 'Replace', 'pattern': {'String': SPACE}, 'content': ' '},
            {'type': 'ByteFallback'}, {'type': 'Fuse'},
            {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': '<unk>', 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': True, 'byte_fallback': True,
                  'ignore_merges': False, 'vocab': vocab, 'merges': merges},
    }


def from_tokenizer_json(tj, name='tokenizer', where='tokenizer.json', stop_token=BOS):
    """A Llama2cTokenizer from a Llama tokenizer.json (a dict): BPE with byte fallback, <unk> <s>
    </s> and the 256 byte pieces first, a dummy '▁' in front. A piece's score is minus the rank of
    its best merge; pieces no merge makes get scores run.c never merges into."""
    model = tj.get('model') or {}
    if model.get('type') != 'BPE' or not model.get('byte_fallback'):
        fail(f"{where}: not a BPE with byte fallback (sentencepiece-style, as Llama's)")
    normalizers = (tj.get('normalizer') or {}).get('normalizers') or [tj.get('normalizer') or {}]
    prepends = any(n.get('type') == 'Prepend' and n.get('prepend') == SPACE for n in normalizers) or \
        (tj.get('pre_tokenizer') or {}).get('prepend_scheme') in ('first', 'always')
    if not prepends:
        fail(f"{where}: no dummy '{SPACE}' in front of the text (the encoder here always adds it)")
    vocab = dict(model['vocab'])
    for t in tj.get('added_tokens') or []:
        vocab.setdefault(t['content'], t['id'])
    if sorted(vocab.values()) != list(range(len(vocab))):
        fail(f"{where}: token ids are not 0..{len(vocab) - 1}")
    texts = sorted(vocab, key=vocab.get)
    if texts[:BYTE_OFFSET] != HF_SPECIALS or texts[BYTE_OFFSET:BYTE_OFFSET + 256] != \
            [f'<0x{b:02X}>' for b in range(256)]:
        fail(f"{where}: ids 0-258 must be <unk>, <s>, </s> and <0x00>..<0xFF>, as llama2.c's")
    pieces = special_pieces() + [t.replace(SPACE, ' ').encode('utf-8') for t in texts[BYTE_OFFSET + 256:]]
    scores = [0.0] * (BYTE_OFFSET + 256) + [-2e10] * (len(texts) - BYTE_OFFSET - 256)
    for rank, merge in enumerate(model.get('merges') or []):
        left, right = merge.split(' ') if isinstance(merge, str) else merge
        i = vocab.get(left + right)
        if i is None:
            fail(f"{where}: merge {rank} ({left!r}, {right!r}) makes no token of the vocabulary")
        if i >= BYTE_OFFSET + 256:
            scores[i] = max(scores[i], -float(rank))
    return Llama2cTokenizer(tokenizer_bin(pieces, scores), name, stop_token, where=where)
