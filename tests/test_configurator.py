"""configurator.py: files then --key=value over a script's defaults, with one-line errors."""
import pytest

from tinystories.configurator import configure


def defaults():
    return {'out_dir': 'out', 'n_layer': 4, 'learning_rate': 5e-4, 'compile': False,
            'compare': [], 'top_k': None, 'MAX': 3, '_private': 1}


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
