"""The docs cannot drift from the code: every command in README.md and docs/*.md (code blocks and
inline code) that runs `python X.py`, `python -m tinystories.x`, `torchrun ... X.py` or `make X`
names a script, module, config file and make target that exists, and only keys that script has
(read from its own `--help`, one subprocess per script). The README stays at most 250 lines, and
every relative link in the docs points at a file of the repo.

Placeholders are skipped by rule: a token holding `<...>` or `...` stands for something the
reader fills in (the key in `--source=<file>` is still checked, its value is not); a synopsis
(a command with a `[...]` optional part, as `python stage.py [config/file.py ...]`) describes
every script, so it is not a command, and the script it names stands for any script wherever it
appears (`python stage.py --help`).
"""
import glob
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))
SHELL_OPERATORS = {'>', '>>', '<', '|', '&&', '||', ';', '&', '2>&1'}
ENV_ASSIGNMENT = re.compile(r'^[A-Z_][A-Z0-9_]*=')
# where a command can start: after optional VAR=value assignments, one of these programs
COMMAND = re.compile(r'^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:python3?|torchrun|make)\b')


def read(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        return f.read()


def code_and_prose(text):
    """(the lines of code blocks, fenced or indented by 4 spaces, the prose left over)."""
    code, prose, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith('```'):
            fenced = not fenced
        elif fenced or line.startswith('    '):
            code.append(line.strip())
        else:
            prose.append(line)
    return code, '\n'.join(prose)


def commands_in(text):
    """Every command line in a markdown text: code lines (backslash continuations joined) and
    inline code spans (which may wrap over a line break)."""
    code, prose = code_and_prose(text)
    joined, lines = '', []
    for line in code:
        joined += line
        if joined.endswith('\\'):
            joined = joined[:-1] + ' '
            continue
        lines.append(' '.join(joined.split()))
        joined = ''
    spans = [' '.join(s.split()) for s in re.findall(r'`([^`]+)`', prose)]
    return [c for c in lines + spans if COMMAND.match(c)]


def is_placeholder(token):
    return '...' in token or re.search(r'<[^>]*>', token) is not None


def is_synopsis(command):
    return re.search(r'\[[^\]]*\]', command) is not None


def parse(command):
    """-> (kind, target, [(key, arg)], [config files]) for a command, or None for a synopsis.
    kind: 'script' (target: its path), 'module' (a dotted name), 'make' (a target) or None
    (a placeholder script)."""
    if is_synopsis(command):
        return None
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in a wrapped inline span: split on spaces
        tokens = command.split()
    cut = next((i for i, t in enumerate(tokens) if t in SHELL_OPERATORS), len(tokens))
    tokens = [t for t in tokens[:cut]]
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens.pop(0)
    program, rest = tokens[0], tokens[1:]
    if program == 'make':
        return 'make', rest[0] if rest else None, [], []
    if program == 'torchrun':  # torchrun's own options come before the script
        i = next((i for i, t in enumerate(rest) if t.endswith('.py')), None)
        if i is None:
            return 'script', None, [], []
        rest = rest[i:]
    if rest[:1] == ['-c']:  # inline Python, no script of ours
        return None, None, [], []
    if rest[:1] == ['-m']:
        kind, target, args = 'module', rest[1], rest[2:]
    else:
        kind, target, args = 'script', rest[0], rest[1:]
    if is_placeholder(target):
        return None, target, [], []
    keys = [(t[2:].partition('=')[0].replace('-', '_'), t) for t in args if t.startswith('--')]
    configs = [t for t in args if not t.startswith('-') and t.endswith('.py') and not is_placeholder(t)]
    return kind, target, keys, configs


def all_commands():
    """[(doc, command, parsed)] for every command of every doc, but those of a placeholder script
    (one a synopsis names)."""
    commands = [(doc, command) for doc in DOCS for command in commands_in(read(doc))]
    generic = {parse(c.replace('[', '').replace(']', ''))[1] for _, c in commands if is_synopsis(c)}
    found = []
    for doc, command in commands:
        parsed = parse(command)
        if parsed is not None and parsed[0] is not None and parsed[1] not in generic:
            found.append((doc, command, parsed))
    return found


def make_targets():
    return set(re.findall(r'^([A-Za-z0-9_.-]+):', read('Makefile'), re.M))


def help_keys(invocations):
    """{invocation: set of key names} from each script's --help (its key lines read
    `  --name=default ...`, an old name as `(formerly --old)`), all scripts at once."""
    procs = {inv: subprocess.Popen([sys.executable, *inv, '--help'], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
             for inv in invocations}
    keys = {}
    for inv, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{' '.join(inv)} --help failed: {err[-500:]}"
        keys[inv] = set(re.findall(r'^\s+--([A-Za-z_]\w*)=', out, re.M)) | set(re.findall(r'formerly --(\w+)', out))
        assert keys[inv], f"{' '.join(inv)} --help lists no keys"
    return keys


def test_commands_name_what_exists_and_only_its_keys():
    commands = all_commands()
    assert len(commands) > 50, "the extraction found too few commands: is it still reading the docs?"
    targets = make_targets()
    problems, invocations = [], set()
    for doc, command, (kind, target, keys, configs) in commands:
        if kind == 'make':
            if target not in targets:
                problems.append(f"{doc}: `{command}`: no make target {target!r}")
            continue
        path = target if kind == 'script' else target.replace('.', '/') + '.py'
        if target is None or not os.path.isfile(os.path.join(ROOT, path)):
            problems.append(f"{doc}: `{command}`: no {kind} {target!r}")
            continue
        problems += [f"{doc}: `{command}`: no config file {c!r}" for c in configs
                     if not os.path.isfile(os.path.join(ROOT, c))]
        invocations.add((path,) if kind == 'script' else ('-m', target))
    known = help_keys(sorted(invocations))
    # sweep.py passes every train.py key on to its runs (docs/contracts.md), so those are its keys too
    if ('sweep.py',) in known:
        known[('sweep.py',)] |= help_keys([('train.py',)])[('train.py',)]
    for doc, command, (kind, target, keys, configs) in commands:
        inv = (target,) if kind == 'script' else ('-m', target)
        for key, token in keys:
            if inv in known and key not in known[inv]:
                problems.append(f"{doc}: `{command}`: {token!r} is not a key of {' '.join(inv)}")
    assert not problems, '\n'.join(problems)


def test_placeholders_and_synopses_are_skipped_by_rule():
    assert parse('python stage.py [config/file.py ...] [--key=value ...]') is None
    assert parse('python <stage>.py --out_dir=x')[0] is None
    assert parse('python stage.py --help')[1] == 'stage.py'  # all_commands skips it: a synopsis names it
    kind, target, keys, configs = parse('OPENAI_API_KEY=... python prepare.py config/cpu_tiny.py '
                                        '--source=<the train sample .txt> --data_dir=data/x > log  # note')
    assert (kind, target, configs) == ('script', 'prepare.py', ['config/cpu_tiny.py'])
    assert [k for k, _ in keys] == ['source', 'data_dir']
    assert parse('torchrun --standalone --nproc_per_node=8 train.py --data_dir=d')[1:3] == (
        'train.py', [('data_dir', '--data_dir=d')])
    assert parse('python -m tinystories.probes --seed=1')[:2] == ('module', 'tinystories.probes')
    assert parse('DEMO_MINUTES=10 make demo')[:2] == ('make', 'demo')
    text = ("Run `python sample.py --out_dir=out/demo\n--seed=1` or\n\n    python train.py \\\n"
            "        --max_iters=5\n\n```\nmake test\n```\n")
    assert commands_in(text) == ['python train.py --max_iters=5', 'make test',
                                 'python sample.py --out_dir=out/demo --seed=1']


def test_readme_is_short():
    assert len(read('README.md').splitlines()) <= 250


def test_relative_links_point_at_files():
    problems = []
    for doc in DOCS:
        _, prose = code_and_prose(read(doc))
        for link in re.findall(r'\]\(([^)\s]+)\)', prose):
            if re.match(r'^[a-z]+:', link) or link.startswith('#'):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(doc), link.split('#')[0]))
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.append(f"{doc}: link {link!r}: no {path}")
    assert not problems, '\n'.join(problems)
