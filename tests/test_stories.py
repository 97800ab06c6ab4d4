"""stories.py: every local source format -> story texts (and records), bad input -> StoryError."""
import json

import pytest

from tinystories import stories
from tinystories.stories import StoryError, iter_stories


def test_txt_jsonl_json_and_directory(tmp_path):
    texts = ['Once upon a time.\nThe end.', 'A cat sat. 🐱', 'Tom ran.']
    (tmp_path / 'a.txt').write_text(''.join(t + '\n<|endoftext|>\n' for t in texts), encoding='utf-8')
    assert list(iter_stories(str(tmp_path / 'a.txt'))) == texts
    # small blocks: a story longer than a block is still read whole
    assert list(iter_stories(str(tmp_path / 'a.txt'), block_bytes=8)) == texts
    d = tmp_path / 'dir'
    (d / 'sub').mkdir(parents=True)
    (d / '.state').mkdir()
    (d / '.state' / 'x.jsonl').write_text('{"story": "hidden"}\n')
    (d / 'notes.md').write_text('not a story file')
    (d / 'b-00000.jsonl').write_text(''.join(json.dumps({'story': t, 'id': i}) + '\n'
                                             for i, t in enumerate(texts)) + '\n')
    (d / 'sub' / 'data00.json').write_text(json.dumps([{'story': '  Last one. '}, {'story': ''}]))
    assert list(iter_stories(str(d))) == texts + ['Last one.']
    # the record-level reading prepare.py uses for --format=instruct
    items = [it for f in stories.list_files(str(d)) for b in stories.read_blocks(f) for it in stories.parse_block(b)]
    assert items[1] == (texts[1], {'story': texts[1], 'id': 1}) and items[-1][0] == ''


@pytest.mark.parametrize('case', ['missing', 'empty', 'no_separator', 'not_utf8', 'unknown_type',
                                  'no_story_field', 'bad_json', 'empty_dir'])
def test_bad_input(tmp_path, case):
    p = tmp_path / 'f.txt'
    if case == 'missing':
        expect = 'not found'
    elif case == 'empty':
        p.write_text('')
        expect = 'is empty'
    elif case == 'no_separator':
        p.write_text('One story.\nNo separator.\n')
        expect = 'no <|endoftext|> separator'
    elif case == 'not_utf8':
        p.write_bytes(b'Good.\n<|endoftext|>\nBad \xff\n<|endoftext|>\n')
        expect = 'not UTF-8 at byte offset 24'
    elif case == 'unknown_type':
        p = tmp_path / 'f.csv'
        p.write_text('x')
        expect = 'unknown file type'
    elif case == 'no_story_field':
        p = tmp_path / 'f.jsonl'
        p.write_text('{"story": "ok"}\n{"text": "hi"}\n')
        expect = "record at 16 has no 'story'"
    elif case == 'bad_json':
        p = tmp_path / 'f.json'
        p.write_text('[{"story": ')
        expect = 'not valid JSON'
    else:
        p = tmp_path / 'd'
        p.mkdir()
        expect = 'holds no .txt'
    with pytest.raises(StoryError) as e:
        list(iter_stories(str(p)))
    assert expect in str(e.value) and '\n' not in str(e.value)
