"""
The vocabulary of generate_data.py: simple words a 3-4 year-old child knows, as in the
TinyStories paper (which drew a random noun, verb and adjective from about 1,500 basic words
for each prompt, so that the stories cover the whole vocabulary instead of a few favourites).

Written for this repo. Nouns are concrete things a story character can find, hold, see or
lose (so the offline generator can say "a shiny ball" about any of them); verbs are in their
base form ("jump"); adjectives describe how things look, feel or are.
"""
import re


NOUNS = """
ball doll kite toy car truck train boat plane bus bike wagon drum bell whistle block puzzle
balloon bubble crayon pencil book box bag basket bucket shovel cup bowl plate spoon fork
bottle jar lid key lock door window chair table bed pillow blanket lamp clock mirror brush
comb towel soap sock shoe boot hat cap coat scarf glove mitten dress shirt button zipper
pocket ring necklace crown wand cape mask umbrella rope ladder swing slide sandbox tent flag
map compass rocket robot puppet teddy marble yo-yo top whistle trumpet guitar piano flute
violin horn radio phone camera computer tablet sticker stamp card letter gift present ribbon
bow candle cake cookie cupcake pie muffin sandwich pizza apple banana orange pear grape
cherry peach plum lemon berry strawberry carrot potato tomato pea bean corn pumpkin onion
cucumber melon watermelon egg cheese bread biscuit cracker candy lollipop popsicle jelly
honey juice milk soup noodle pancake waffle sausage nut seed acorn pinecone leaf flower rose
daisy tulip sunflower tree bush branch stick twig log stone rock pebble shell feather nest
web mushroom puddle pond river lake hill mountain cave island beach wave boat castle tower
bridge house hut barn farm garden park zoo school shop store library playground fence gate
wall roof chimney path road street tunnel well fountain bench statue sign mailbox garage
kitchen bathroom bedroom attic basement closet cupboard drawer shelf oven stove fridge sink
tub bath pot pan kettle teapot jug tray napkin broom mop bin hose rake wheelbarrow seesaw
trampoline pool sled snowman snowball cloud rainbow star moon sun planet comet kitten cat
puppy dog bunny rabbit mouse rat hamster bird duck duckling chick chicken hen rooster goose
owl parrot penguin swan eagle robin crow frog toad fish goldfish turtle snail worm bug
beetle ant bee butterfly caterpillar ladybug spider dragonfly cow calf horse pony donkey
goat sheep lamb pig piglet bear cub lion tiger elephant monkey giraffe zebra hippo rhino
kangaroo koala panda fox wolf deer squirrel chipmunk hedgehog raccoon skunk badger beaver
otter seal whale dolphin shark octopus crab lobster starfish jellyfish dinosaur dragon
unicorn fairy giant elf king queen prince princess knight pirate wizard witch monster
ghost angel baker farmer doctor nurse teacher pilot sailor fireman policeman clown chef
painter dancer singer driver friend neighbor baby sister brother cousin uncle aunt grandma
grandpa mom dad bracelet badge medal trophy coin penny wallet purse jewel diamond pearl
treasure chest map shell tooth bone paw tail wing horn beak claw nose ear eye hand foot
finger toe knee elbow bandage blanket cradle crib stroller carriage cart tractor van taxi
ship submarine helicopter jet wheel engine motor battery light torch lantern match fire
campfire marshmallow hammer nail screw saw drill glue tape scissors paper paint brush
canvas picture photo poster frame basket carpet rug curtain sofa couch cushion shelf desk
backpack lunchbox notebook ruler eraser chalk board globe magnet telescope microscope
spoon cup straw plate mug bucket pail can jar box cage leash collar kennel doghouse bowl
hay straw seed sprout vine pumpkin apron mitt glove net fishing rod hook worm boat oar
paddle raft anchor sail lighthouse harbor dock sandcastle seashell towel sunglasses
airplane alligator ambulance anchor ant apron arrow axe backyard bagel balcony bandana banjo
barrel bat beanbag bee beehive belt berry bib birdhouse blender blossom bluebird bolt bonnet
bookcase bottlecap bouquet bowtie bracelet bread brick broccoli bucket buggy bulldozer bun
bunk burrow butter cabin cactus calendar camel canoe cardboard carrot cart castle caterpillar
cauliflower ceiling cereal chalkboard cheetah cherry chestnut chimney chin cocoon coconut
cone cookie cork corner costume cottage cowboy crane crate crayon cricket crocodile crow
crumb crystal cub cupboard daffodil dandelion den dice dish doorbell dough dove dragonfly
drawer dumpling earmuff easel eel envelope fairy fan faucet fern ferry field firefly
fireplace firetruck flamingo flashlight flowerpot footprint forest fossil frog garden
gecko gingerbread glass goblin goldfish gorilla gourd grasshopper gravy greenhouse guitar
gumdrop hairbrush hamburger hammock handle harp hatchet hay haystack headband heart hedge
helmet hilltop hive hoop hotdog hummingbird icicle igloo iguana jacket jeep jigsaw jungle
kayak kettle keyboard kiwi ladle lake lantern lasso lemonade leopard lettuce lizard llama
lobster locket lollipop magnet mailman mango mat meadow mitten mole moose moth motorcycle
mountain mud mug napkin necktie nest net nightlight noodle oak oatmeal orchard ornament
ostrich oven owl pajamas palace pancake parachute parrot pasta peacock peanut pebble pelican
pepper pet pickle picnic pinwheel pipe pitcher plum pocket pony popcorn porch postcard pot
pretzel puddle pumpkin puppy quilt rabbit raccoon raindrop raisin rattle reindeer ribbon
river rocket rooster ruler sack saddle salad sandal scarecrow scooter seagull seahorse
shed shell shovel sidewalk skateboard skirt sled slipper snail snowflake soccer spaceship
sparrow spider sponge spoon squirrel stable staircase stool stove strawberry sunflower
sweater swing tambourine teacup teapot tent tiger toaster toothbrush tortoise towel toybox
tractor treehouse tricycle trolley trumpet tulip turkey turnip tutu umbrella vase vest
volcano wagon walrus wand wardrobe washcloth waterfall whale wheel windmill wolf woodpecker
xylophone yard yarn zebra zipper
"""

