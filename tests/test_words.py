"""words.word_used, the one word matcher (generation's validation, grading, the sweep):
inflections and irregular forms count as using a word, near-misses that merely share letters
do not."""
import pytest

from tinystories.words import (ADJECTIVES, IRREGULAR_ADJECTIVES, IRREGULAR_NOUNS, IRREGULAR_VERBS, NOUNS,
                        VERBS, word_forms, word_used)

USED = [  # (word, text that uses it)
    ('run', 'He ran home.'), ('run', 'She is running.'), ('run', 'The dog runs.'),
    ('jump', 'They jumped.'), ('jump', 'Jumping is fun.'), ('bake', 'Mom was baking.'),
    ('bake', 'She baked a cake.'), ('cry', 'The baby cried.'), ('cry', 'He cries a lot.'),
    ('cry', 'Stop crying!'), ('stop', 'The bus stopped.'), ('stop', 'stopping now'),
    ('hug', 'She hugged him.'), ('hug', 'Hugs are nice.'), ('find', 'He found it.'),
    ('mouse', 'Two mice ran.'), ('happy', 'They played happily.'), ('happy', 'She was happier.'),
    ('big', 'It got bigger.'), ('big', 'the biggest tree'), ('sad', 'He was sadder.'),
    ('gentle', 'Pat it gently.'), ('swim', 'They swam.'), ('swim', 'the swimming pool'),
    ('eat', 'Who ate the pie?'), ('eat', 'It was eaten.'), ('catch', 'She caught the ball.'),
    ('bring', 'He brought a gift.'), ('think', 'I thought so.'), ('see', 'She saw a bird.'),
    ('see', 'Have you seen it?'), ('fly', 'The bird flew away.'), ('fly', 'It flies.'),
    ('sleep', 'She slept well.'), ('tie', 'He was tying his shoe.'), ('tie', 'She tied it.'),
    ('lie', 'The cat lay down.'), ('lie', 'lying in bed'), ('dig', 'They dug a hole.'),
    ('sit', 'He sat down.'), ('break', 'It broke.'), ('break', 'a broken toy'),
    ('write', 'She wrote a note.'), ('teach', 'Mom taught me.'), ('wake', 'He woke up.'),
    ('leaf', 'Red leaves fell.'), ('wolf', 'Three wolves howled.'), ('tooth', 'Brush your teeth.'),
    ('foot', 'cold feet'), ('goose', 'The geese flew.'), ('snowman', 'two snowmen'),
    ('berry', 'We picked berries.'), ('box', 'The boxes were full.'), ('potato', 'hot potatoes'),
    ('bunny', 'Bunnies hop.'), ('toy', 'her toys'), ('wish', 'She wishes.'), ('travel', 'They travelled far.'),
    ('travel', 'He traveled far.'), ('visit', 'We visited Grandma.'), ('tiptoe', 'She tiptoed in.'),
    ('ski', 'They went skiing.'), ('moo', 'The cow mooed.'), ('careful', 'Walk carefully.'),
    ('magic', 'It glowed magically.'), ('dream', 'He dreamt of cake.'), ('dream', 'He dreamed of cake.'),
    ('beat', 'He had beaten the drum.'), ('cat', "The cat's tail."), ('ball', 'BALL!'), ('dog', 'The dogs barked.'),
]
NOT_USED = [  # (word, text that only looks like it)
    ('car', 'I care about you.'), ('pin', 'A pine tree.'), ('hat', 'He hated it.'),
    ('star', 'She stared at me.'), ('read', 'Are you ready?'), ('hug', 'A huge dog.'),
    ('cat', 'A toy catalog.'), ('cat', 'He caught it.'), ('see', 'She planted a seed.'),
    ('run', 'a rung of the ladder'), ('hop', 'She hoped so.'), ('ant', 'a giant'),
    ('bee', 'the beetle'), ('pet', 'a petal'), ('cap', 'a cape'), ('tap', 'sticky tape'),
    ('bat', 'time to bathe'), ('rock', 'a rocket'), ('pan', 'a panda'), ('pea', 'peace and quiet'),
    ('bug', 'a bugle'), ('sun', 'a sunny day'), ('ice', 'nice and warm'), ('ear', 'early morning'),
    ('arm', 'on the farm'), ('cow', 'a cowboy'), ('wag', 'a wagon'), ('row', 'a crown'),
    ('lie', 'a lion'), ('win', 'the wind'), ('tie', 'a tiger'),
]


@pytest.mark.parametrize('word,text', USED)
def test_inflections_and_irregular_forms_count(word, text):
    assert word_used(word, text), (word, text, sorted(word_forms(word)))


@pytest.mark.parametrize('word,text', NOT_USED)
def test_near_misses_do_not_count(word, text):
    assert not word_used(word, text), (word, text, sorted(word_forms(word)))


def test_the_tables_are_about_the_vocabulary_and_use_the_lists():
    assert len(USED) >= 40 and len(NOT_USED) >= 20
    assert set(IRREGULAR_VERBS) <= set(VERBS)
    assert set(IRREGULAR_NOUNS) <= set(NOUNS)
    assert set(IRREGULAR_ADJECTIVES) <= set(ADJECTIVES)
    # a word's forms follow its part of speech: nouns take no -ed, verbs no -er
    assert 'hated' not in word_forms('hat') and 'stopper' not in word_forms('stop')


def test_every_vocabulary_word_is_used_by_itself_and_matched_whole():
    for w in NOUNS + VERBS + ADJECTIVES:
        assert word_used(w, f'It was about {w.upper()} today.'), w
        assert not word_used(w, f'It was about x{w}x today.'), w
