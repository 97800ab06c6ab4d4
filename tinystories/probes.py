"""
Offline probes of what a model knows, in the spirit of the TinyStories paper's Figures 9-11:
knowledge (facts a children's story relies on), reasoning (a step from what the prompt says) and
context tracking (who has what, where things are). Each item is a prompt with one right
continuation and distractors; the model "answers" with the candidate it finds most likely, per
token (length-normalised log-likelihood), so no sampling and no grader is involved.

This file holds both halves:
1. the probe-set generator: seeded templates and small hand-written fact tables, varied in
   names, objects, places and order. The repo's eval/probes.jsonl is its output, and a test
   checks that it is reproduced byte for byte:

       python -m tinystories.probes --seed=1 --per_category=250 --out=eval/probes.jsonl

2. the scoring engine grade.py --probes calls: run_probes() batches every (prompt, candidate)
   pair through the model, and reports accuracy per category with its binomial standard error
   sqrt(p(1-p)/n), beside chance (1 / candidates).
"""
import json
import math
import os
import random

import torch

from tinystories.configurator import Key, configure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo (this file is in tinystories/)

# -----------------------------------------------------------------------------
seed = Key(1, "seeds the generator: the same seed makes the same probes")
per_category = Key(250, "probes per category", min=1)
out = Key(os.path.join(ROOT, 'eval', 'probes.jsonl'), "the JSON Lines file to write")
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
NUMBERS = 'zero one two three four five six'.split()


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


# ----------------------------------------------------------------------------- reasoning
def r_exchange(rng):
    a, b = people(rng, 2)
    x, y, z = rng.sample(TOYS, 3)
    prompt = (f"{a['name']} told {b['name']}, \"If you give me your {x}, I will give you my {y}.\" "
              f"{b['name']} gave {a['name']} the {x}, so {a['name']} gave {b['name']} the")
    return prompt, y, [x, z, rng.choice([t for t in TOYS if t not in (x, y, z)])], '.'


def r_none_left(rng):
    p = person(rng)
    x, y = rng.sample(FOODS, 2)
    prompt = f"{p['name']} wanted {article(x)} or {article(y)}. There were no {plural(y)} left, so {p['she']} took"
    wrong = [y] + others(rng, FOODS, {x, y}, DISTRACTORS - 1)
    return prompt, article(x), [article(w) for w in wrong], '.'


def r_race(rng):
    a, b, c = people(rng, 3)
    faster = rng.random() < 0.5
    prompt = (f"{a['name']} runs {'faster' if faster else 'slower'} than {b['name']}. "
              f"They ran a race, and the winner was")
    win, lose = (a, b) if faster else (b, a)
    return prompt, win['name'], [lose['name'], c['name'], person(rng, avoid=[a['name'], b['name'], c['name']])['name']], '.'


def r_age(rng):
    a, b, c = people(rng, 3)
    i, j = rng.sample(range(2, 7), 2)
    which = rng.choice(['older', 'younger'])
    prompt = (f"{a['name']} is {NUMBERS[i]} years old and {b['name']} is {NUMBERS[j]} years old. "
              f"The {which} one is")
    right = a if (i > j) == (which == 'older') else b
    wrong = b if right is a else a
    d = person(rng, avoid=[a['name'], b['name'], c['name']])
    return prompt, right['name'], [wrong['name'], c['name'], d['name']], '.'


def r_count(rng):
    p, q = people(rng, 2)
    thing, n = rng.choice(FOODS), rng.randrange(2, 5)
    more = rng.random() < 0.5
    prompt = (f"{p['name']} had {count(n, thing)}. " +
              (f"{q['name']} gave {p['him']} one more. " if more else f"{p['She']} gave one to {q['name']}. ") +
              f"Now {p['name']} had")
    m = n + 1 if more else n - 1
    wrong = [n] + rng.sample([k for k in range(1, 7) if k not in (n, m)], DISTRACTORS - 1)
    return prompt, count(m, thing), [count(k, thing) for k in wrong], '.'