VERBS = """
run jump hop skip walk climb crawl swim fly float dive slide swing spin roll bounce kick
throw catch push pull lift carry drop pick hold hug kiss wave clap point touch tickle
poke pat rub wash clean sweep scrub dry brush comb dress wear tie zip button fold hang
open close lock shut knock ring call shout yell sing hum whistle laugh giggle smile cry
sob sniff sneeze cough yawn sleep nap dream wake rest sit stand lie kneel bend stretch
reach grab squeeze shake stir pour mix bake cook fry boil taste eat chew bite lick sip
drink share give take bring fetch send find lose hide seek search look see watch peek
stare listen hear smell feel know think learn remember forget guess count read write
draw paint color cut glue build fix mend break crack tear rip drop spill splash drip
dig plant grow water pick bloom rake mow feed pet ride drive steer sail row paddle fish
camp explore travel visit follow lead chase race win lose play pretend dance march
stomp tiptoe sneak wiggle wobble tumble trip fall slip stumble skate ski sled surf
help save protect guard rescue comfort care love like want need wish hope try
practice play share thank greet welcome invite meet join wait hurry stop start begin
finish end leave return arrive enter escape hunt gather collect sort stack fill empty
pack unpack wrap unwrap decorate celebrate sparkle shine glow twinkle flash buzz
chirp bark meow moo quack roar growl hiss squeak purr howl oink neigh tweet flap
flutter scurry dash zoom rush stroll wander roam hike jog leap pounce crouch wriggle
snuggle cuddle kiss nod blink wink frown pout whisper talk say tell ask answer
explain agree argue fight forgive apologize promise trust believe worry fear scare
surprise cheer shout hurry worry wonder imagine invent discover notice show teach
measure weigh compare borrow lend buy sell pay order spend save earn keep store
melt freeze drip rain snow blow bloom fade shrink stretch stick spread sprinkle
chop slice peel mash grate squash crunch munch nibble gobble swallow toss scoop
shovel build stack balance hang swing knit sew weave patch glue tape clip staple
print type click press switch turn twist wind tap beat drum strum blow whistle
giggle tease hide shelter cover uncover bury dig sniff track trace follow
admire announce arrange attach bathe blush bow breathe chase cheer chop clap climb coast
crawl crow dangle decide deliver dip double drag dribble drown dust fasten fix flip float
fold frown gallop gasp glide grin groan hatch heal hop hover hunt itch juggle kneel knot
launch lean limp load marvel mix moan nestle obey open pack pant pedal perch pinch plop
pop pounce pray prance pretend protect puff pump punch quiver rattle relax repair rescue
rock rub sail scatter scratch scream shiver shuffle sigh skip slam slurp snap snatch snore
soar spill splash spray sprout squeal squirm stamp steer sting stomp strut sway swoop
thump tickle tiptoe topple tremble trot tug tumble tuck twirl unlock vanish wade wag
waddle warn wave weep whirl whisper wiggle wipe wobble yell zigzag zoom
"""

