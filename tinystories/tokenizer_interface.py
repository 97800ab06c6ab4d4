"""
The tokenizer interface: what a stage may ask of a model's tokenizer, whichever kind it is.

    tok = tokenizer_from_record(ckpt['tokenizer'])   # a tiktoken BPE of ours or a llama2.c tokenizer
    ids = [tok.start_token] + tok.encode(prompt)      # a story starts after the start token
    ... generate until tok.stop_token ...
    text = tok.decode(ids)                            # the start and stop tokens decode to nothing

Every kind has:
- encode(text) -> [int]: the ids of text, no start or stop token; encode_batch(texts) -> [[int]];
  encode_next(text): the ids of text that continues earlier text (llama2.c's encode puts a space
  before a text; this does not);
- decode(ids) -> str: the text; start and stop tokens left out; decode([start] + encode(t)) == t;
  decode_bytes(ids) -> bytes: the same before UTF-8 decoding (a token may end inside a character);
- start_token: the id before every story (in prompts and between stories in bins);
- stop_token: the id that ends a story when generating (for our BPE the same EOT as start_token;
  for llama2.c's models BOS: its data has BOS before each story and no EOS, and run.c stops there);
- vocab_size: ids 0..vocab_size-1;
- record() -> dict: what a checkpoint stores to rebuild it: 'kind', 'name', the tokenizer's own
  file (tiktoken's text, or tokenizer.bin in base64), its 'sha256', and the ids above.
The kinds: TiktokenTokenizer (our trained BPE and the paper's GPT-2/GPT-Neo tokenizers, records
without 'kind' included, as checkpoints hold them today) and llama2c_tokenizer.Llama2cTokenizer.
"""
from tinystories.llama2c_tokenizer import Llama2cTokenizer
from tinystories.tokenizer import encoding_from_record


class TiktokenTokenizer:
    """A tiktoken Encoding and its checkpoint record (tokenizer.py's), behind the interface."""

    kind = 'tiktoken'

    def __init__(self, encoding, record):
        self.encoding, self._record = encoding, record
        self.name = record['name']
        self.vocab_size = record['vocab_size']
        self.start_token = self.stop_token = record['eot_token']

    @classmethod
    def from_record(cls, record):
        return cls(encoding_from_record(record), record)

    def encode(self, text):
        return self.encoding.encode_ordinary(text)

    encode_next = encode  # our BPE encodes a text the same wherever it stands

    def encode_batch(self, texts):
        return self.encoding.encode_ordinary_batch(texts)  # tiktoken's threads

    def decode_bytes(self, ids):
        return self.encoding.decode_bytes([t for t in ids if t != self.start_token])

    def decode(self, ids):
        return self.decode_bytes(ids).decode('utf-8', errors='replace')

    def record(self):
        return dict(self._record, kind=self.kind, start_token=self.start_token, stop_token=self.stop_token)


KINDS = {TiktokenTokenizer.kind: TiktokenTokenizer, Llama2cTokenizer.kind: Llama2cTokenizer}


def tokenizer_from_record(record):
    """The tokenizer a checkpoint's record describes (no 'kind': a tiktoken record of before)."""
    kind = record.get('kind', TiktokenTokenizer.kind)
    if kind not in KINDS:
        raise SystemExit(f"error: tokenizer record of unknown kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind].from_record(record)
