"""
Offline probes of what a model knows, in the spirit of the TinyStories paper's Figures 9-11:
knowledge (facts a children's story relies on), reasoning (a step from what the prompt says) and
context tracking (who has what, where things are). Each item is a prompt with one right
continuation and three distractors (four candidates: chance is 25%); the model "answers" with
the candidate it finds most likely, per token (length-normalised log-likelihood), so no sampling
and no grader is involved.

Reasoning and context items cannot be passed by copying: all four candidates appear in the
prompt, equally often, in the paper's "either ... or ..., not ..." form and others like it, and
the answer is the last-mentioned candidate in exactly a quarter of them. Every category reports
baselines beside the model (probe_baselines): chance; the candidate mentioned most often in the
prompt; the one mentioned last; the one most frequent in TinyStories text (eval/unigrams.json).

This file holds:
1. the probe-set generator: seeded templates and small hand-written fact tables, varied in
   names, objects, places and order. The repo's eval/probes.jsonl is its output, and a test
   checks that it is reproduced byte for byte:

       python -m tinystories.probes --seed=1 --per_category=250 --out=eval/probes.jsonl

   and the unigram table, made once from TinyStories train-split text (the source file's name
   and sha256 are in the table):

       python -m tinystories.probes --unigram_source=<a TinyStories train text file>

2. the scoring engine grade.py --probes calls: run_probes() batches every (prompt, candidate)
   pair through the model, and reports accuracy per category with its binomial standard error
   sqrt(p(1-p)/n), beside chance (1 / candidates) and the baselines.
"""
import hashlib
import json
import math
import os
import random
import re

import torch

from tinystories.configurator import Key, configure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo (this file is in tinystories/)

# -----------------------------------------------------------------------------
seed = Key(1, "seeds the generator: the same seed makes the same probes")
per_category = Key(250, "probes per category", min=1)
out = Key(os.path.join(ROOT, 'eval', 'probes.jsonl'), "the JSON Lines file to write")
unigram_source = Key('', "a TinyStories text file: write the unigram table (unigram_out) from it instead of probes")
unigram_out = Key(os.path.join(ROOT, 'eval', 'unigrams.json'), "where the unigram table is written")
# -----------------------------------------------------------------------------
config = configure(globals())  # the generator's command line (imported: the defaults)

CATEGORIES = ('knowledge', 'reasoning', 'context')
DISTRACTORS = 3  # four candidates: chance is 25%

# ----------------------------------------------------------------------------- the vocabulary
GIRLS = 'Lily Mia Sara Anna Lucy Emma Amy Sue Kate Zoe Ella Rose Jenny Molly Lisa Nora'.split()
BOYS = 'Tom Ben Tim Jack Sam Leo Joe Bob Dan Jake Finn Timmy Alex Ryan Pete Ned'.split()
TOYS = 'ball kite doll car train boat drum puzzle teddy robot book hat yo-yo whistle'.split()
CONTAINERS = 'box bag basket drawer closet cupboard bucket backpack'.split()
COLOURS = 'red blue green yellow pink purple orange brown white black'.split()
PLACES = 'park beach zoo pool farm library store lake forest garden playground'.split()
PETS = 'dog cat bird fish bunny frog turtle hamster pony duck'.split()
PET_NAMES = 'Buddy Fluffy Spot Bella Coco Daisy Sunny Pip Rex Milo Lucky Tiger Bubbles'.split()
FOODS = 'apple banana cookie cake sandwich carrot muffin pear grape cherry'.split()
NUMBERS = 'zero one two three four five six seven eight nine'.split()


def person(rng, avoid=()):
    """A child: name and pronouns (she/her/her or he/him/his)."""
    girl = rng.random() < 0.5
    name = rng.choice([n for n in (GIRLS if girl else BOYS) if n not in avoid])
    p = dict(name=name, she='she' if girl else 'he', her='her' if girl else 'his',
             him='her' if girl else 'him')
    p['She'], p['Her'] = p['she'].capitalize(), p['her'].capitalize()
    return p


def people(rng, n):
    out = []
    while len(out) < n:
        out.append(person(rng, avoid=[p['name'] for p in out]))
    return out


def others(rng, pool, exclude, n):
    """n distinct items of pool, none of them in exclude."""
    return rng.sample([x for x in pool if x not in exclude], n)


def plural(word):
    if word.endswith('y') and word[-2] not in 'aeiou':
        return word[:-1] + 'ies'
    return word + ('es' if word.endswith(('ch', 'sh', 's', 'x')) else 's')


def article(word):
    """The word after its indefinite article: "a ball", "an apple"."""
    return ('an ' if word[0] in 'aeiou' else 'a ') + word