ADJECTIVES = """
big small little tiny huge giant tall short long round square flat fat thin wide narrow
deep shallow high low heavy light soft hard smooth rough bumpy fuzzy fluffy furry silky
sticky slimy slippery wet dry warm hot cold cool icy frozen sunny rainy windy cloudy
snowy stormy foggy bright dark dim shiny sparkly glittery dull clean dirty messy neat
tidy new old broken cracked torn whole empty full open closed loud quiet noisy silent
fast slow quick happy sad angry mad glad grumpy cranky scared afraid brave bold shy
proud kind nice mean gentle rough friendly lonely silly funny goofy serious sleepy tired
hungry thirsty sick healthy strong weak busy lazy curious clever smart wise foolish
careful careless polite rude honest helpful playful cheerful jolly calm excited nervous
worried upset surprised gentle caring loving sweet sour bitter salty spicy yummy tasty
delicious fresh rotten ripe juicy crunchy crispy chewy creamy red blue green yellow
orange purple pink brown black white gray golden silver colorful striped spotted
pretty beautiful lovely cute ugly plain fancy special magic magical strange weird odd
funny wonderful amazing great terrible awful horrible scary spooky creepy safe
dangerous wild tame free lucky unlucky rich poor real fake pretend favorite best
worst perfect easy difficult hard simple tricky secret hidden lost missing found
lonely crowded busy calm peaceful gentle fierce tough tender fragile delicate sturdy
bouncy wobbly shaky squeaky creaky crinkly crumbly dusty muddy sandy rocky grassy leafy
woolly feathery scaly spiky pointy sharp blunt curly straight wavy tangled knotted
twisty swirly dotty fizzy bubbly foamy frosty misty steamy smoky glowing twinkly sunny
early late young ancient modern tiny enormous mighty gigantic miniature plump chubby
skinny slim lean hairy bald clumsy graceful nimble eager keen jealous greedy generous
grateful thankful sorry sad glum gloomy merry bright lively dizzy fuzzy cozy snug comfy
warm toasty chilly breezy stuffy fluffy puffy bumpy lumpy stretchy sparkling shimmering
adorable charming elegant handsome messy sloppy spotless soggy damp moist drippy leaky
rusty shiny brand-new useful useless important tiny whole famous ordinary unusual rare
common precious valuable cheap expensive heavy empty sleepy awake alive quiet hollow
solid clear cloudy blurry sharp fuzzy pale deep light dark bright
awesome bashful blissful boastful bouncy brainy breezy bubbly busy cautious chatty cheeky
chilly clumsy colorful crabby cranky cuddly daring dainty dreamy droopy dusty fearless
fiery flashy fluffy frisky fuzzy giddy gleeful glossy grouchy gusty hasty hearty hopeful
humble hungry icy itchy jumpy kooky lanky loyal mellow mighty moody mushy nutty patient
peppy perky pesky picky plucky pudgy quirky rosy rowdy scruffy shaggy sneaky snappy
snowy sparkly speedy spotty springy squishy stinky stubborn sunny super swift thoughtful
tiny tricky trusty twinkly velvety wacky warmhearted wiggly wiry witty wobbly zany zippy
"""


def _unique(text):
    """Split a word block into words, dropping repeats but keeping the written order (a set
    would make the order, and so the seeded word choices, differ between Python runs)."""
    seen, words = set(), []
    for w in text.split():
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


NOUNS = _unique(NOUNS)
VERBS = _unique(VERBS)
ADJECTIVES = _unique(ADJECTIVES)

