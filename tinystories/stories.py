"""
Reading stories from local files: the one place that knows the source formats.

    for text in iter_stories('data/demo_stories'):   # a file or a directory
        ...

Formats: .txt (stories between `<|endoftext|>` lines, as the hub's TinyStories .txt files),
.jsonl (one record a line, generate_data.py's `stories-*.jsonl` shards), .json (a list of
records, the hub's TinyStories_all_data shards), .tar.gz (an archive of such .json files), or a
directory of those (dot-folders such as generate_data.py's `.state/`, dot-files and other
extensions are skipped). A record is a dict with a `story` text field.

prepare.py reads in blocks (read_blocks -> parse_block), so that worker processes can parse and
clean blocks in parallel and the records stay at hand for --format=instruct; a stage that just
wants the texts uses iter_stories. render_instruct writes a record as TinyStories-Instruct
training text (its prompt lines, then `Story:`). Bad input is a StoryError with a one-line message naming the
file (and the byte offset, or the record's index, where that helps).
"""
import json
import os
import tarfile
import zlib

from tinystories.tokenizer import EOT

SEP_BYTES = EOT.encode()
EXTENSIONS = ('.txt', '.jsonl', '.json', '.tar.gz')


class StoryError(ValueError):
    """Bad input. A plain one-argument exception, so that it pickles back from worker processes."""


def fail(msg):
    raise StoryError(msg)


def list_files(path):
    """A file, or a directory's story files (sorted, walked recursively) -> a list of paths."""
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            found += [os.path.join(root, f) for f in sorted(files)
                      if not f.startswith('.') and f.endswith(EXTENSIONS)]
        if not found:
            fail(f"{path} holds no .txt, .jsonl or .json files")
        return found
    if not os.path.exists(path):
        fail(f"source {path!r} not found")
    if not path.endswith(EXTENSIONS):
        fail(f"{path}: unknown file type (use .txt, .jsonl, .json)")
    if os.path.getsize(path) == 0:
        fail(f"{path} is empty")
    return [path]


def read_blocks(path, block_bytes=1 << 20):
    """Yield a file as blocks (kind, payload, name, byte offset) of about block_bytes each,
    never splitting a story: kind 'txt' (bytes of whole stories, separators included), 'jsonl'
    (bytes of whole lines; offset = (byte offset, first line's number, is the file's last block))
    or 'records' (a list of dicts, from .json; offset = the first's index)."""
    if path.endswith('.tar.gz'):
        yield from tar_blocks(path)
        return
    with open(path, 'rb') as f:
        if path.endswith('.json'):
            yield from json_blocks(f.read(), path)
            return
        kind = 'txt' if path.endswith('.txt') else 'jsonl'
        sep = SEP_BYTES if kind == 'txt' else b'\n'
        carry, offset, line, seen_sep = b'', 0, 1, False
        while True:
            data = f.read(block_bytes)
            buf = carry + data
            cut = len(buf) if not data else buf.rfind(sep)  # at the end of the file: all of it
            if cut > 0:
                seen_sep = seen_sep or sep in buf[:cut + len(sep)]
                end = cut if not data else cut + len(sep)
                # .jsonl blocks carry their first line's number, for messages that name it
                yield kind, buf[:end], path, (offset if kind == 'txt' else (offset, line, not data))
                offset += end
                line += buf[:end].count(b'\n')
                carry = buf[end:]
            else:  # no separator yet: a story longer than a block, read on
                carry = buf
            if not data:
                break
        if kind == 'txt' and offset and not seen_sep:  # likely not a story file at all
            fail(f"{path}: no {EOT} separator: stories must be separated by {EOT} lines")


