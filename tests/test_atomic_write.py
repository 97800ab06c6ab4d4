"""atomic_write: str or bytes in place in one step, the parent made, no temp file left behind."""
import os

import pytest

from tinystories.atomic_write import atomic_write


def test_writes_str_and_bytes_and_makes_the_parent(tmp_path):
    path = tmp_path / 'a' / 'b' / 'f.txt'
    atomic_write(str(path), 'héllo\n')
    assert path.read_bytes() == 'héllo\n'.encode('utf-8')
    atomic_write(str(path), b'\x00\x01')
    assert path.read_bytes() == b'\x00\x01'
    assert os.listdir(path.parent) == ['f.txt']


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / 'f.json'
    atomic_write(str(path), '{"old": 1}')
    with pytest.raises(TypeError):
        atomic_write(str(path), 12345)  # neither str nor bytes
    assert path.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ['f.json']
