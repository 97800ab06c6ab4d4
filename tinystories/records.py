"""
The records stages pass each other, checked where they are read: a valid JSON record of the
wrong shape (a log.jsonl line that is a list, a results record without its fields, a grade
report with a field of another type) is a one-line error naming the file (and line), never a
KeyError deep in a plot or a table.

    log.jsonl      train.py writes: {"iter", "loss", "lr", ...} / {"iter", "val_loss", "val_bpb"}
    results.jsonl  sweep.py writes: one flat record per run (docs/contracts.md)
    grade/*.json   grade.py writes: summary.json (GPT-Eval), probes.json (the probes)

Each schema lists only what the readers use; a record may hold more. A shape is a type (numbers
are int or float, never bool; OPTIONAL: may be absent or null, NULLABLE: there, maybe null), a dict of
field -> shape, `EACH(shape)` for an object whose every value has that shape, or `PAIRS` for a
list of [number, number].
"""
import json
import os

from tinystories.jsonl import read_jsonl

NUMBER = (int, float)


class OPTIONAL:
    """A field that may be absent or null."""
    def __init__(self, shape):
        self.shape = shape


class NULLABLE(OPTIONAL):
    """A field that must be there, but may be null (a mean of nothing graded)."""


class EACH:
    def __init__(self, shape):
        self.shape = shape


PAIRS = 'pairs'

LOG_RECORD = {'iter': int, 'loss': OPTIONAL(NUMBER), 'lr': OPTIONAL(NUMBER), 'ms': OPTIONAL(NUMBER),
              'tokens_per_s': OPTIONAL(NUMBER), 'mfu': OPTIONAL(NUMBER), 'val_loss': OPTIONAL(NUMBER),
              'val_bpb': OPTIONAL(NUMBER), 'final': OPTIONAL(bool)}
RESULT = {'run': str, 'n_embd': int, 'n_layer': int, 'n_head': int, 'params': int,
          'params_no_emb': int, 'iters': int, 'tokens': int, 'flops_per_token': NUMBER,
          'flops': NUMBER, 'wall_s': NUMBER, 'val_bpb': NUMBER, 'val_loss': NUMBER, 'val_curve': PAIRS}
CHECKPOINT = {'iter_num': OPTIONAL(int), 'params': OPTIONAL(int)}
SUMMARY = {'checkpoint': CHECKPOINT, 'counts': {'graded': int},
           'scores': EACH({'mean': NULLABLE(NUMBER), 'std': NULLABLE(NUMBER), 'min': NULLABLE(NUMBER),
                           'max': NULLABLE(NUMBER), 'n': int}),
           'age_groups': EACH({'count': int, 'fraction': NULLABLE(NUMBER)})}
ACCURACY = {'accuracy': NUMBER, 'items': int, 'chance': NUMBER, 'stderr': OPTIONAL(NUMBER)}
PROBES = {'checkpoint': CHECKPOINT, 'overall': ACCURACY, 'by_category': EACH(ACCURACY),
          'instruct': OPTIONAL({'fraction': NULLABLE(NUMBER)})}


def problem(value, shape, name='the record'):
    """What is wrong with value against shape (a phrase naming the field), or None."""
    if isinstance(shape, OPTIONAL):
        return None if value is None else problem(value, shape.shape, name)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{name} is a {type(value).__name__}, not an object"
        for key, sub in shape.items():
            if key not in value and (not isinstance(sub, OPTIONAL) or isinstance(sub, NULLABLE)):
                return f"{name} lacks '{key}'"
            wrong = problem(value.get(key), sub, field(name, key))
            if wrong:
                return wrong
        return None
    if isinstance(shape, EACH):
        if not isinstance(value, dict):
            return f"{name} is a {type(value).__name__}, not an object"
        return next((w for k, v in value.items() if (w := problem(v, shape.shape, field(name, k)))), None)
    if shape == PAIRS:
        ok = isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and
                                             all(problem(x, NUMBER) is None for x in p) for p in value)
        return None if ok else f"{name} is not a list of [number, number] pairs"
    if isinstance(value, bool) and shape is not bool or not isinstance(value, shape):
        return f"{name} is {json.dumps(value)[:40]}, not {'a number' if shape is NUMBER else TYPE_NAMES[shape]}"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0 and shape is int:
        return f"{name} is {value}, not a count"
    return None


TYPE_NAMES = {int: 'an integer', str: 'text', bool: 'true or false', float: 'a number'}


def field(parent, key):
    """'iter' for a top-level field, 'by_category.words' below it (for the messages)."""
    return f"'{key}'" if parent.startswith('the ') else f"{parent.rstrip(chr(39))}.{key}'"


def read_log(run_dir):
    """A run's log.jsonl records (train.py's), each checked; [] when there is none yet."""
    return read_jsonl(os.path.join(run_dir, 'log.jsonl'), check=lambda r: problem(r, LOG_RECORD))


def read_results(sweep_dir):
    """A sweep's results.jsonl records (sweep.py's), each checked; [] when there is none yet."""
    return read_jsonl(os.path.join(sweep_dir, 'results.jsonl'), check=lambda r: problem(r, RESULT))


def read_report(path, shape):
    """A stage's JSON report (e.g. grade/summary.json with SUMMARY), checked; a one-line error
    naming the file when it is unreadable or of another shape."""
    try:
        with open(path, encoding='utf-8') as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read {path} ({str(e)[:100]}): run its stage again to rewrite it")
    wrong = problem(report, shape, 'the report')
    if wrong:
        raise SystemExit(f"error: {path}: {wrong}: the file was edited or damaged; run its stage again to rewrite it")
    return report
