"""configurator.py: files then --key=value over a script's defaults, with one-line errors."""
import pytest

import os
import subprocess
import sys

from tinystories.configurator import Key, configure, declared_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def defaults():
    return {'out_dir': Key('out', 'a folder'), 'n_layer': Key(4, 'blocks', min=1),
            'learning_rate': Key(5e-4, 'peak rate', above=0), 'compile': Key(False, 'compile it'),
            'compare': Key([], 'folders'), 'top_k': Key(None, 'top-k'), 'MAX': 3, '_private': 1,
            'helper_global': 'not a key', 'os': os}


def test_files_then_flags_left_to_right(tmp_path, capsys):
    cfg_file = tmp_path / 'exp.py'
    cfg_file.write_text("n_layer = 8\nlearning_rate = 1\nvocab_size = 4096  # for prepare.py\n")
    ns = defaults()
    cfg = configure(ns, [str(cfg_file), '--n_layer=2', '--compile', '--compare=out/a,out/b', '--top_k=5'])
    assert (ns['n_layer'], ns['learning_rate'], ns['compile']) == (2, 1.0, True)
    assert ns['compare'] == ['out/a', 'out/b'] and ns['top_k'] == 5
    assert isinstance(ns['learning_rate'], float)
    assert set(cfg) == {'out_dir', 'n_layer', 'learning_rate', 'compile', 'compare', 'top_k'}
    assert 'ignoring keys for other stages: vocab_size' in capsys.readouterr().out


@pytest.mark.parametrize('argv,message', [
    (['--n_layers=2'], 'unknown key --n_layers'),
    (['--n_layer=2.5'], 'not a valid int'),
    (['--compile=maybe'], 'not a valid bool'),
    (['--n_layer'], 'needs a value'),
    (['--MAX=4'], 'unknown key'),
    (['missing.py'], 'not found'),
])
def test_errors_name_the_problem_and_the_valid_keys(argv, message):
    with pytest.raises(SystemExit) as e:
        configure(defaults(), argv)
    text = str(e.value)
    assert text.startswith('error:') and message in text and '\n' not in text
    if 'unknown key' in message:
        assert 'valid keys: compare, compile, learning_rate, n_layer, out_dir, top_k' in text


def test_config_file_type_mismatch(tmp_path):
    f = tmp_path / 'bad.py'
    f.write_text("n_layer = 'four'\n")
    with pytest.raises(SystemExit, match="n_layer='four' should be a int"):
        configure(defaults(), [str(f)])


@pytest.mark.parametrize('key,argv,message', [
    (Key(4, 'blocks', min=1), ['--k=0'], "--k=0 must be at least 1"),
    (Key(0.0, 'p', min=0, below=1), ['--k=1'], '--k=1.0 must be in [0, 1)'),
    (Key(0.1, 'share', above=0, below=1), ['--k=nan'], 'must be in (0, 1)'),
    (Key(1.0, 'p', above=0, max=1), ['--k=0'], 'must be in (0, 1]'),
    (Key(1.0, 'minutes', min=0), ['--k=inf'], '--k=inf must be positive or 0'),
    (Key(1e-3, 'rate', above=0), ['--k=-1'], 'must be above 0'),
    (Key('plain', 'layout', choices=('plain', 'instruct')), ['--k=xml'], "--k='xml' is not a choice: use plain or instruct"),
    (Key(None, 'compile', choices=(None, 'auto', True, False)), ['--k=maybe'], 'use None, auto, True or False'),
    (Key(1337, 'seed'), [f'--k={2 ** 63}'], 'is too large'),
    (Key([1, 2], 'widths', min=1), ['--k=1,0'], '--k=[1, 0] must be at least 1'),
])
def test_ranges_and_choices_are_one_line_errors(key, argv, message):
    with pytest.raises(SystemExit) as e:
        configure({'k': key}, argv)
    text = str(e.value)
    assert text.startswith('error:') and message in text and '\n' not in text, text


def test_only_keys_are_keys_and_the_namespace_gets_values():
    ns = defaults()
    cfg = configure(ns, [])
    assert ns['n_layer'] == 4 and ns['helper_global'] == 'not a key' and ns['os'] is os
    assert set(cfg) == {'out_dir', 'n_layer', 'learning_rate', 'compile', 'compare', 'top_k'}


