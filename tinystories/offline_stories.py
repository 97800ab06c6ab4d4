"""
The offline story generator: short, simple, grammatical stories in the TinyStories style, made
from a story's words and features with no network, for the demo and the tests.

    story, summary = offline_story(spec)     # spec: generate_data.story_spec(seed, index)

A story is a hero, a thing (the noun, described by the adjective), a problem (a conflict with a
friend when the Conflict feature asks for one, otherwise a mishap) and an ending, happy or bad,
with each feature (Dialogue, Twist, BadEnding, MoralValue, Foreshadowing, Conflict) switched on or
off. Every sentence is drawn from a few alternatives by the spec's own random stream, so the same
spec always gives the same story and stories vary a lot. Its words: tinystories/words.py.
"""
NAMES_GIRL = ('Lily Mia Sue Amy Lucy Emma Anna Ella Zoe Kate Rose Ruby Daisy Molly Sara Jane Lila '
              'Maya Ivy Nora Bella Chloe Grace Hannah Sophie Tina Wendy Pam Kim Jill').split()
NAMES_BOY = ('Tim Ben Tom Max Sam Jack Leo Finn Jake Timmy Billy Joe Bob Dan Ned Oscar Leo Theo '
             'Noah Luke Eli Owen Henry Jim Ted Rex Milo Toby Alex Kevin').split()
KINDS = [('girl', 'f'), ('boy', 'm'), ('bunny', None), ('puppy', None), ('kitten', None),
         ('bear', None), ('duck', None), ('mouse', None), ('fox', None), ('bird', None),
         ('squirrel', None), ('frog', None), ('pig', None), ('lamb', None)]
TRAITS = ('happy curious kind cheerful brave shy playful gentle clever little sweet busy '
          'friendly silly careful').split()
PLACES = ['in the park', 'in the garden', 'in the forest', 'at the beach', 'in the big field',
          'in the backyard', 'at the playground', 'at the farm', 'in the meadow', 'on the hill',
          'by the pond', 'at the lake', 'at the zoo', 'in the woods', 'by the river']
HOBBIES = ['play with {his} toys', 'run in the grass', 'look at the clouds', 'sing songs',
           'draw pictures', 'pick flowers', 'jump in puddles', 'build with blocks',
           'read books with {his} mom', 'help {his} dad in the garden', 'watch the birds',
           'play hide and seek', 'swing on the swing', 'bake cookies with {his} grandma',
           'splash in the bath', 'dance to music', 'count the stars at night', 'ride {his} red bike',
           'make sand castles', 'feed the ducks', 'play ball with {his} friends', 'paint with bright colors']
HELPERS = ['mom', 'dad', 'grandma', 'grandpa', 'big sister', 'big brother']
WEATHER = ['The sun was shining and the birds were singing.', 'The sky was blue and the air was warm.',
           'It was a bright and sunny day.', 'A soft wind was blowing through the trees.',
           'There were big white clouds in the sky.', 'The grass was green and wet from the rain.',
           'It was a cold morning, and the ground was covered with frost.',
           'The leaves were red and yellow, and they fell down slowly.', 'Little bugs were buzzing in the flowers.',
           'The air smelled like rain and fresh grass.', 'It was warm, and the bees were busy.',
           'A little rain had fallen, and everything was shiny and wet.']
FEELINGS_GOOD = ['happy', 'glad', 'excited', 'proud', 'so happy']
FEELINGS_BAD = ['sad', 'upset', 'scared', 'worried', 'very sad']
MORALS = {
    'share': ['sharing is better than keeping things to yourself', 'it is good to share with friends',
              'playing together is more fun than playing alone'],
    'stuck': ['asking for help is a good thing to do', 'being patient can solve big problems',
              'friends can do hard things together'],
    'lost': ['it is important to take care of your things', 'you should always look carefully',
             'good friends help you when you are sad'],
    'broken': ['telling the truth is always the right thing', 'saying sorry can fix a friendship',
               'being gentle keeps things safe'],
    'taken': ['being kind to animals makes new friends', 'it is better to ask nicely than to be angry',
              'sharing can turn a problem into a friend'],
    'scared': ['being brave means trying even when you are scared', 'things are not always as scary as they look',
               'it is good to stay close to the people who love you'],
}
BAD_MORALS = {
    'taken': 'you should keep an eye on the things you love',
    'share': 'being greedy can make you lose what you want',
    'stuck': 'you should listen when someone tells you to be careful',
    'lost': 'you should keep your things close to you',
    'broken': 'you should be careful with things that can break',
    'scared': 'you should listen to your mom and dad when they warn you',
}


