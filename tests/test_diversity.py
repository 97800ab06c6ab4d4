"""diversity.py: Rouge-k on hand-computed cases, the k-gram index against brute force."""
import random

import pytest

from diversity import KGramIndex, closest_brute_force, kgrams, rouge_f, rouge_precision, words


def test_words_lowercase_and_keep_apostrophes():
    assert words("Lily's dog, Max, ran! THE END.") == ["lily's", 'dog', 'max', 'ran', 'the', 'end']


def test_rouge_hand_computed():
    a = "the cat sat on the mat"        # bigrams: the cat, cat sat, sat on, on the, the mat (5)
    b = "the cat ran on the mat today"  # bigrams: the cat, cat ran, ran on, on the, the mat, mat today (6)
    # shared: the cat, on the, the mat = 3
    assert rouge_precision(a, b) == pytest.approx(3 / 5)
    assert rouge_precision(b, a) == pytest.approx(3 / 6)
    p, r = 3 / 5, 3 / 6
    assert rouge_f(a, b) == pytest.approx(2 * p * r / (p + r))
    assert rouge_f(b, a) == pytest.approx(rouge_f(a, b))
    # k-grams are a set: a repeated bigram counts once
    assert rouge_precision("a b a b a b", "a b", k=2) == pytest.approx(1 / 2)  # {a b, b a}
    assert rouge_precision(a, b, k=1) == pytest.approx(4 / 5)  # {the,cat,sat,on,mat} vs b
    assert rouge_precision(a, b, k=3) == pytest.approx(1 / 4)  # only "on the mat"
    assert rouge_precision("same words here", "Same, words here!") == 1.0


def test_rouge_degenerate():
    assert rouge_precision("one", "one two") == 0.0  # no bigram at all
    assert rouge_f("", "") == 0.0
    assert rouge_f("x y", "z w") == 0.0


def zipf_stories(rng, n, vocab=300, max_len=120):
    """Word salad with a Zipf-like word distribution: some bigrams are in most stories (like
    "once upon"), most are rare, so the index's bound has real work to do."""
    vs = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) ** 1.2 for i in range(vocab)]
    return [' '.join(rng.choices(vs, weights, k=rng.randint(0, max_len))) for _ in range(n)], vs, weights


@pytest.mark.parametrize('k', [2, 3])
def test_index_equals_brute_force(k):
    rng = random.Random(k)
    stories, vs, weights = zipf_stories(rng, 1500)
    stories += [stories[7], stories[7]]          # exact duplicates: ties go to the lowest id
    index = KGramIndex(stories, k=k, chunk=613)  # several chunks, boundaries mid-way
    assert index.n_stories == len(stories)
    skipped = 0
    for t in range(90):
        if t % 3 == 0:    # a training story, or a piece of one
            q = stories[rng.randrange(len(stories))]
            q = q[:rng.randint(0, len(q))]
        elif t % 3 == 1:  # fresh text, sometimes with words the index has never seen
            q = ' '.join(rng.choices(vs + ['unseen'], weights + [0.2], k=rng.randint(0, 80)))
        else:             # a splice of two stories
            q = stories[rng.randrange(len(stories))][:150] + ' ' + stories[rng.randrange(len(stories))][-150:]
        assert index.closest(q) == closest_brute_force(stories, q, k), q
        skipped += index.last_stats.get('skipped_grams', 0) > 0
    assert skipped > 5  # the bound really left common k-grams uncounted on many queries


def test_index_small_cases():
    stories = ["Once upon a time there was a cat.", "", "A dog. Once upon a time!", "the end"]
    index = KGramIndex(stories, k=2)
    assert index.closest("once upon a time") == (0, 3, 3)  # story 0 and 2 tie: lowest id
    assert index.closest("the end of it") == (3, 1, 3)
    assert index.closest("nothing shared here") == (-1, 0, 2)
    assert index.closest("") == (-1, 0, 0)
    q, n = index.query_grams("once upon zebra upon a")
    assert n == 4 and len(q) == 2  # "upon zebra", "zebra upon" cannot be in the index
    assert list(index.contains(q)) == [True, True]
    assert kgrams(words("a b c"), 2) == {('a', 'b'), ('b', 'c')}