def count(n, word):
    return f"{NUMBERS[n]} {word if n == 1 else plural(word)}"


# ----------------------------------------------------------------------------- knowledge
# Fact tables: (prompt, answer, also right). Distractors come from the other facts' answers in
# the same table (one word class, so grammar gives nothing away), never from what is also right.
ANIMAL_DOES = [  # (animal and what it does; the answer; other right answers)
    ('The fish swam in the', 'water', 'pond sea river lake'),
    ('The bird flew high up in the', 'sky', ''),
    ('The monkey climbed up the tall', 'tree', ''),
    ('The frog jumped into the', 'pond', 'water lake river'),
    ('The bee made sweet', 'honey', ''),
    ('Every morning, the hen laid a new', 'egg', ''),
    ('The cow gave the farmer fresh', 'milk', ''),
    ('The spider spun a', 'web', ''),
    ('The little mouse nibbled on a piece of', 'cheese', 'bread'),
    ('The rabbit ate a crunchy orange', 'carrot', ''),
    ('The dog chewed on a big', 'bone', 'stick'),
    ('The squirrel hid a', 'nut', 'acorn'),
    ('The cow ate the green', 'grass', ''),
    ('In winter, the bear slept in its', 'cave', 'den'),
    ('The camel walked across the hot', 'desert', 'sand'),
    ('The owl stayed awake all', 'night', ''),
]
SOUNDS = {'cow': 'Moo', 'dog': 'Woof', 'cat': 'Meow', 'duck': 'Quack', 'sheep': 'Baa', 'pig': 'Oink',
          'lion': 'Roar', 'owl': 'Hoot', 'frog': 'Ribbit', 'horse': 'Neigh', 'mouse': 'Squeak',
          'snake': 'Hiss', 'bee': 'Buzz'}
COLOUR_OF = [  # (thing, its colour, other right colours)
    ('banana', 'yellow', 'green'), ('lemon', 'yellow', 'green'), ('strawberry', 'red', ''),
    ('tomato', 'red', 'green'), ('cherry', 'red', 'black'), ('carrot', 'orange', ''),
    ('pumpkin', 'orange', ''), ('grass', 'green', ''), ('frog', 'green', 'brown'),
    ('snow', 'white', ''), ('milk', 'white', ''), ('cloud', 'white', ''), ('sky', 'blue', ''),
    ('sea', 'blue', 'green'), ('coal', 'black', ''), ('crow', 'black', ''), ('pig', 'pink', ''),
    ('chocolate', 'brown', 'black white'), ('flamingo', 'pink', ''), ('sun', 'yellow', 'orange red white'),
]
NEEDS = [  # (how a child feels, what they want to do, also right)
    ('hungry', 'eat', ''), ('thirsty', 'drink', ''), ('tired', 'sleep', 'rest'),
    ('sleepy', 'sleep', 'rest'), ('cold', 'get warm', ''), ('dirty', 'take a bath', 'wash'),
]
TOOLS = [  # (a task, the thing to do it with, also right)
    ('cut the paper', 'scissors', 'knife'), ('write a letter', 'pencil', 'pen crayons'),
    ('sweep the floor', 'broom', ''), ('dig in the sand', 'shovel', 'hands'),
    ('brush {her} teeth', 'toothbrush', ''), ('open the locked door', 'key', ''),
    ('see in the dark', 'flashlight', 'lamp'), ('stay dry in the rain', 'umbrella', 'raincoat boots'),
    ('fix the broken chair', 'hammer', 'tools'), ('catch a fish', 'fishing rod', 'net'),
    ('wash {her} hands', 'soap', 'towel'), ('paint a picture', 'paintbrush', 'paints crayons'),
]
OPPOSITES = [  # (thing, adjective, other thing, the opposite, also right)
    ('elephant', 'big', 'mouse', 'small', 'little tiny quiet light fast short'),
    ('giraffe', 'tall', 'duck', 'short', 'small little light wet loud'),
    ('rabbit', 'fast', 'turtle', 'slow', 'small short quiet wet'), ('snail', 'slow', 'horse', 'fast', 'big tall loud'),
    ('fire', 'hot', 'ice', 'cold', 'wet bright light'), ('soup', 'hot', 'ice cream', 'cold', 'wet'),
    ('rock', 'heavy', 'feather', 'light', 'small soft dry clean'), ('drum', 'loud', 'flute', 'quiet', 'small light'),
    ('sea', 'wet', 'sand', 'dry', 'hot'), ('red box', 'full', 'blue box', 'empty', 'light open'),
    ('day', 'bright', 'night', 'dark', 'cold quiet'), ('red door', 'open', 'blue door', 'closed', 'shut'),
    ('new shoe', 'clean', 'old shoe', 'dirty', 'old'),
]
BODY = [  # (what we do, what with, also right; what you cannot do when it is covered)
    ('see', 'eyes', ''), ('hear', 'ears', ''), ('smell', 'nose', ''), ('walk', 'feet', 'legs'),
    ('taste', 'tongue', 'mouth'), ('clap', 'hands', ''),
]
NATURE = [  # (prompt, the right word, also right)
    ('At night, {name} looked up at the dark sky and saw the', 'moon', 'stars'),
    ('The sky was blue, and the bright yellow', 'sun', ''),
    ('It was winter, and everything outside was covered in white', 'snow', ''),
    ('After the rain, the sun came out and {name} saw a beautiful', 'rainbow', ''),
    ('Dark clouds filled the sky, and soon there were drops of', 'rain', 'water'),
    ('The wind blew hard and the leaves fell from the', 'trees', ''),
    ('{name} planted a seed in the ground, and soon it grew into a', 'flower', 'plant tree'),
]