def test_an_imported_module_gets_its_defaults_whatever_sys_argv_says(monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['pytest', '--n_layer=9', 'no_such_file.py'])
    ns = {**defaults(), '__name__': 'train'}
    configure(ns)
    assert ns['n_layer'] == 4
    ns = {**defaults(), '__name__': '__main__'}
    monkeypatch.setattr(sys, 'argv', ['x.py', '--n_layer=9'])
    configure(ns)
    assert ns['n_layer'] == 9


def test_saved_values_lie_beneath_the_command_line(tmp_path):
    seen = {}

    def saved(settings):
        seen.update(settings)
        return {'n_layer': 6, 'learning_rate': 1, 'ckpt_path': 'x', 'compile': True}
    ns = defaults()
    cfg = configure(ns, ['--compile=False', '--out_dir=run'], saved=saved)
    assert seen['out_dir'] == 'run'  # the hook sees where the command line points
    assert (cfg['n_layer'], cfg['learning_rate'], cfg['compile']) == (6, 1.0, False)
    assert 'ckpt_path' not in cfg and 'ckpt_path' not in ns  # not a key: ignored


def test_aliases_name_the_key_by_its_old_name(tmp_path):
    def ns():
        return {'num_layers': Key(4, 'blocks', aliases=('n_layer',))}
    f = tmp_path / 'c.py'
    f.write_text('n_layer = 3\n')
    assert configure(ns(), [str(f)])['num_layers'] == 3
    assert configure(ns(), ['--n_layer=5'])['num_layers'] == 5


@pytest.mark.parametrize('content,message', [
    (b"n_layer = 1 / 0\n", 'failed when run: ZeroDivisionError'),
    (b"import no_such_module_here\n", 'ModuleNotFoundError'),
    (b"n_layer = 2  # \xff\xfe caf\xe9\n", 'is not UTF-8'),
    (b"n_layer = (\n", 'line'),
])
def test_a_config_file_that_fails_is_one_line_naming_it(tmp_path, content, message):
    f = tmp_path / 'bad.py'
    f.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        configure(defaults(), [str(f)])
    text = str(e.value)
    assert text.startswith('error: config file') and str(f) in text and message in text and '\n' not in text


def test_declared_keys_are_read_from_source_without_running_it(tmp_path):
    f = tmp_path / 'stage.py'
    f.write_text("raise SystemExit('never run')\nimport os\nfrom x import Key\nhelper = 3\n"
                 "n_layer = Key(4, 'blocks', min=1)\nmode = Key('a', 'how', choices=('a', 'b'))\n")
    keys = declared_keys(str(f))
    assert list(keys) == ['n_layer', 'mode'] and keys['n_layer'].default == 4
    assert keys['mode'].choices == ('a', 'b') and keys['n_layer'].min == 1


def test_help_gives_every_key_its_meaning_and_range():
    train_keys = declared_keys(os.path.join(ROOT, 'train.py'))
    r = subprocess.run([sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [l.strip() for l in r.stdout.splitlines() if l.startswith('  --')]
    # the source read (what sweep.py uses) and the running script agree on every key
    assert [l.split('=')[0][2:] for l in lines] == list(train_keys)
    assert all(k.meaning for k in train_keys.values())
    assert "--n_layer=4  transformer blocks; at least 1" in lines


def test_sweep_takes_train_keys_from_their_declarations():
    """sweep.py sets any train.py key for every run: it learns them from train.py's declarations
    (a stage never imports another), with train.py's meanings; the ones it sets per run are not its."""
    r = subprocess.run([sys.executable, 'sweep.py', '--help'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = {l.strip().split('=')[0][2:]: l.strip() for l in r.stdout.splitlines() if l.startswith('  --')}
    train_keys = declared_keys(os.path.join(ROOT, 'train.py'))
    assert "--learning_rate=0.0005  the peak learning rate (AdamW's); above 0" in lines.values()
    assert set(train_keys) - set(lines) == {'out_dir', 'init_from', 'eval_only', 'overwrite', 'n_layer', 'n_head', 'n_embd'}
    assert lines['max_iters'].startswith('--max_iters=0  optimizer steps per run')  # the sweep's own comes first