# Nouns that are not a small thing a child could find, hold or lose (places, people, body
# parts, very big things): the offline generator, whose plots are about such a thing, skips
# them; the LLM prompts use every noun.
NOT_HOLDABLE = set("""
bathroom bedroom kitchen attic basement closet garage house hut barn farm garden park zoo school
shop store library playground fence gate wall roof chimney path road street tunnel well fountain
bench statue hill mountain cave island beach river lake pond wave castle tower bridge cloud
rainbow star moon sun planet comet king queen prince princess knight pirate wizard witch giant
baker farmer doctor nurse teacher pilot sailor fireman policeman clown chef painter dancer singer
driver friend neighbor baby sister brother cousin uncle aunt grandma grandpa mom dad tooth paw tail
wing horn beak claw nose ear eye hand foot finger toe knee elbow fire campfire ship submarine
helicopter jet tractor van taxi bus train plane truck airplane ambulance bulldozer firetruck
motorcycle jeep trolley canoe kayak ferry backyard balcony ceiling forest field jungle meadow
orchard palace porch sidewalk yard volcano waterfall windmill lighthouse harbor dock greenhouse
treehouse cabin cottage igloo den stable staircase wardrobe fireplace oven stove fridge sink tub
bath sofa couch carpet rug curtain desk pool trampoline elephant giraffe hippo rhino whale shark
horse cow camel moose gorilla walrus bear lion tiger wolf mailman cowboy goblin fairy elf monster
ghost angel dinosaur dragon unicorn kangaroo crocodile alligator ostrich reindeer llama leopard
cheetah zebra donkey hilltop haystack hedge oak mud sandbox swing slide seesaw raft mailbox
scarecrow engine harbor
""".split())
HOLDABLE_NOUNS = [n for n in NOUNS if n not in NOT_HOLDABLE]


# ----------------------------------------------------------------------------- using a word
# Does a story use the word "run"? It does if it says "runs", "ran" or "running", and it does not
# if it only says "rung" of a ladder. word_used answers with a set of candidate forms, made from
# the word by the regular English rules and the table of irregular forms below, matched as whole
# words: one readable rule each, instead of one regex that also matches "care" for "car".

def _table(text):
    """'run:ran,running ...' -> {'run': ('ran', 'running'), ...}"""
    return {base: tuple(forms.split(',')) for base, forms in (p.split(':') for p in text.split())}


# The past forms of every irregular verb in VERBS: complete (a verb listed here gets no regular
# -ed, so "see" is not "seed"; verbs with both forms list both).
IRREGULAR_VERBS = _table("""
run:ran swim:swam,swum fly:flew,flown dive:dove,dived slide:slid swing:swung spin:spun throw:threw,thrown
catch:caught hold:held hang:hung,hanged ring:rang,rung sing:sang,sung sleep:slept dream:dreamt,dreamed wake:woke,woken
sit:sat stand:stood lie:lay,lain,lied kneel:knelt,kneeled bend:bent shake:shook,shaken eat:ate,eaten
bite:bit,bitten drink:drank,drunk give:gave,given take:took,taken bring:brought send:sent find:found
lose:lost hide:hid,hidden seek:sought see:saw,seen hear:heard feel:felt know:knew,known think:thought
learn:learnt,learned smell:smelt,smelled forget:forgot,forgotten write:wrote,written draw:drew,drawn build:built
break:broke,broken tear:tore,torn spill:spilt,spilled dig:dug grow:grew,grown feed:fed ride:rode,ridden
drive:drove,driven lead:led win:won fall:fell,fallen sneak:snuck,sneaked begin:began,begun leave:left
meet:met fight:fought forgive:forgave,forgiven show:showed,shown teach:taught lend:lent buy:bought
sell:sold pay:paid spend:spent keep:kept freeze:froze,frozen blow:blew,blown shrink:shrank,shrunk
stick:stuck mow:mowed,mown sew:sewed,sewn weave:wove,woven wind:wound beat:beaten sting:stung lean:leant,leaned weep:wept
sweep:swept leap:leapt,leaped say:said tell:told shine:shone,shined wear:wore,worn
""")
# Irregular plurals of NOUNS (the -f/-fe words, -man compounds and the old English ones).
IRREGULAR_NOUNS = _table("""
mouse:mice goose:geese tooth:teeth foot:feet leaf:leaves wolf:wolves calf:calves elf:elves
shelf:shelves scarf:scarves snowman:snowmen fireman:firemen policeman:policemen mailman:mailmen
cactus:cacti octopus:octopi
""")
# Irregular comparisons of ADJECTIVES.
IRREGULAR_ADJECTIVES = _table("""
little:less,least
""")
_NOUN_SET, _VERB_SET, _ADJECTIVE_SET = set(NOUNS), set(VERBS), set(ADJECTIVES)
_VOWELS = 'aeiou'