def from_table(table, rng, frame):
    """A fact item: pick a fact, fill it in, distractors from the other facts' answers."""
    prompt, answer, also = rng.choice(table)
    pool = sorted({row[1] for row in table})
    wrong = others(rng, pool, {answer} | set(also.split()), DISTRACTORS)
    return frame(prompt), answer, wrong


def k_animal_does(rng):
    name = person(rng)['name']
    frames = [lambda p: p, lambda p: f"{name} looked and saw that {p[0].lower() + p[1:]}"]
    return from_table(ANIMAL_DOES, rng, rng.choice(frames)) + ('.',)


def k_sound(rng):
    animal = rng.choice(sorted(SOUNDS))
    frame = rng.choice(['The {a} opened its mouth and said,',
                        '{name} went to see the {a}. The {a} said,',
                        '"What does the {a} say?" asked {name}. Mom smiled and said,'])
    wrong = others(rng, [SOUNDS[x] for x in sorted(SOUNDS)], {SOUNDS[animal]}, DISTRACTORS)
    return (frame.format(a=animal, name=person(rng)['name']), '"' + SOUNDS[animal],
            ['"' + w for w in wrong], '!"')


def k_colour(rng):
    thing, colour, also = rng.choice(COLOUR_OF)
    c, p = rng.randrange(3), person(rng)
    prompt = [f"{p['name']} looked at the {thing}. It was",
              f'"What colour is the {thing}?" asked {p["name"]}. Dad said, "It is',
              f"{p['name']} drew the {thing} with a crayon. {p['She']} picked the crayon that was"][c]
    pool = sorted({c for _, c, _ in COLOUR_OF})  # colours that are answers too: no word is only ever wrong
    wrong = others(rng, pool, {colour} | set(also.split()), DISTRACTORS)
    return prompt, colour, wrong, '."' if c == 1 else '.'


def k_need(rng):
    state, want, also = rng.choice(NEEDS)
    p, c = person(rng), rng.randrange(2)
    prompt = [f"{p['name']} was very {state}, so {p['she']} wanted to",
              f"{p['name']} was {state}. {p['She']} said, \"I want to"][c]
    wrong = others(rng, sorted({w for _, w, _ in NEEDS}), {want} | set(also.split()), DISTRACTORS)
    return prompt, want, wrong, '."' if c else '.'


def k_tool(rng):
    task, tool, also = rng.choice(TOOLS)
    p = person(rng)
    prompt = f"{p['name']} wanted to {task.format(her=p['her'])}, so {p['she']} got {p['her']}"
    wrong = others(rng, sorted({t for _, t, _ in TOOLS}), {tool} | set(also.split()), DISTRACTORS)
    return prompt, tool, wrong, '.'


def k_opposite(rng):
    x, adj, y, opp, also = rng.choice(OPPOSITES)
    p = person(rng)
    c = rng.randrange(2)
    prompt = [f"The {x} was {adj}, but the {y} was",
              f"{p['name']} said, \"The {x} is {adj}, but the {y} is"][c]
    pool = sorted({row[3] for row in OPPOSITES})
    wrong = [adj] + others(rng, pool, {adj, opp} | set(also.split()), DISTRACTORS - 1)
    return prompt, opp, wrong, '."' if c else '.'


def k_body(rng):
    verb, part, also = rng.choice(BODY)
    p = person(rng)
    c = rng.randrange(2)
    prompt = [f"{p['name']} learned that we {verb} with our",
              f"\"What do we {verb} with?\" asked {p['name']}. Mom said, \"With our"][c]
    wrong = others(rng, sorted({b for _, b, _ in BODY}), {part} | set(also.split()), DISTRACTORS)
    return prompt, part, wrong, '."' if c else '.'


