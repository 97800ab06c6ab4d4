"""
The one command line every stage shares:

    python stage.py [config/file.py ...] [--key=value ...]

A stage declares its keys at the top of the script, each with its default, its meaning and the
values it accepts, then calls `configure(globals())`, which replaces each Key by its value:

    n_layer = Key(4, "transformer blocks", min=1)
    schedule = Key('cosine', "the learning rate's shape after warmup", choices=('cosine', 'constant'))
    config = configure(globals())   # {name: value}, e.g. to save in a checkpoint

Only Key instances are keys: imports and helper globals never are. Arguments apply left to right
over the defaults:

- a config file is plain Python; its keys that the stage knows override the defaults, and the
  keys it does not know are named in one line (one file can describe a whole experiment, with
  keys for several stages);
- `--key=value` must name a known key, and the value must parse as the default's type;
  `--flag` alone means `--flag=True`; a list is comma-separated (`--compare=out/a,out/b`);
- `--help` prints every key with its default, its meaning and its range.

Anything wrong is a one-line error (SystemExit): an unknown key (with the valid keys), a value
of the wrong type, out of its range, not one of its choices, non-finite where a range is given,
or an integer too large for the code to hold; a config file that does not parse or run.
A module imported rather than run (tests import stages for their functions) gets the defaults.
"""
import ast
import math
import os
import sys

CONFIG_TYPES = (bool, int, float, str, list, tuple, type(None))
INT_LIMIT = 2 ** 63  # torch and numpy hold integers in 64 bits


class Key:
    """A setting of a stage: its default, what it means (for --help), and the values it accepts.
    min/max bound it inclusively, above/below exclusively; aliases are old names that still work."""

    def __init__(self, default, meaning, min=None, max=None, above=None, below=None, choices=None,
                 aliases=()):
        self.default, self.meaning, self.choices, self.aliases = default, meaning, choices, tuple(aliases)
        self.min, self.max, self.above, self.below = min, max, above, below

    def has_range(self):
        return any(b is not None for b in (self.min, self.max, self.above, self.below))

    def range_text(self):
        """The accepted values in words: 'at least 1', 'in [0, 1)', 'a, b or c'."""
        if self.choices is not None:
            names = [str(c) for c in self.choices]
            return ', '.join(names[:-1]) + ' or ' + names[-1] if len(names) > 1 else names[0]
        low = self.min if self.min is not None else self.above
        high = self.max if self.max is not None else self.below
        if low is not None and high is not None:
            return (f"in {'[' if self.min is not None else '('}{low}, {high}"
                    f"{']' if self.max is not None else ')'}")
        if self.min is not None:
            return 'positive or 0' if self.min == 0 else f"at least {self.min}"
        if self.above is not None:
            return f"above {self.above}"
        if high is not None:
            return f"{high} or less" if self.max is not None else f"below {high}"
        return ''

    def check(self, name, value):
        """A one-line error if `value` is outside what this key accepts."""
        if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
            fail(f"--{name}={value} is too large: integers here must lie within +-2**63")
        if self.choices is not None and value not in self.choices:
            fail(f"--{name}={value!r} is not a choice: use {self.range_text()}")
        if not self.has_range() or value is None:
            return
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
                (self.min is None or v >= self.min) and (self.max is None or v <= self.max) and \
                (self.above is None or v > self.above) and (self.below is None or v < self.below)
            if not ok:
                fail(f"--{name}={value!r} must be {self.range_text()}")


def fail(msg):
    raise SystemExit(f"error: {msg}")


def parse_value(key, text, default):
    """Parse the command-line string `text` as the type of `default`."""
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low in ('1', 'true', 'yes', 'on'):
                return True
            if low in ('0', 'false', 'no', 'off'):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        if isinstance(default, (list, tuple)):
            items = [t.strip() for t in text.split(',') if t.strip()]
            if default:  # type the items like the default's first item
                items = [parse_value(key, t, default[0]) for t in items]
            return type(default)(items)
        # default None: a Python literal if it is one, else the string
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
    except ValueError:
        fail(f"--{key}={text!r} is not a valid {type(default).__name__} (default {default!r})")