def article(word):
    """'a' or 'an', by the sound of the word's start (good enough for this vocabulary)."""
    w = word.lower()
    if w.startswith(('uni', 'use', 'usu', 'one')):
        return 'a'
    return 'an' if w[0] in 'aeiou' or w.startswith(('hour', 'honest')) else 'a'


class Character:
    def __init__(self, rng, avoid=None):
        kind, sex = rng.choice(KINDS)
        sex = sex or rng.choice('fm')
        names = NAMES_GIRL if sex == 'f' else NAMES_BOY
        self.name = rng.choice([n for n in names if n != avoid])
        self.kind = kind
        self.he, self.him, self.his = ('she', 'her', 'her') if sex == 'f' else ('he', 'him', 'his')
        self.He = self.he.capitalize()
        self.His = self.his.capitalize()


def offline_story(spec):
    """A short, simple, grammatical story from a spec's words and features: a hero, a thing,
    a problem (a conflict with a friend, or a mishap), and a happy or a bad ending, with the
    features switched on or off. Built from many small alternatives, so stories vary a lot."""
    rng = spec['rng']
    verb, noun, adj = spec['words']
    feats = set(spec['features'])
    dialogue, twist, bad = 'Dialogue' in feats, 'Twist' in feats, 'BadEnding' in feats
    moral, fore, conflict = 'MoralValue' in feats, 'Foreshadowing' in feats, 'Conflict' in feats
    hero = Character(rng)
    pal = Character(rng, avoid=hero.name)
    helper = rng.choice(HELPERS)
    at_place = rng.choice(PLACES)
    place = at_place.split(' ', 2)[2]   # 'in the park' -> 'park'
    thing = f'{adj} {noun}'
    a_thing = f'{article(adj)} {thing}'
    # the problem: a conflict with a friend when asked for, otherwise a mishap
    problem = 'share' if conflict and rng.random() < 0.6 else rng.choice(['stuck', 'lost', 'broken', 'scared', 'taken'])
    animal = rng.choice(['a naughty monkey', 'a big black crow', 'a hungry goat', 'a fast little dog',
                         'a sneaky squirrel', 'a silly seagull'])
    if conflict and problem != 'share':
        problem = rng.choice(['broken', 'share'])
    H, P = hero, pal
    n, pn = H.name, P.name
    say = lambda who, line: rng.choice([f'"{line}" said {who}.', f'{who} said, "{line}"'])  # noqa: E731

    paras = []
    # 1. who, where, and the verb
    intro = rng.choice([
        f'Once upon a time, there was a {rng.choice(TRAITS)} little {H.kind} named {n}.',
        f'Once upon a time, in a {rng.choice(["small", "quiet", "pretty", "sunny"])} town, there lived a {H.kind} called {n}.',
        f'One day, a {rng.choice(TRAITS)} {H.kind} named {n} woke up very early.',
        f'{n} was a {rng.choice(TRAITS)} little {H.kind} who lived in a {rng.choice(["small", "cozy", "big", "yellow"])} house.',
        f'There once was a little {H.kind} named {n}.',
        f'In a little house near the woods, there lived a {rng.choice(TRAITS)} {H.kind}. {H.His} name was {n}.',
        f'{n} was a little {H.kind} with a big smile.',
    ])
    hobby = rng.choice(HOBBIES).format(his=H.his)
    s = [intro, f'{H.He} loved to {hobby}.']
    s.append(rng.choice([
        f'But most of all, {H.he} liked to {verb}.',
        f'{H.He} also liked to {verb} with {H.his} friend {pn}, a {rng.choice(TRAITS)} {P.kind}.',
        f'Every day, {H.he} would {verb} with {H.his} {helper}.',
        f'{H.His} {helper} always said that {H.he} was very good at trying to {verb}.',
    ]))
    if fore:
        if problem in ('stuck', 'lost', 'broken', 'scared'):
            warn = {'stuck': 'Do not go too far', 'lost': 'Keep your things close',
                    'broken': 'Be gentle with your things', 'scared': 'Stay close to me'}[problem]
            s.append(f'{H.His} {helper} always told {H.him}, "{warn}, {n}."' if dialogue else
                     f'{H.His} {helper} always told {H.him} to be careful, but {n} did not always listen.')
        else:
            s.append(f'{n} did not know that this day would teach {H.him} something new.')
    paras.append(' '.join(s))

    # 2. the thing
    when = 'Later that morning' if 'woke up' in intro else rng.choice(['One day', 'One morning', 'One afternoon', 'The next day'])
    s = [f'{when}, {n} went to the {place} with {H.his} {helper}.', rng.choice(WEATHER)]
    s.append(rng.choice([
        f'Under a tree, {n} saw {a_thing}.',
        f'Near a big rock, {n} found {a_thing}.',
        f'There, {H.he} saw {a_thing} on the ground.',
        f'Soon {H.he} saw something strange. It was {a_thing}!',
    ]))
    s.append(rng.choice([
        f'{n} was {rng.choice(FEELINGS_GOOD)}. {H.He} had never seen anything like it.',
        f'{H.He} picked it up and looked at it for a long time.',
        f'It was the best thing {H.he} had ever seen.',
    ]))
    s.append(rng.choice([
        f'The {noun} was {adj}, and it felt {rng.choice(["soft", "smooth", "warm", "cool", "funny"])} in {H.his} hands.',
        f'{H.He} ran to show it to {H.his} {helper}.',
        f'{H.He} held it close and smiled.',
        f'{H.He} turned it around and looked at every side of it.',
    ]))
    if dialogue:
        s.append(say(n, rng.choice([f'Look at this {noun}! Can I keep it?', f'Wow, what {a_thing}!',
                                    f'I want to {verb} with this {noun}!'])))
        s.append(say(f'{H.His} {helper}', rng.choice(['Yes, but be careful with it.', 'It is very nice. Take good care of it.',
                                                      'Okay, but share it with your friends.'])))
    paras.append(' '.join(s))

    # the fun part: playing with the thing (and the verb again)
    s = [rng.choice([
        f'{n} played with the {noun} all morning.',
        f'For a long time, {n} and the {noun} had so much fun.',
        f'{n} took the {noun} everywhere {H.he} went.',
    ])]
    s.append(rng.choice([
        f'{H.He} tried to {verb} with it, and {H.he} laughed and laughed.',
        f'{H.He} showed {pn} how to {verb}, and {pn} clapped.',
        f'When {H.he} tried to {verb}, the {noun} seemed to help {H.him}.',
        f'{H.He} made up a game where you had to {verb} and then jump three times.',
    ]))
    s.append(rng.choice([
        f'The birds watched from the trees.', f'{H.His} {helper} sat on a bench and smiled.',
        f'Time went by very fast.', f'{n} thought it was the best day ever.',
        f'A little bird came to look, and then it flew away.',
    ]))
    if dialogue and rng.random() < 0.5:
        s.append(say(pn, rng.choice([f'What a {adj} {noun}!', f'Can I see it, {n}?', 'That looks like fun!'])))
    paras.append(' '.join(s))

    # 3. the problem
    s = []
    if problem == 'share':
        s.append(f'Then {pn} the {P.kind} came to the {place}. {pn} saw the {noun} and wanted it too.')
        if dialogue:
            s.append(say(pn, f'Give me the {noun}! I want to play with it!'))
            s.append(say(n, f'No, it is mine! I found it first.'))
        else:
            s.append(f'{pn} asked for the {noun}, but {n} said no. {H.He} wanted to keep it all for {H.him}self.')
        s.append(f'They both pulled and pulled. They were both {rng.choice(["angry", "upset", "mad"])}.')
    elif problem == 'stuck':
        s.append(rng.choice([f'Then the wind blew, and the {noun} flew up into a tall tree.',
                             f'Then {n} threw the {noun} up high, and it got stuck on a branch.',
                             f'Then the {noun} rolled away and fell into the pond.']))
        s.append(f'{n} tried to reach it, but {H.he} was too small.')
        if dialogue:
            s.append(say(n, 'Oh no! How can I get it back?'))
    elif problem == 'lost':
        s.append(f'{n} played and played. When {H.he} wanted to {verb} again, the {noun} was gone!')
        s.append(f'{H.He} looked under the bench and behind the tree, but {H.he} could not find it.')
        if dialogue:
            s.append(say(n, f'Where is my {noun}?'))
    elif problem == 'broken':
        s.append(f'{n} wanted to show the {noun} to {pn}. But {H.he} ran too fast, and {H.he} fell down.')
        s.append(f'The {noun} hit the ground and it broke!')
        if dialogue:
            s.append(say(n, f'Oh no, my {noun}!'))
    elif problem == 'taken':
        s.append(f'Suddenly, {animal} came by. It grabbed the {noun} and took it away!')
        s.append(rng.choice([f'{n} ran after it as fast as {H.he} could.', f'{n} could not believe it.']))
        if dialogue:
            s.append(say(n, f'Stop! Come back with my {noun}!'))
    else:  # scared
        s.append(rng.choice(['Suddenly, there was a loud noise behind the bushes.',
                             'Then the sky got dark, and a big storm began.',
                             'Then a big dog ran out from behind the trees.']))
        s.append(f'{n} was scared. {H.He} held the {noun} very tight.')
        if dialogue:
            s.append(say(n, f'I am scared! {helper.capitalize()}, where are you?'))
    if twist:
        s.append(rng.choice([
            f'But then something surprising happened. The {noun} began to glow, and a tiny voice said hello.'
            if dialogue else f'But then something surprising happened. The {noun} began to glow and sing a little song.',
            f'But then {n} saw something {H.he} did not expect. It was not {H.his} {noun} at all. It was {pn}\'s {noun}, and {pn} had lost it!',
            f'But the big surprise was that the {noun} was not {adj} at all. It was just dirty!',
        ]))
    paras.append(' '.join(s))

    # 4. the ending
    s = []
    if not bad:
        fix = {
            'share': [f'Then {n} had an idea. They could {verb} with the {noun} together!',
                      f'{n} stopped pulling and gave the {noun} to {pn}. {pn} smiled and asked {H.him} to play too.'],
            'stuck': [f'{n} asked {H.his} {helper} for help. {H.His} {helper} got a long stick and got the {noun} back.',
                      f'{pn} the {P.kind} came to help. {P.He} climbed up and got the {noun} back.'],
            'lost': [f'{pn} the {P.kind} helped {n} look. At last, they found the {noun} under some leaves.',
                     f'{n} looked one more time, and there it was, next to {H.his} {helper}!'],
            'broken': [f'{n} told {H.his} {helper} what happened. Together they fixed the {noun} with some glue.',
                       f'{pn} said sorry for making {n} run, and they fixed the {noun} together.'],
            'taken': [f'{n} did not get angry. {H.He} gave the animal a piece of bread, and it dropped the {noun}.',
                      f'The animal only wanted to play. It brought the {noun} back, and now {n} had a new friend.'],
            'scared': [f'Then {H.his} {helper} came and gave {n} a big hug. It was only a little cat!',
                       f'{n} was brave. {H.He} stayed still, and soon everything was quiet again.'],
        }[problem]
        s.append(rng.choice(fix))
        if dialogue:
            s.append(say(n, rng.choice(['Thank you!', 'I am so happy now!', f'Let\'s {verb} together every day!'])))
        s.append(rng.choice([f'{n} and {pn} played until the sun went down.',
                             f'From that day on, {n} always took good care of the {noun}.',
                             f'{n} went home with a big smile on {H.his} face.',
                             f'That night, {n} went to bed {rng.choice(FEELINGS_GOOD)}.',
                             f'It was the best day, and {n} never forgot it.',
                             f'When they got home, {n} told everyone about the {adj} {noun}.']))
        if moral:
            s.append(f'{n} learned that {rng.choice(MORALS[problem])}.')
    else:
        end = {
            'share': f'They pulled so hard that the {noun} broke into pieces. Now nobody could {verb} with it.',
            'stuck': f'{n} tried and tried, but {H.he} could not get the {noun} back. {H.He} had to go home without it.',
            'lost': f'They looked until it was dark, but the {noun} was gone forever.',
            'broken': f'{H.His} {helper} tried to fix it, but the {noun} was broken for good.',
            'scared': f'{n} ran home so fast that {H.he} dropped the {noun}, and {H.he} never saw it again.',
            'taken': f'The animal ran into the trees, and the {noun} was gone. {n} never got it back.',
        }[problem]
        s.append(end)
        s.append(f'{n} was {rng.choice(FEELINGS_BAD)}. {H.He} cried all the way home.')
        if dialogue:
            s.append(say(f'{H.His} {helper}', rng.choice(['I am sorry, my dear.', 'Next time, please be more careful.'])))
        if moral:
            s.append(f'{n} learned that {BAD_MORALS[problem]}.')
    paras.append(' '.join(s))
    story = '\n\n'.join(paras)

    ending = 'and it ends sadly' if bad else 'and it ends happily'
    what = {'share': f'{pn} wants it too', 'stuck': 'it gets stuck', 'lost': 'it gets lost',
            'broken': 'it breaks', 'scared': f'something scares {H.him}',
            'taken': f'{animal} takes it'}[problem]
    summary = f'A little {H.kind} named {n} finds {a_thing} {at_place}, but {what}, {ending}.'
    return story, summary