def k_nature(rng):
    prompt, word, also = rng.choice(NATURE)
    wrong = others(rng, sorted({w for _, w, _ in NATURE}), {word} | set(also.split()), DISTRACTORS)
    return prompt.format(name=person(rng)['name']), word, wrong, '.'


# ----------------------------------------------------------------------------- reasoning and context
# These two categories are built so that copying from the prompt cannot pass them: all four
# candidates appear in the prompt, equally often, and the answer's place among them (the slot:
# which candidate is mentioned last) cycles 0, 1, 2, 3 through the set, so "pick the most
# frequent" and "pick the last mentioned" both score chance (25%). Only tracking who has what
# (context) or taking one step from what the prompt says (reasoning) picks the right one.
ORDINALS = ['first', 'second', 'third', 'last']


def fifth(rng, four):
    """A person who is not one of the candidates (names are candidates in some templates)."""
    return person(rng, avoid=[p['name'] for p in four])


def listing(parts):
    """'a, b, c and d'."""
    return ', '.join(parts[:-1]) + ' and ' + parts[-1]


def pick(candidates, slot):
    """The answer (the candidate at slot) and the distractors (the others, in order)."""
    return candidates[slot], candidates[:slot] + candidates[slot + 1:]


def with_answer_at(rng, rows, is_answer, slot):
    """rows shuffled so that the one row is_answer picks sits at position slot."""
    right = [r for r in rows if is_answer(r)]
    rest = [r for r in rows if not is_answer(r)]
    rng.shuffle(rest)
    return rest[:slot] + right + rest[slot:]


def r_age(rng, slot):
    kids = people(rng, 4)
    ages = rng.sample(range(2, 10), 4)
    oldest = rng.random() < 0.5
    target = max(ages) if oldest else min(ages)
    rows = with_answer_at(rng, list(zip(kids, ages)), lambda r: r[1] == target, slot)
    prompt = (f"{rows[0][0]['name']} is {NUMBERS[rows[0][1]]} years old, " +
              listing([f"{p['name']} is {NUMBERS[a]}" for p, a in rows[1:]]) +
              f". The {'oldest' if oldest else 'youngest'} of them is")
    return (prompt, *pick([p['name'] for p, _ in rows], slot), '.')


SIZE_TIERS = [['ant', 'bee', 'bug'], ['mouse', 'frog', 'fish'], ['cat', 'bunny', 'duck'],
              ['dog', 'goat', 'sheep'], ['horse', 'cow', 'bear'], ['elephant', 'whale', 'giraffe']]


def r_size(rng, slot):
    kids = people(rng, 4)
    tiers = rng.sample(range(len(SIZE_TIERS)), 4)
    biggest = rng.random() < 0.5
    target = max(tiers) if biggest else min(tiers)
    rows = with_answer_at(rng, list(zip(kids, tiers)), lambda r: r[1] == target, slot)
    prompt = (listing([f"{p['name']} drew {article(rng.choice(SIZE_TIERS[t]))}" for p, t in rows]) +
              f". The {'biggest' if biggest else 'smallest'} animal was drawn by")
    return (prompt, *pick([p['name'] for p, _ in rows], slot), '.')


def r_exchange(rng, slot):
    kids, toys = people(rng, 4), rng.sample(TOYS, 4)
    other = rng.choice([i for i in range(4) if i != slot])
    prompt = (listing([f"{p['name']} had {article(t)}" for p, t in zip(kids, toys)]) +
              f". {kids[other]['name']} and {kids[slot]['name']} swapped toys. Now "
              f"{kids[other]['name']} had the")
    return (prompt, *pick(toys, slot), '.')


FELT = {  # (what happened, how it made the child feel): one feeling each, no two alike
    'happy': 'got a new {toy} for {her} birthday', 'scared': 'heard a loud noise in the dark',
    'sleepy': 'played outside all day and stayed up late', 'hungry': 'did not eat anything all day',
    'sad': 'lost {her} {toy} and could not find it'}


def r_feeling(rng, slot):
    kids, feelings = people(rng, 4), rng.sample(sorted(FELT), 4)
    events = [FELT[f].format(toy=rng.choice(TOYS), her=p['her']) for p, f in zip(kids, feelings)]
    prompt = (listing([f"{p['name']} {e}" for p, e in zip(kids, events)]) +
              f". The one who felt {feelings[slot]} was")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


NEED = {'hungry': 'ate some food', 'thirsty': 'drank some water', 'tired': 'went to sleep',
        'cold': 'put on a warm coat', 'dirty': 'took a bath'}


def r_need(rng, slot):
    kids, states = people(rng, 4), rng.sample(sorted(NEED), 4)
    prompt = (listing([f"{p['name']} was {s}" for p, s in zip(kids, states)]) +
              f". One of them {NEED[states[slot]]}. It was")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


