"""
Prompts from the command line, the same way in every stage (sample.py, interpret.py).

    --start="Once upon a time"     the text itself
    --start=FILE:prompt.txt        the whole file is ONE prompt (nanoGPT's meaning; an Instruct
                                   prompt spans several lines: Words:, Summary:, ..., Story:)
    --start=FILE:prompts.jsonl     one prompt per line, in the field "prompt"
"""
import json


def read_prompts(spec, key='start'):
    """A list of prompt strings from a --start-style value (see the module docstring)."""
    if not spec.startswith('FILE:'):
        return [spec]
    path = spec[5:]
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as e:
        raise SystemExit(f"error: --{key}: cannot read {path!r}: {e.strerror}")
    except UnicodeDecodeError:
        raise SystemExit(f"error: --{key}: {path!r} is not UTF-8 text")
    if not path.endswith('.jsonl'):
        if not text.strip():
            raise SystemExit(f"error: --{key}: {path!r} is empty")
        return [text.rstrip('\n')]
    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompts.append(record['prompt'])
        except (ValueError, KeyError, TypeError):
            raise SystemExit(f"error: --{key}: {path!r} line {n} is not a JSON object with a "
                             f"\"prompt\" field")
        if not isinstance(prompts[-1], str):
            raise SystemExit(f"error: --{key}: {path!r} line {n}: \"prompt\" is not a string")
    if not prompts:
        raise SystemExit(f"error: --{key}: {path!r} holds no prompts")
    return prompts