def tar_blocks(path):
    """The .json files of a .tar.gz archive, streamed (the hub's is 2.5 GB unpacked), as blocks."""
    try:
        with tarfile.open(path, 'r|gz') as tar:
            for member in tar:
                if member.isfile() and member.name.endswith('.json'):
                    yield from json_blocks(tar.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        fail(f"{path} is not a readable .tar.gz ({type(e).__name__}: {e}): download it again")


def json_blocks(data, name, per_block=5000):
    """A JSON list of records (or one record) -> 'records' blocks of per_block records."""
    try:
        records = json.loads(decode(data, name, 0))
    except ValueError as e:
        fail(f"{name}: not valid JSON ({e})")
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        fail(f"{name}: expected a JSON list of records with a 'story' field")
    for i in range(0, len(records), per_block):
        yield 'records', records[i:i + per_block], name, i


def decode(data, name, offset):
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        fail(f"{name}: not UTF-8 at byte offset {offset + e.start} ({data[e.start:e.start + 4]!r})")


def parse_block(block):
    """One block from read_blocks -> [(story text, its record or None for .txt)]. The texts are
    as found (a .txt story stripped of the newlines around its separators), empty ones included:
    cleaning is the caller's business."""
    kind, payload, name, offset = block
    if kind == 'txt':
        items = [(s.strip(), None) for s in decode(payload, name, offset).split(EOT)]
        if items and not items[-1][0]:
            items.pop()  # nothing after the last separator
        return items
    if kind == 'jsonl':
        (pos, number, last_block), items = offset, []
        lines = payload.split(b'\n')
        for i, line in enumerate(lines):
            if line.strip():
                try:
                    rec = json.loads(decode(line, name, pos))
                except ValueError as e:
                    torn = last_block and i == len(lines) - 1  # no newline after it: a killed writer's
                    fail(f"{name} line {number} is " + ("torn (the file does not end with a newline: "
                         "was its writer killed? re-run generate_data.py to repair it)" if torn else
                         f"not valid JSON ({e}): fix or delete that line"))
                items.append(record_story(rec, name, pos))
            pos += len(line) + 1
            number += 1
        return items
    return [record_story(rec, name, offset + i) for i, rec in enumerate(payload)]


def record_problem(rec, need_id=False):
    """What is wrong with a story record (docs/contracts.md's schema), or None. Only `story` is
    required (and `id` in generate_data.py's shards); a field that is there has its type."""
    if not isinstance(rec, dict):
        return f"is a {type(rec).__name__}, not an object with a 'story' text field"
    if not isinstance(rec.get('story'), str):
        return "has no 'story' text field"
    if need_id and not isinstance(rec.get('id'), str):
        return "has no 'id' text field"
    for key in ('summary', 'sentence', 'source'):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return f"has a '{key}' that is a {type(rec[key]).__name__}, not text"
    ins = rec.get('instruction')
    if ins is None:
        return None
    if not isinstance(ins, dict):
        return f"has an 'instruction' that is a {type(ins).__name__}, not an object with words and features"
    if ins.get('prompt:') is not None and not isinstance(ins['prompt:'], str):
        return "has an 'instruction.prompt:' that is not text"
    for key in ('words', 'features'):
        value = ins.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(w, str) for w in value)):
            return f"has 'instruction.{key}' that is not a list of strings"
    return None


def record_story(rec, name, where):
    wrong = record_problem(rec)
    if wrong:
        fail(f"{name}: record at {where} {wrong}")
    return rec['story'], rec


def read_shard(path):
    """The records of one of generate_data.py's shards, each checked (its id required)."""
    from tinystories.jsonl import read_jsonl
    def check(rec):
        wrong = record_problem(rec, need_id=True)
        return wrong and f"the record {wrong}"
    return read_jsonl(path, check=check)


def iter_stories(path, block_bytes=1 << 20):
    """Every story text of a file or directory, in file order, stripped; empty ones skipped."""
    for file in list_files(path):
        for block in read_blocks(file, block_bytes):
            for story, _ in parse_block(block):
                if story.strip():
                    yield story.strip()


# ----------------------------------------------------------------------------- Instruct text
INSTRUCT_LINES = ('Summary', 'Features', 'Sentence', 'Words')


def render_instruct(story, rec, rng, stats, holdout=()):
    """TinyStories-Instruct: a random non-empty subset of the prompts, random order, then Story.
    A subset holding every line of `holdout` is drawn again (the held-out combination is for
    testing generalisation: training never shows it)."""
    ins = rec.get('instruction') or {}
    parts = {'Summary': rec.get('summary'), 'Features': ', '.join(ins.get('features') or []),
             'Sentence': rec.get('sentence'), 'Words': ', '.join(ins.get('words') or [])}
    parts = [f'{name}: {text}' for name, text in parts.items() if text]
    allowed = lambda chosen: not holdout or not all(any(p.startswith(h + ':') for p in chosen) for h in holdout)  # noqa: E731
    if not any(allowed([p]) for p in parts):
        stats['instruct: no prompt fields' if not parts else 'instruct: only held-out lines'] += 1
        return 'Story: ' + story
    chosen = rng.sample(parts, rng.randint(1, len(parts)))
    while not allowed(chosen):
        stats['instruct: held-out combination drawn again'] += 1
        chosen = rng.sample(parts, rng.randint(1, len(parts)))
    return '\n'.join([' '.join(p.split()) for p in chosen] + ['Story: ' + story])