def r_none_left(rng, slot):
    """Each food twice: once as a wish, once as gone or left (the 'either ... or ..., not ...' form)."""
    p, foods = person(rng), rng.sample(FOODS, 4)
    wished = foods[:]
    rng.shuffle(wished)
    said = with_answer_at(rng, foods, lambda f: f == foods[0], slot)
    clauses = [f"there was one {f} left" if f == foods[0] else f"there were no {plural(f)} left" for f in said]
    prompt = (f"{p['name']} wanted {', '.join(article(f) for f in wished[:-1])} or {article(wished[-1])}. "
              f"{clauses[0][0].upper() + clauses[0][1:]}, {listing(clauses[1:])}. So {p['she']} took the")
    return prompt, foods[0], foods[1:], '.'


def r_tool(rng, slot):
    kids = people(rng, 4)
    rows = rng.sample(TOOLS, 4)
    while any(t in also.split() for _, _, also in rows for _, t, _ in rows):
        rows = rng.sample(TOOLS, 4)  # no tool also does another chosen task
    asker = fifth(rng, kids)
    prompt = (listing([f"{p['name']} had {article(t)}" for p, (_, t, _) in zip(kids, rows)]) +
              f". {asker['name']} wanted to {rows[slot][0].format(her=asker['her'])}, so "
              f"{asker['she']} asked")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


# ----------------------------------------------------------------------------- context tracking
def c_location(rng, slot):
    a, toys, boxes = person(rng), rng.sample(TOYS, 4), rng.sample(CONTAINERS, 4)
    prompt = (f"{a['name']} put " + listing([f"the {t} in the {b}" for t, b in zip(toys, boxes)]) +
              f". Later, {a['she']} wanted to play with the {toys[slot]}, so {a['she']} looked in the")
    return (prompt, *pick(boxes, slot), '.')


def c_owner(rng, slot):
    kids, toys = people(rng, 4), rng.sample(TOYS, 4)
    asker = fifth(rng, kids)
    prompt = (listing([f"{p['name']} had {article(t)}" for p, t in zip(kids, toys)]) +
              f". {asker['name']} wanted to play with the {toys[slot]}, so {asker['she']} asked")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


def c_colour(rng, slot):
    a, toys, colours = person(rng), rng.sample(TOYS, 4), rng.sample(COLOURS, 4)
    prompt = (f"{a['name']} had " + listing([f"{article(c)} {t}" for c, t in zip(colours, toys)]) +
              f". {a['Her']} {toys[slot]} was")
    return (prompt, *pick(colours, slot), '.')


def c_pet(rng, slot):
    a, pets, names = person(rng), rng.sample(PETS, 4), rng.sample(PET_NAMES, 4)
    prompt = (f"{a['name']} had four pets: " + listing([f"{article(p)} named {n}" for p, n in zip(pets, names)]) +
              f". {a['She']} called \"{names[slot]}!\" and {a['her']} little")
    return (prompt, *pick(pets, slot), '.')


MADE = [('baked a cake', 'cake'), ('painted a picture', 'picture'), ('built a sand castle', 'castle'),
        ('wrote a song', 'song'), ('made a card', 'card'), ('drew a map', 'map'), ('built a tower', 'tower')]


def c_maker(rng, slot):
    kids, made = people(rng, 4), rng.sample(MADE, 4)
    prompt = (listing([f"{p['name']} {m}" for p, (m, _) in zip(kids, made)]) +
              f". The {made[slot][1]} was made by")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


def c_order(rng, slot):
    a, foods = person(rng), rng.sample(FOODS, 4)
    prompt = (f"{a['name']} ate the {foods[0]} first, then the {foods[1]}, then the {foods[2]}, and "
              f"the {foods[3]} last. The {ORDINALS[slot]} thing {a['she']} ate was the")
    return (prompt, *pick(foods, slot), '.')


def c_gift(rng, slot):
    toys = rng.sample(TOYS, 4)
    kids = people(rng, 5)
    giver, kids = kids[0], kids[1:]
    prompt = (f"{giver['name']} gave away {giver['her']} toys: " +
              listing([f"the {t} to {p['name']}" for t, p in zip(toys, kids)]) +
              f". Now the {toys[slot]} belonged to")
    return (prompt, *pick([p['name'] for p in kids], slot), '.')


def c_place(rng, slot):
    kids, places = people(rng, 4), rng.sample(PLACES, 4)
    prompt = (listing([f"{p['name']} went to the {pl}" for p, pl in zip(kids, places)]) +
              f". {kids[slot]['name']} had a fun day at the")
    return (prompt, *pick(places, slot), '.')