def check_type(key, value, default, where):
    """Values from config files (and saved runs) are Python already: check they fit the default's type."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        fail(f"{where}: {key}={value!r} should be a bool like the default {default!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if not isinstance(value, type(default)):
        fail(f"{where}: {key}={value!r} should be a {type(default).__name__} like the default {default!r}")
    return value


def read_config_file(path):
    """A config file's settings {name: value}: a one-line error if it cannot be read or run."""
    if not os.path.isfile(path):
        fail(f"config file {path!r} not found (arguments are config files or --key=value)")
    file_ns = {}
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
        exec(compile(source, path, 'exec'), file_ns)
    except SyntaxError as e:
        fail(f"config file {path!r} line {e.lineno}: {e.msg}")
    except UnicodeDecodeError as e:
        fail(f"config file {path!r} is not UTF-8 text (byte {e.start}): save it as UTF-8")
    except Exception as e:  # it runs, and fails: name the file and what went wrong
        reason = (str(e).strip().splitlines() or [''])[0][:150]
        fail(f"config file {path!r} failed when run: {type(e).__name__}: {reason}")
    return {k: v for k, v in file_ns.items() if not k.startswith('_') and isinstance(v, CONFIG_TYPES)}


def help_text(namespace, keys):
    lines = [(namespace.get('__doc__') or '').strip(), '', 'keys (--name=default  meaning; range):']
    for name, key in keys.items():
        rng, alias = key.range_text(), ', '.join('--' + a for a in key.aliases)
        lines.append(f"  --{name}={key.default!r}  {key.meaning}" + (f"; {rng}" if rng else '')
                     + (f" (formerly {alias})" if alias else ''))
    return '\n'.join(lines)


def configure(namespace, argv=None, verbose=True, saved=None):
    """Replace each Key in `namespace` (a script's globals()) by its value: its default, under
    the config files and --key=value arguments of `argv` (sys.argv[1:] when the script runs).

    saved: optional, a function of the settings the arguments give -> {name: value} to put
    between the defaults and the arguments (a resumed run's own keys); names that are not keys
    are ignored. Returns {name: value} of every key (handy to save in a checkpoint or a report).
    """
    keys = {k: v for k, v in namespace.items() if isinstance(v, Key)}
    if argv is None:
        argv = sys.argv[1:] if namespace.get('__name__', '__main__') == '__main__' else []
    names = {alias: name for name, key in keys.items() for alias in key.aliases}
    names.update((name, name) for name in keys)
    valid = ', '.join(sorted(keys))
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'this script'
    given = {}
    for arg in argv:
        if arg in ('-h', '--help'):
            print(help_text(namespace, keys))
            raise SystemExit(0)
        if not arg.startswith('--'):
            file_keys = read_config_file(arg)
            for k, v in file_keys.items():
                if k in names:
                    given[names[k]] = check_type(k, v, keys[names[k]].default, arg)
            ignored = [k for k in file_keys if k not in names]
            if verbose:
                print(f"{script}: config {arg}" +
                      (f" (ignoring keys for other stages: {', '.join(ignored)})" if ignored else ''))
            continue
        name, eq, text = arg[2:].partition('=')
        name = name.replace('-', '_')
        if name not in names:
            fail(f"unknown key --{name} for {script}; valid keys: {valid}")
        default = keys[names[name]].default
        if not eq:
            if not isinstance(default, bool):
                fail(f"--{name} needs a value (--{name}=...); only bool keys may stand alone")
            text = 'True'
        given[names[name]] = parse_value(name, text, default)
    values = {name: key.default for name, key in keys.items()}
    if saved is not None:
        for k, v in saved({**values, **given}).items():
            if k in keys:
                values[k] = check_type(k, v, keys[k].default, 'the saved run')
    values.update(given)
    for name, key in keys.items():
        key.check(name, values[name])
    namespace.update(values)
    return values


def declared_keys(path):
    """The keys a script declares (`name = Key(...)` at its top level, literal arguments), read
    from its source without running it: how one stage learns another's keys (a stage never
    imports another)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    keys = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, 'id', None) == 'Key'):
            try:
                args = [ast.literal_eval(a) for a in node.value.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.value.keywords}
            except ValueError:
                raise ValueError(f"{path} line {node.lineno}: a Key's arguments must be literals")
            keys[node.targets[0].id] = Key(*args, **kwargs)
    return keys