def _ends_cvc(word):
    """Consonant, one vowel, consonant at the end (hug, stop, big, visit): -ed/-ing/-er double
    the last letter after it (hugged, stopping, bigger). w, x and y never double (snowed, fixed)."""
    return (len(word) >= 3 and word[-1] not in _VOWELS + 'wxy' and word[-2] in _VOWELS
            and word[-3] not in _VOWELS)


def _one_syllable(word):
    return len(re.findall('[aeiouy]+', word.rstrip('e') or word)) <= 1


def _stems(word):
    """The forms a suffix starting with a vowel (-ed, -ing, -er) attaches to: bake -> bak,
    hug -> hugg, visit -> visit and visitt (only one-syllable words must double)."""
    if word.endswith('e') and word[-2:] not in ('ee', 'oe', 'ye'):
        return {word[:-1]}                           # bake -> baking, baked, baker
    if _ends_cvc(word):
        doubled = word + word[-1]
        return {doubled} if _one_syllable(word) else {word, doubled}   # stop; travel(l)ed
    return {word}


def _plus_s(word):
    """jumps, wishes, boxes, cries, potatoes/pianos, toys."""
    if word.endswith(('s', 'x', 'z', 'ch', 'sh')):
        return {word + 'es'}
    if word.endswith('y') and word[-2:-1] not in _VOWELS:
        return {word[:-1] + 'ies'}
    if word.endswith('o') and word[-2:-1] not in _VOWELS:
        return {word + 's', word + 'es'}
    return {word + 's'}


def _verb_forms(word):
    """-ing and (unless the irregular table has the past) -ed."""
    if word in IRREGULAR_VERBS:
        return {s + 'ing' for s in _stems(word)} if not word.endswith('ie') else {word[:-2] + 'ying'}
    if word.endswith('y') and word[-2:-1] not in _VOWELS:   # cry: cried, crying
        return {word[:-1] + 'ied', word + 'ing'}
    if word.endswith('e') and word[-2:-1] != 'i':            # bake: baked, baking; see: seeing
        return {word + 'd'} | {s + 'ing' for s in _stems(word)}
    if word.endswith('ie'):                                  # tie: tied, tying
        return {word + 'd', word[:-2] + 'ying'}
    return {s + suffix for s in _stems(word) for suffix in ('ed', 'ing')}


def _adjective_forms(word):
    if word.endswith('y') and word[-2:-1] not in _VOWELS:   # happy: happier, happiest, happily
        i = word[:-1] + 'i'
        return {i + 'er', i + 'est', i + 'ly', i + 'ness'}
    if word.endswith('le') and word[-3:-2] not in _VOWELS:   # gentle: gently, gentler
        return {word + 'r', word + 'st', word[:-1] + 'y', word + 'ness'}
    if word.endswith('ic'):                                  # magic: magically
        return {word + 'ally', word + 'al'}
    forms = {s + suffix for s in _stems(word) for suffix in ('er', 'est')}
    return forms | {word + ('y' if word.endswith('ll') else 'ly'), word + 'ness'}


def word_forms(word):
    """Every form of `word` that counts as using it: the word itself, its regular inflections
    by part of speech (a word in no list gets them all), and its irregular forms."""
    word = word.lower()
    kinds = [k for k, s in (('noun', _NOUN_SET), ('verb', _VERB_SET), ('adj', _ADJECTIVE_SET))
             if word in s] or ['noun', 'verb', 'adj']
    forms = {word}
    if 'noun' in kinds or 'verb' in kinds:
        forms |= _plus_s(word)
    if 'verb' in kinds:
        forms |= _verb_forms(word)
    if 'adj' in kinds:
        forms |= _adjective_forms(word)
    for table in (IRREGULAR_VERBS, IRREGULAR_NOUNS, IRREGULAR_ADJECTIVES):
        forms |= set(table.get(word, ()))
    return forms


_patterns = {}


def word_used(word, text):
    """Does `text` use `word` in some form: jump/jumps/jumped/jumping, cry/cried, run/ran,
    mouse/mice, happy/happily, big/bigger? Whole words only, any case: "car" is not in
    "care", nor "hat" in "hated"."""
    pattern = _patterns.get(word)
    if pattern is None:
        alternatives = '|'.join(sorted(map(re.escape, word_forms(word)), key=len, reverse=True))
        pattern = _patterns[word] = re.compile(r"(?<!\w)(?:" + alternatives + r")(?!\w)", re.IGNORECASE)
    return pattern.search(text) is not None