def c_choice(rng, slot):
    """The paper's form ("either a cat or a dog ... didn't let her get a dog, so instead ..."),
    with four pets each named twice: once as a wish, once as refused or allowed."""
    a, pets = person(rng), rng.sample(PETS, 4)
    wished = pets[:]
    rng.shuffle(wished)
    said = with_answer_at(rng, pets, lambda p: p == pets[0], slot)
    clauses = [f"yes to the {p}" if p == pets[0] else f"no to the {p}" for p in said]
    prompt = (f"{a['name']} wanted either {', '.join(article(p) for p in wished[:-1])} or "
              f"{article(wished[-1])}. Mom said {listing(clauses)}. So {a['she']} got the")
    return prompt, pets[0], pets[1:], '.'


TEMPLATES = {
    'knowledge': [k_animal_does, k_sound, k_colour, k_need, k_tool, k_opposite, k_body, k_nature],
    'reasoning': [r_age, r_size, r_exchange, r_feeling, r_need, r_none_left, r_tool],
    'context': [c_location, c_owner, c_colour, c_pet, c_maker, c_order, c_gift, c_place, c_choice],
}


def generate_probes(seed=1, per_category=250):
    """per_category items of each category, deterministic per seed: templates in turn, each
    filled from the seeded generator; a prompt already made is skipped, so no two items repeat."""
    rng = random.Random(seed)
    items = []
    for cat in CATEGORIES:
        seen, made, tries = set(), [], 0
        while len(made) < per_category:
            tries += 1
            if tries > 200 * per_category:
                raise SystemExit(f"error: cannot make {per_category} distinct {cat} items "
                                 f"(the templates run out): use a smaller --per_category")
            template = TEMPLATES[cat][tries % len(TEMPLATES[cat])]
            # the answer's slot cycles over the accepted items: copying scores chance exactly
            prompt, answer, wrong, end = template(rng) if cat == 'knowledge' else template(rng, len(made) % 4)
            cands = [answer] + list(wrong)
            assert len({c.lower() for c in cands}) == len(cands), (prompt, cands)
            if prompt in seen:
                continue
            seen.add(prompt)
            made.append({'id': f"{cat}-{len(made) + 1:03d}", 'category': cat, 'prompt': prompt,
                         'answer': answer + end, 'distractors': [w + end for w in wrong]})
        items += made
    return items


def probes_jsonl(items):
    return ''.join(json.dumps(it) + '\n' for it in items)


# ----------------------------------------------------------------------------- scoring
def load_probes(path):
    """Probe items: {"id", "category", "prompt", "answer", "distractors": [...]}."""
    from tinystories.jsonl import read_jsonl
    items = read_jsonl(path, missing_ok=False)
    if not items:
        raise SystemExit(f"error: probes file {path} is empty")
    for n, it in enumerate(items, 1):
        bad = not isinstance(it, dict) or [k for k in ('prompt', 'answer', 'distractors') if k not in it]
        if bad or not isinstance(it['distractors'], list) or not it['distractors'] or not all(
                isinstance(c, str) and c.strip() for c in [it['answer']] + it['distractors']):
            raise SystemExit(f"error: {path} item {n}: needs prompt, answer and a non-empty "
                             f"distractors list (non-empty strings)")
        it.setdefault('id', f"item-{n}")
        it.setdefault('category', 'uncategorised')
    return items


def continuation(prompt, candidate):
    """The text that follows the prompt: a candidate is a next word or phrase, joined with a
    space unless the prompt already ends in whitespace or an opening quote."""
    return candidate if not prompt or prompt[-1].isspace() or prompt[-1] == '"' else ' ' + candidate


@torch.no_grad()
def candidate_logprobs(model, pairs, batch_size=32):
    """Sum of log-probabilities and token count of each continuation given its context.

    pairs: [(context ids, continuation ids)]. Sequences are batched by length and right-padded
    (causal attention: padding after a token cannot change its logits). A sequence longer than
    the model's context keeps its last block_size tokens."""
    block = model.config.block_size
    device = next(model.parameters()).device
    seqs = []
    for ctx, cont in pairs:
        if not cont:
            raise ValueError("empty continuation")
        seq = (ctx + cont)[-(block + 1):]  # inputs are seq[:-1]: at most block_size of them
        seqs.append((seq, min(len(cont), len(seq) - 1)))
    results = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        T = max(len(seqs[i][0]) for i in chunk) - 1
        idx = torch.zeros(len(chunk), T, dtype=torch.long)
        tgt = torch.zeros(len(chunk), T, dtype=torch.long)
        for row, i in enumerate(chunk):
            seq = seqs[i][0]
            idx[row, :len(seq) - 1] = torch.tensor(seq[:-1])
            tgt[row, :len(seq) - 1] = torch.tensor(seq[1:])
        logits, _ = model(idx.to(device))
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt.to(device)[..., None])[..., 0]
        for row, i in enumerate(chunk):
            seq, n = seqs[i]
            results[i] = (logp[row, len(seq) - 1 - n:len(seq) - 1].sum().item(), n)
    return results