FEELINGS = 'happy sad angry scared sleepy hungry'.split()
EVENTS = [  # (what happened, how the child felt, also right)
    ('{name} lost {her} {toy} and could not find it anywhere. {She} felt', 'sad', 'angry scared'),
    ('{name} found the {toy} {she} had lost. {She} felt', 'happy', ''),
    ('{name} got a new {toy} for {her} birthday. {She} felt', 'happy', ''),
    ('{other} broke {name}\'s {toy} on purpose. {name} felt', 'angry', 'sad'),
    ('{name} did not eat anything all day. At dinner, {she} was very', 'hungry', 'sad angry'),
    ('{name} played outside all day. At night, {she} was very', 'sleepy', 'hungry happy'),
    ('{name} heard a loud noise in the dark. {She} felt', 'scared', ''),
]
CONSEQUENCES = [  # (cause, effect, also right)
    ('{name} was very tired, so {she} went to bed to', 'sleep', 'rest'),
    ('{name} dropped the glass on the hard floor, and {she} saw it', 'break', 'fall'),
    ('The ice cream sat in the hot sun, so it began to', 'melt', ''),
    ('The box was too heavy for {name} to lift alone, so {she} asked {other} to', 'help', ''),
    ('{name} was thirsty, so {she} got a glass of water to', 'drink', ''),
    ('{name} was scared of the dark, so {she} turned on the light to', 'see', ''),
    ('{name} forgot to water the flower for many days, so the flower began to', 'die', 'droop'),
    ('{name} fell down and hurt {her} knee, so {she} started to', 'cry', ''),
]


def fill(text, rng):
    a, b = people(rng, 2)
    return text.format(name=a['name'], she=a['she'], She=a['She'], her=a['her'], other=b['name'],
                       toy=rng.choice(TOYS))


def r_feeling(rng):
    text, feeling, also = rng.choice(EVENTS)
    return fill(text, rng), feeling, others(rng, FEELINGS, {feeling} | set(also.split()), DISTRACTORS), '.'


def r_consequence(rng):
    text, effect, also = rng.choice(CONSEQUENCES)
    pool = sorted({e for _, e, _ in CONSEQUENCES})
    return fill(text, rng), effect, others(rng, pool, {effect} | set(also.split()), DISTRACTORS), '.'


def r_weather(rng):
    a = person(rng)
    bad = rng.choice(['raining hard', 'very cold', 'snowing', 'very windy', None, None])
    weather = f"but it was {bad}" if bad else rng.choice(['and the sun was shining', 'and it was warm'])
    prompt = f"{a['name']} wanted to play outside, {weather}. So {a['she']} played"
    right, wrong = ('inside', 'outside') if bad else ('outside', 'inside')
    return prompt, right, [wrong, 'in the sea', 'on the moon'], '.'


# ----------------------------------------------------------------------------- context tracking
def c_possession(rng):
    a, b = people(rng, 2)
    x, y, z = rng.sample(TOYS, 3)
    c1, c2 = rng.sample(COLOURS, 2)
    prompt = (f"{a['name']} had {article(c1)} {x} and {b['name']} had {article(c2)} {y}. "
              f"{b['name']} let {a['name']} play with {b['her']}")
    return prompt, y, [x, z, others(rng, TOYS, {x, y, z}, 1)[0]], '.'


def c_location(rng):
    a = person(rng)
    x = rng.choice(TOYS)
    box, *wrong = rng.sample(CONTAINERS, 1 + DISTRACTORS)
    prompt = (f"{a['name']} put {a['her']} {x} in the {box}. Later, {a['she']} wanted to play with "
              f"it, so {a['she']} looked in the")
    return prompt, box, wrong, '.'


def c_moved(rng):
    a, b = people(rng, 2)
    x = rng.choice(TOYS)
    first, then, *rest = rng.sample(CONTAINERS, 2 + DISTRACTORS - 1)
    prompt = (f"{a['name']} put the {x} in the {first}. Then {b['name']} moved the {x} to the "
              f"{then}. Now the {x} was in the")
    return prompt, then, [first] + rest, '.'


def c_gift(rng):
    a, b, c, d = people(rng, 4)
    x = rng.choice(TOYS)
    prompt = f"{a['name']} gave {a['her']} {x} to {b['name']}. Now the {x} belonged to"
    return prompt, b['name'], [a['name'], c['name'], d['name']], '.'


def c_choice(rng):
    a, b = people(rng, 2)
    p1, p2, *rest = rng.sample(PLACES, 2 + DISTRACTORS - 1)
    prompt = (f"{a['name']} and {b['name']} could not decide between the {p1} and the {p2}. "
              f"{a['name']} said, \"I want to go to the {p1}.\" {b['name']} said, \"I want to go to the")
    return prompt, p2, [p1] + rest, '."'


def c_pet(rng):
    a = person(rng)
    pet, *wrong = rng.sample(PETS, 1 + DISTRACTORS)
    n = rng.choice(PET_NAMES)
    prompt = (f"{a['name']} had a {pet} named {n}. One day, {n} ran away. {a['name']} looked "
              f"everywhere for {a['her']}")
    return prompt, pet, wrong, '.'


