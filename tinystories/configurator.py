"""
The one command line every stage shares:

    python stage.py [config/file.py ...] [--key=value ...]

A stage script declares its defaults as plain module-level variables, then calls
`configure(globals())`. Arguments apply left to right over those defaults:

- a config file is plain Python; its keys that the stage knows override the defaults, and the
  keys it does not know are named in one line (one file can describe a whole experiment, with
  keys for several stages);
- `--key=value` must name a known key, and the value must parse as the default's type;
  `--flag` alone means `--flag=True`; a list is comma-separated (`--compare=out/a,out/b`).

Anything wrong is a one-line error (SystemExit) that lists the valid keys.
"""
import ast
import os
import sys

CONFIG_TYPES = (bool, int, float, str, list, tuple, type(None))


def config_keys(namespace):
    """The configurable names of a script: public, lower-case module-level values of simple
    types (UPPER_CASE names are constants, not settings)."""
    return [k for k, v in namespace.items()
            if not k.startswith('_') and not k.isupper() and isinstance(v, CONFIG_TYPES)]


def _fail(msg):
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
        except (ValueError, SyntaxError):
            return text
    except ValueError:
        _fail(f"--{key}={text!r} is not a valid {type(default).__name__} (default {default!r})")


def _check_type(key, value, default, where):
    """Values from config files are Python already: check they fit the default's type."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        _fail(f"{where}: {key}={value!r} should be a bool like the default {default!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if not isinstance(value, type(default)):
        _fail(f"{where}: {key}={value!r} should be a {type(default).__name__} like the default {default!r}")
    return value


def configure(namespace, argv=None, verbose=True):
    """Apply config files and --key=value overrides to `namespace` (a script's globals()).

    Returns the resulting config as a dict (handy to save in a checkpoint or a report).
    """
    argv = sys.argv[1:] if argv is None else argv
    keys = config_keys(namespace)
    valid = ', '.join(sorted(keys))
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'this script'
    for arg in argv:
        if arg in ('-h', '--help'):
            print((namespace.get('__doc__') or '').strip() + '\n\nkeys (defaults):')
            for k in keys:
                print(f"  --{k}={namespace[k]!r}")
            raise SystemExit(0)
        if not arg.startswith('--'):
            if not os.path.isfile(arg):
                _fail(f"config file {arg!r} not found (arguments are config files or --key=value)")
            file_ns = {}
            try:
                with open(arg, encoding='utf-8') as f:
                    exec(compile(f.read(), arg, 'exec'), file_ns)
            except SyntaxError as e:
                _fail(f"config file {arg!r} line {e.lineno}: {e.msg}")
            file_keys = [k for k in file_ns if not k.startswith('_')
                         and isinstance(file_ns[k], CONFIG_TYPES)]
            ignored = [k for k in file_keys if k not in keys]
            for k in file_keys:
                if k in keys:
                    namespace[k] = _check_type(k, file_ns[k], namespace[k], arg)
            if verbose:
                print(f"{script}: config {arg}" +
                      (f" (ignoring keys for other stages: {', '.join(ignored)})" if ignored else ''))
            continue
        key, eq, text = arg[2:].partition('=')
        key = key.replace('-', '_')
        if key not in keys:
            _fail(f"unknown key --{key} for {script}; valid keys: {valid}")
        if not eq:
            if not isinstance(namespace[key], bool):
                _fail(f"--{key} needs a value (--{key}=...); only bool keys may stand alone")
            text = 'True'
        namespace[key] = parse_value(key, text, namespace[key])
    return {k: namespace[k] for k in keys}