def normalise(logprob, n_tokens, text, norm):
    if norm == 'token':
        return logprob / n_tokens
    if norm == 'byte':
        return logprob / len(text.encode('utf-8'))
    return logprob


def stats(rows):
    """Accuracy with its binomial standard error, and chance (1 / candidates, averaged)."""
    n = len(rows)
    correct = sum(r['correct'] for r in rows)
    p = correct / n
    return {'items': n, 'correct': correct, 'accuracy': p, 'chance': sum(1 / r['candidates'] for r in rows) / n,
            'stderr': math.sqrt(p * (1 - p) / n)}


def run_probes(model, enc, items, norm='token', batch_size=32):
    """Score every item: the model picks the candidate with the highest normalised
    log-likelihood. Returns the report dict (per category and overall)."""
    if norm not in ('token', 'byte', 'none'):
        raise SystemExit(f"error: --probe_norm={norm!r}: use token, byte or none")
    pairs, where = [], []
    for k, it in enumerate(items):
        # stories were joined by start tokens in training: it is how the model knows a story starts
        ctx = [enc.start_token] + enc.encode(it['prompt'])
        for cand in [it['answer']] + list(it['distractors']):
            text = continuation(it['prompt'], cand)
            pairs.append((ctx, enc.encode_next(text)))
            where.append((k, text))
    per_item = [[] for _ in items]
    for (k, text), (lp, n) in zip(where, candidate_logprobs(model, pairs, batch_size)):
        per_item[k].append(normalise(lp, n, text, norm))
    rows = []
    for it, scores in zip(items, per_item):
        best = max(range(len(scores)), key=lambda c: scores[c])  # ties go to the first listed
        rows.append({'id': it['id'], 'category': it['category'], 'correct': best == 0,
                     'chosen': ([it['answer']] + list(it['distractors']))[best],
                     'answer': it['answer'], 'candidates': len(scores),
                     'scores': [round(s, 6) for s in scores]})
    cats = [c for c in CATEGORIES if any(r['category'] == c for r in rows)]
    cats += sorted({r['category'] for r in rows} - set(cats))  # users' own categories last
    return {'norm': norm, 'by_category': {c: stats([r for r in rows if r['category'] == c]) for c in cats},
            'overall': stats(rows), 'items': rows}


def probes_table(report):
    lines = [f"{'category':<12} {'items':>5} {'correct':>7} {'accuracy':>8} {'chance':>7} {'stderr':>7}"]
    for cat, s in list(report['by_category'].items()) + [('overall', report['overall'])]:
        lines.append(f"{cat:<12} {s['items']:>5} {s['correct']:>7} {s['accuracy']:>8.1%} "
                     f"{s['chance']:>7.1%} {s['stderr']:>7.1%}")
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- baselines
# What a model that does not read the prompt for meaning would score: if a baseline beats chance,
# the category can be passed without the ability it names.
UNIGRAMS = os.path.join(ROOT, 'eval', 'unigrams.json')
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def make_unigrams(text_path, min_count=3):
    """Word counts (lowercase, [a-z] words with an inner apostrophe) of a text file, for the
    frequency baseline; words seen fewer than min_count times are left out (counted as 0)."""
    import collections
    with open(text_path, encoding='utf-8') as f:
        counts = collections.Counter(WORD.findall(f.read().lower()))
    kept = {w: n for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count}
    return {'source': os.path.basename(text_path), 'sha256': file_sha256(text_path),
            'made_by': f"python -m tinystories.probes --unigram_source={os.path.basename(text_path)}",
            'words': sum(counts.values()), 'min_count': min_count, 'counts': kept}


def load_unigrams(path=UNIGRAMS):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)['counts']
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: unigram table {path} cannot be read ({type(e).__name__}): restore "
                         f"eval/unigrams.json or rebuild it with python -m tinystories.probes --unigram_source=...")


def file_sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def bare(candidate):
    """A candidate's words, without its ending, quotes or leading article: '"Moo!"' -> 'Moo'."""
    return re.sub(r'^(a|an|the)\s+', '', candidate.strip(' .,!?"\''), flags=re.I)


def mentions(prompt, candidate):
    """Where a candidate stands in the prompt: the offset of each mention (its plural counts)."""
    word = bare(candidate)
    forms = sorted({word, plural(word)}, key=len, reverse=True)
    return [m.start() for m in re.finditer(r'\b(?:' + '|'.join(map(re.escape, forms)) + r')\b', prompt, re.I)]