def c_family(rng):
    a = person(rng)
    p1, p2 = rng.choice([('mom', 'dad'), ('dad', 'mom'), ('grandma', 'grandpa'), ('grandpa', 'grandma'),
                         ('sister', 'brother'), ('brother', 'sister')])
    prompt = (f"{a['name']}'s {p1} was not home, but {a['her']} {p2} was. When {a['name']} came in, "
              f"{a['she']} said hello to {a['her']}")
    return prompt, p2, [p1] + others(rng, ['teacher', 'friend', 'dog', 'cat'], (), DISTRACTORS - 1), '.'


def c_colour(rng):
    a = person(rng)
    x, y = rng.sample(TOYS, 2)
    c1, c2, *rest = rng.sample(COLOURS, 2 + DISTRACTORS - 1)
    ask_first = rng.random() < 0.5
    prompt = (f"{a['name']} had {article(c1)} {x} and {article(c2)} {y}. "
              f"{a['Her']} {x if ask_first else y} was")
    right, wrong = (c1, c2) if ask_first else (c2, c1)
    return prompt, right, [wrong] + rest, '.'


MADE = [('baked a cake', 'cake'), ('painted a picture', 'picture'), ('built a sand castle', 'castle'),
        ('wrote a song', 'song'), ('made a card', 'card'), ('drew a map', 'map'), ('built a tower', 'tower')]


def c_maker(rng):
    a, b, c, d = people(rng, 4)
    (m1, t1), (m2, t2) = rng.sample(MADE, 2)
    first = rng.random() < 0.5
    prompt = f"{a['name']} {m1} and {b['name']} {m2}. The {t1 if first else t2} was made by"
    right, wrong = (a, b) if first else (b, a)
    return prompt, right['name'], [wrong['name'], c['name'], d['name']], '.'


def c_order(rng):
    a = person(rng)
    f1, f2, *rest = rng.sample(FOODS, 2 + DISTRACTORS - 1)
    last = rng.random() < 0.5
    prompt = (f"{a['name']} ate the {f1} first and the {f2} last. The {'last' if last else 'first'} "
              f"thing {a['she']} ate was the")
    right, wrong = (f2, f1) if last else (f1, f2)
    return prompt, right, [wrong] + rest, '.'


TEMPLATES = {
    'knowledge': [k_animal_does, k_sound, k_colour, k_need, k_tool, k_opposite, k_body, k_nature],
    'reasoning': [r_exchange, r_none_left, r_race, r_age, r_count, r_feeling, r_consequence, r_weather],
    'context': [c_possession, c_location, c_moved, c_gift, c_choice, c_pet, c_family, c_colour,
                c_maker, c_order],
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
            prompt, answer, wrong, end = TEMPLATES[cat][tries % len(TEMPLATES[cat])](rng)
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
    eot = enc.eot_token
    pairs, where = [], []
    for k, it in enumerate(items):
        # stories were joined by EOT in training, so EOT is how the model knows a story starts
        ctx = [eot] + enc.encode_ordinary(it['prompt'])
        for cand in [it['answer']] + list(it['distractors']):
            text = continuation(it['prompt'], cand)
            pairs.append((ctx, enc.encode_ordinary(text)))
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


# ----------------------------------------------------------------------------- instruction following
def run_words(model, enc, path, template, max_new_tokens, temperature, seed, batch_size):
    """Instruction following: the fraction of required words that appear (words.word_used,
    the matcher generation validates with) in stories generated from `Words:` prompts, as the
    paper checked its Instruct models. A prompt too long for the context is marked, not scored."""
    from tinystories.completions import complete
    from tinystories.words import word_used
    from tinystories.jsonl import read_jsonl
    items = read_jsonl(path, missing_ok=False)
    if not items:
        raise SystemExit(f"error: words file {path} is empty")
    for n, it in enumerate(items, 1):
        if not isinstance(it, dict) or not isinstance(it.get('words'), list) or not it['words']:
            raise SystemExit(f"error: {path} item {n}: needs a non-empty \"words\" list")
    prompts = [[enc.eot_token] + enc.encode_ordinary(template.format(words=', '.join(it['words'])))
               for it in items]
    outs = complete(model, prompts, max_new_tokens, enc.eot_token, temperature, 0, seed, batch_size,
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
    made = generate_probes(seed, per_category)
    atomic_write(out, probes_jsonl(made))
    print(f"wrote {len(made)} probes ({per_category} per category, seed {seed}) to {out}")
