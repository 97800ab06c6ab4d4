"""
JSON Lines files that survive kill -9: one reader and one appender for every stage.

Appends write whole lines, so a kill can leave at most the last line half-written (no newline
at the end). Readers skip such a torn tail; appenders cut it off before adding lines, so the file
is always a run of complete records. A broken line anywhere else was not made by a kill: it is a
one-line error naming the file and line, and nothing is thrown away silently.

This module knows no schema: a reader passes `check`, its file kind's record check (kept by the
kind's owner: stories.check_record, records.check_log_record ...), and a record that fails it
is the same one-line error, naming the line and what is wrong with it.
"""
import json
import os


def _complete_lines(path):
    """The file's bytes up to and including its last newline (what survived any torn append)."""
    with open(path, 'rb') as f:
        data = f.read()
    return data[:data.rfind(b'\n') + 1]


def read_jsonl(path, missing_ok=True, check=None):
    """The records of a JSONL file, its torn last line (if any) left out; [] if it is absent.
    check(record) -> None, or what is wrong with it (a one-line error naming the line)."""
    if not os.path.exists(path):
        if missing_ok:
            return []
        raise SystemExit(f"error: {path} not found")
    try:
        data = _complete_lines(path)
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror}")
    records = []
    for n, line in enumerate(data.split(b'\n'), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise SystemExit(f"error: {path} line {n} is not valid JSON (not a torn last line: the "
                             f"file was edited or damaged); fix or delete that line, then re-run")
        wrong = check(record) if check else None
        if wrong:
            raise SystemExit(f"error: {path} line {n}: {wrong} (the file was edited or damaged); "
                             f"fix or delete that line, then re-run")
        records.append(record)
    return records


def repair_jsonl(path):
    """Cut a torn last line off, so that appends start on a fresh line."""
    if not os.path.exists(path):
        return
    with open(path, 'rb') as f:      # the usual case, a whole last line, costs one byte's read
        size = f.seek(0, os.SEEK_END)
        if size == 0 or (f.seek(-1, os.SEEK_END) and f.read(1) == b'\n'):
            return
    keep = len(_complete_lines(path))
    if keep < size:
        with open(path, 'r+b') as f:
            f.truncate(keep)


def append_jsonl(path, records, fsync=True):
    """Append records as whole lines in one write (after repairing a torn tail)."""
    repair_jsonl(path)
    text = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records)
    with open(path, 'a', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