def credit(values):
    """The share of a pick by highest value that lands on candidate 0 (the answer), ties split."""
    best = max(values)
    tied = [i for i, v in enumerate(values) if v == best]
    return (0 in tied) / len(tied)


def baseline_credits(item, unigrams):
    """What each baseline earns on one item: {copy_most, copy_last, unigram}, 0..1."""
    cands = [item['answer']] + list(item['distractors'])
    where = [mentions(item['prompt'], c) for c in cands]
    freq = [sum(math.log1p(unigrams.get(w, 0)) for w in WORD.findall(bare(c).lower()))
            / max(1, len(WORD.findall(bare(c).lower()))) for c in cands]
    return {'copy_most': credit([len(m) for m in where]),
            'copy_last': credit([max(m, default=-1) for m in where]), 'unigram': credit(freq)}


BASELINES = ('copy_most', 'copy_last', 'unigram')


def probe_baselines(items, unigrams):
    """Per category: chance, and the accuracy of picking the candidate mentioned most often in
    the prompt, the one mentioned last, and the most frequent word in TinyStories text; with
    the standard error at chance, sqrt(c(1-c)/n), to read them against."""
    out = {}
    cats = list(dict.fromkeys(it['category'] for it in items))
    for cat in sorted(cats, key=lambda c: (c not in CATEGORIES, CATEGORIES.index(c) if c in CATEGORIES else 0, c)):
        mine = [it for it in items if it['category'] == cat]
        n = len(mine)
        chance = sum(1 / (1 + len(it['distractors'])) for it in mine) / n
        got = [baseline_credits(it, unigrams) for it in mine]
        out[cat] = {'items': n, 'chance': chance, 'stderr_at_chance': math.sqrt(chance * (1 - chance) / n),
                    **{b: sum(g[b] for g in got) / n for b in BASELINES}}
    return out


def baselines_table(baselines):
    lines = [f"{'baseline':<12} {'chance':>7} {'copy most':>9} {'copy last':>9} {'unigram':>8} {'stderr':>7}"]
    for cat, b in baselines.items():
        lines.append(f"{cat:<12} {b['chance']:>7.1%} {b['copy_most']:>9.1%} {b['copy_last']:>9.1%} "
                     f"{b['unigram']:>8.1%} {b['stderr_at_chance']:>7.1%}")
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- instruction following
def run_words(model, enc, path, template, max_new_tokens, temperature, seed, batch_size):
    """An offline check of instruction following: the fraction of required words that appear
    (words.word_used, the matcher generation validates with) in stories generated from `Words:`
    prompts. The paper graded its Instruct models with GPT-4 on every instruction (grade.py
    --instruct with a grader does that); this counts words only. A prompt too long for the
    context is marked, not scored."""
    from tinystories.completions import complete
    from tinystories.words import word_used
    from tinystories.jsonl import read_jsonl
    items = read_jsonl(path, missing_ok=False)
    if not items:
        raise SystemExit(f"error: words file {path} is empty")
    for n, it in enumerate(items, 1):
        if not isinstance(it, dict) or not isinstance(it.get('words'), list) or not it['words']:
            raise SystemExit(f"error: {path} item {n}: needs a non-empty \"words\" list")
    prompts = [[enc.start_token] + enc.encode(template.format(words=', '.join(it['words'])))
               for it in items]
    outs = complete(model, prompts, max_new_tokens, enc.stop_token, temperature, 0, seed, batch_size,
                    desc='instruct stories')
    rows = []
    for n, (it, out) in enumerate(zip(items, outs), 1):
        story = None if out is None else enc.decode(out)
        rows.append({'id': it.get('id', f"item-{n}"), 'words': it['words'], 'too_long': out is None,
                     'used': [w for w in it['words'] if story is not None and word_used(w, story)],
                     'story': story})
    scored = [r for r in rows if not r['too_long']]
    total = sum(len(r['words']) for r in scored)
    used = sum(len(r['used']) for r in scored)
    return {'prompts': len(scored), 'too_long': len(rows) - len(scored), 'words': total, 'used': used,
            'fraction': used / total if total else None, 'template': template, 'items': rows}


# ----------------------------------------------------------------------------- the generator's command line
if __name__ == '__main__':
    from tinystories.atomic_write import atomic_write
    if unigram_source:
        table = make_unigrams(unigram_source)
        atomic_write(unigram_out, json.dumps(table, indent=0) + '\n')
        print(f"wrote {len(table['counts'])} word counts of {unigram_source} to {unigram_out}")
        raise SystemExit(0)
    made = generate_probes(seed, per_category)
    atomic_write(out, probes_jsonl(made))
    print(f"wrote {len(made)} probes ({per_category} per category, seed {seed}) to {out}")
