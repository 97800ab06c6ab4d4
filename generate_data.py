"""
Make a TinyStories (or TinyStories-Instruct) dataset: short stories in the words a 3-4 year-old
knows, each prompted with a random verb, noun and adjective and a random subset of story
features, the paper's recipe for diversity (Eldan & Li 2023, section 2).

    python generate_data.py --backend=offline --num_stories=20000 --stories_dir=data/demo_stories
    python generate_data.py --backend=openai --model=gpt-4.1-mini --num_stories=100000 --instruct
    python generate_data.py --backend=batch --num_stories=100000 --max_cost_usd=20 --yes
    python generate_data.py --backend=openai --base_url=http://localhost:8000/v1 --model=my-model

Backends: `offline` writes template stories with no network (the demo and the tests use it);
`openai` calls any OpenAI-compatible chat endpoint with bounded concurrency; `batch` uses the
OpenAI Batch API (half price, results within 24 h). Both paid paths go through llm.py.

Output: append-only shards stories_dir/stories-00000.jsonl, ... with one record per story
(docs/contracts.md: id, story, instruction {"prompt:", words, features}, summary, sentence, source).
Story i of a seed always has the same id and prompt, so a killed run re-run with the same
command writes exactly the stories still missing: nothing lost, nothing twice, and (through
llm.py's response log in stories_dir/.state/) no answer already received is paid for again.
One run at a time writes a stories_dir (a second is refused), impossible settings are refused
before any request, and a run that leaves stories unfinished exits non-zero saying why.
"""
import json
import os
import random
import re
from urllib.parse import urlparse

from tinystories import dirlock
from tinystories.atomic_write import atomic_write, remove_stale_temps
from tinystories.configurator import Key, configure
from tinystories.words import ADJECTIVES, HOLDABLE_NOUNS, NOUNS, VERBS, word_used
from tinystories.jsonl import append_jsonl, repair_jsonl
from tinystories.stories import read_shard
from tinystories.offline_stories import offline_story
from tinystories.progress import progress

# -----------------------------------------------------------------------------
backend = Key('offline', "offline (the built-in generator), openai (concurrent requests) or batch (the Batch API)",
              choices=('offline', 'openai', 'batch'))
num_stories = Key(1000, "how many stories the dataset should hold (a re-run tops it up); ids hold 8 digits",
                  min=1, max=10 ** 8)
stories_dir = Key('data/stories', "the folder of story shards to write (prepare.py's --source)")
seed = Key(1337, "the same seed gives the same prompts (and offline, the same stories)")
instruct = Key(False, "also make the Instruct fields (the summary; words, features, sentence always)")
shard_size = Key(10000, "stories per shard file", min=1)
# LLM backends (see llm.py)
model = Key('gpt-4.1-mini', "the generating model's name")
base_url = Key('', "the server ('': api.openai.com; else any OpenAI-compatible server: vLLM, Ollama, ...)")
api_key_env = Key('OPENAI_API_KEY', "the environment variable that holds the API key (never the key itself)")
concurrency = Key(32, "requests in flight at once", min=1)
max_retries = Key(6, "retries per request for transient faults (429, 5xx, timeouts)", min=0)
max_requests = Key(0, "requests this run may send (0: no limit)", min=0)
max_cost_usd = Key(0.0, "stop sending once this much is spent (0: no limit)", min=0)
yes = Key(False, "skip the confirmation before a paid run")
max_tokens = Key(600, "tokens per answer at most", min=1)
temperature = Key(1.0, "the generating model's sampling temperature", min=0, max=2)
timeout = Key(60.0, "seconds per request", above=0)
poll_seconds = Key(30.0, "batch: seconds between status checks", min=0)
max_rejects = Key(3, "a story's answers may be rejected this often before it is given up", min=0)
min_words = Key(60, "an answer with fewer words is rejected", min=0)
max_words = Key(600, "an answer with more words is rejected", min=0)
# -----------------------------------------------------------------------------
config = configure(globals())

FEATURES = {  # hub name -> how the paper's prompts asked for it
    'Dialogue': 'the story should contain at least one dialogue',
    'Twist': 'something unexpected happens, or there is a plot twist',
    'BadEnding': 'the story has a bad ending',
    'MoralValue': 'the story has a moral value',
    'Foreshadowing': 'the narrative uses foreshadowing or setup and payoff',
    'Conflict': 'the story has some form of conflict in it',
}
SHARD_RE = re.compile(r'^stories-(\d{5})\.jsonl$')


# ----------------------------------------------------------------------------- prompts
def story_rng(seed, index):
    """One random stream per story, so story i is the same whatever was made before it
    (which is what lets a resumed run fill in exactly the missing ones)."""
    return random.Random(f'{seed}:{index}')


def story_spec(seed, index, nouns=NOUNS):
    """The random choices behind story `index`: its words and its features. (The offline
    stories draw their noun from the holdable things only: their plots are about one.)"""
    rng = story_rng(seed, index)
    words = [rng.choice(VERBS), rng.choice(nouns), rng.choice(ADJECTIVES)]
    k = rng.choices([0, 1, 2, 3], weights=[2, 4, 3, 1])[0]
    features = sorted(rng.sample(list(FEATURES), k), key=list(FEATURES).index)
    return {'id': f'{seed}-{index:08d}', 'words': words, 'features': features, 'rng': rng}


def make_prompt(words, features, instruct=False):
    verb, noun, adjective = words
    text = ('Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year '
            f'old child would likely understand. The story should use the verb "{verb}", the noun '
            f'"{noun}" and the adjective "{adjective}".')
    if features:
        text += ' The story should have the following features: ' + \
            ', '.join(FEATURES[f] for f in features) + '.'
    text += ' Remember to only use simple words!'
    if instruct:
        text += (' After the story, write one more line that starts with "Summary:" and gives a '
                 'one-sentence summary of the story.')
    return text


SENTENCE_RE = re.compile(r'[^.!?]*[.!?]+"?')


def pick_sentence(story, rng):
    """A random sentence of the story: the Instruct 'Sentence:' field."""
    sentences = [m.group().strip() for m in SENTENCE_RE.finditer(story) if len(m.group().split()) >= 3]
    return rng.choice(sentences) if sentences else story.split('\n')[0]


# ----------------------------------------------------------------------------- the settings
def check_settings():
    """What one key's range cannot say, before anything is written or any request is sent."""
    def need(ok, msg):
        if not ok:
            raise SystemExit(f"error: {msg}")
    if backend == 'offline':
        return
    need(min_words <= max_words, f"--min_words={min_words} and --max_words={max_words}: need "
                                      "0 <= min_words <= max_words, or every answer is rejected")
    need(min_words <= max_tokens, f"--min_words={min_words} cannot fit in --max_tokens={max_tokens} "
                                  "(a word is at least one token): raise max_tokens or lower min_words")
    need(model.strip() != '', "--model is empty")
    url = urlparse(base_url)
    need(not base_url or (url.scheme in ('http', 'https') and url.netloc),
         f"--base_url={base_url!r} is not an http(s) URL (e.g. http://localhost:8000/v1)")


# ----------------------------------------------------------------------------- the shards
class ShardWriter:
    """Append-only JSONL shards, through jsonl.py: a kill -9 can leave at most one torn last
    line, cut off when the shards are opened again. Records wait in memory until flush(),
    which appends them whole lines at a time and fsyncs (what a kill loses is made again)."""

    def __init__(self, dirname, shard_size):
        self.dir, self.shard_size = dirname, shard_size
        os.makedirs(os.path.join(dirname, '.state'), exist_ok=True)
        self.done, self.pending = set(), []
        self.shard, self.lines = 0, 0
        for name in sorted(os.listdir(dirname)):
            m = SHARD_RE.match(name)
            if m:
                path = os.path.join(dirname, name)
                repair_jsonl(path)
                records = read_shard(path)  # each record checked: a one-line error naming the line
                self.done.update(r['id'] for r in records)
                self.shard, self.lines = int(m.group(1)), len(records)

    def path(self):
        return self.path_of(self.shard)

    def path_of(self, shard):
        return os.path.join(self.dir, f'stories-{shard:05d}.jsonl')

    def write(self, record):
        """Add a record unless its id is already there; True when added."""
        if record['id'] in self.done:
            return False
        self.pending.append(record)
        self.done.add(record['id'])
        return True

    def flush(self):
        while self.pending:
            if self.lines >= self.shard_size:
                self.shard, self.lines = self.shard + 1, 0
            take = self.pending[:self.shard_size - self.lines]
            append_jsonl(self.path(), take)
            self.pending = self.pending[len(take):]
            self.lines += len(take)

    close = flush


# ----------------------------------------------------------------------------- offline
def offline_record(seed, index, instruct):
    spec = story_spec(seed, index, HOLDABLE_NOUNS)
    story, summary = offline_story(spec)
    return {'id': spec['id'], 'story': story,
            'instruction': {'prompt:': make_prompt(spec['words'], spec['features'], instruct),
                            'words': spec['words'], 'features': spec['features']},
            'summary': summary,  # free offline, so always made
            'sentence': pick_sentence(story, spec['rng']),
            'source': 'offline'}


def run_offline(writer, wanted, n_wanted):
    kept = 0
    for i in progress(wanted, total=n_wanted, desc='offline stories', unit='story', mininterval=0.5):
        kept += writer.write(offline_record(seed, i, instruct))
        if kept % 2000 == 0:
            writer.flush()
    writer.flush()
    return {'stories_kept': kept, 'unfinished': 0}


# ----------------------------------------------------------------------------- LLM answers
REFUSALS = ("i'm sorry", 'i am sorry', 'i cannot', "i can't", 'as an ai', 'i apologize')


def split_answer(text):
    """An answer -> (story, summary): the summary is the line starting 'Summary:', if any."""
    story, summary = text.strip(), ''
    m = re.search(r'^\W*summary\W*:\s*(.+)$', story, re.IGNORECASE | re.MULTILINE)
    if m:
        summary = m.group(1).strip().strip('*').strip()
        story = story[:m.start()].strip()
    story = re.sub(r'^\W*(title|story)\W*:.*\n+', '', story, flags=re.IGNORECASE)  # a heading line
    return story, summary


def check_answer(spec, text):
    """None if the answer is a usable story for `spec`, else why not (counted by reason)."""
    story, summary = split_answer(text)
    if story.lower().startswith(REFUSALS):
        return 'refusal'
    n = len(story.split())
    if n < min_words:
        return 'too short'
    if n > max_words:
        return 'too long'
    if not all(word_used(w, story) for w in spec['words']):
        return 'missing words'
    if instruct and not summary:
        return 'no summary'
    return None


def run_llm(writer, wanted):
    from tinystories import llm
    specs = {f'{seed}-{i:08d}': story_spec(seed, i) for i in wanted}
    params = {'max_tokens': max_tokens, 'temperature': temperature}
    requests = [{'custom_id': cid, 'params': params, 'messages': [
        {'role': 'user', 'content': make_prompt(sp['words'], sp['features'], instruct)}]}
        for cid, sp in specs.items()]

    def on_result(req, result):
        sp = specs[req['custom_id']]
        story, summary = split_answer(result['text'])
        writer.write({'id': sp['id'], 'story': story,
                      'instruction': {'prompt:': req['messages'][0]['content'], 'words': sp['words'],
                                      'features': sp['features']},
                      'summary': summary if instruct else '',
                      'sentence': pick_sentence(story, sp['rng']), 'source': model})
        if len(writer.pending) >= 100:
            writer.flush()     # (the answers are safe in llm's fsynced log already)

    report = llm.run(requests, os.path.join(stories_dir, '.state', 'llm'),
                     validate=lambda req, text: check_answer(specs[req['custom_id']], text),
                     on_result=on_result, backend=backend, model=model, base_url=base_url,
                     api_key_env=api_key_env, concurrency=concurrency, max_requests=max_requests,
                     max_cost_usd=max_cost_usd, yes=yes, timeout=timeout, max_retries=max_retries,
                     max_rejects=max_rejects, poll_seconds=poll_seconds, desc='stories')
    writer.flush()
    report['stories_kept'] = report['kept']
    report['unfinished'] = len(report['unfinished'])
    return report


def why_unfinished(report):
    """'stopped: max_requests; failed: http 400 x12 (the server said: ...); rejected: too short x3'
    (from llm's report: each failing status with one reason the server gave)."""
    from tinystories.llm import failures_text
    parts = [f"stopped: {report['stopped']}"] if report.get('stopped') else []
    if report.get('failed'):
        parts.append('failed: ' + failures_text(report))
    if report.get('rejected'):
        parts.append('rejected: ' + ', '.join(f'{k} x{v}' for k, v in report['rejected'].items()))
    if any('Connection' in k or 'Timeout' in k for k in report.get('failed', {})):
        parts.append(f'is the server at {base_url or "api.openai.com"} up?')
    return '; '.join(parts) or 'not answered'


# ----------------------------------------------------------------------------- the run
MAX_LLM_STORIES = 1_000_000  # per run: every request is held in memory until it is answered
SETTINGS = ('seed', 'instruct', 'source')  # what makes a folder's stories one dataset


def story_index(story_id):
    """'1337-00000042' -> (1337, 42); None for an id of another form."""
    head, _, index = story_id.rpartition('-')
    return (head, int(index)) if index.isdigit() else None


def check_folder_settings(writer):
    """The settings that made the stories already in stories_dir must be this run's: --seed=1
    into a seed-1337 folder would mix two datasets (a re-run tops up, it does not change what
    is made). Recorded in .state/settings.json (for older folders: read off the first story)."""
    mine = {'seed': seed, 'instruct': instruct, 'source': 'offline' if backend == 'offline' else model}
    path = os.path.join(stories_dir, '.state', 'settings.json')
    if not writer.done:
        atomic_write(path, json.dumps(mine, indent=1) + '\n')  # an empty folder takes any settings
        return
    try:
        with open(path, encoding='utf-8') as f:
            theirs = json.load(f)
    except FileNotFoundError:  # a folder from before settings.json: its first story tells
        first = (read_shard(writer.path_of(0)) or [{}])[0] if os.path.exists(writer.path_of(0)) else {}
        index = story_index(first.get('id', ''))
        theirs = {'seed': int(index[0]) if index and index[0].lstrip('-').isdigit() else None,
                  'source': first.get('source')}
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read {path} ({e}): delete it to take this run's settings")
    if not isinstance(theirs, dict):
        raise SystemExit(f"error: {path} is not a JSON object: delete it to take this run's settings")
    for key in SETTINGS:
        flag = '--backend, --model' if key == 'source' else f'--{key}'
        if theirs.get(key) is not None and theirs[key] != mine[key]:
            raise SystemExit(f"error: {stories_dir} holds stories made with {key}={theirs[key]!r}, not "
                             f"{mine[key]!r} ({flag}): use the same settings to top it up, or another --stories_dir")
    if theirs != mine:
        atomic_write(path, json.dumps(mine, indent=1) + '\n')  # (an older folder's, completed)


def main():
    check_settings()
    dirlock.lock_dir(stories_dir, 'generate_data.py run')
    try:
        make_stories()
    except OSError as e:  # an unwritable or immutable shard, a full disk ...
        raise SystemExit(f"error: cannot write {e.filename or stories_dir}: {e.strerror or e}; the "
                         f"stories already written are kept: fix that, then re-run the same command")


def make_stories():
    remove_stale_temps(os.path.join(stories_dir, '.state'))
    writer = ShardWriter(stories_dir, shard_size)
    check_folder_settings(writer)
    have = sum(1 for i in map(story_index, writer.done) if i and i[0] == str(seed) and i[1] < num_stories)
    n_wanted = num_stories - have
    # lazily: --num_stories=10000000000 must not build a list of ten billion indices first
    wanted = (i for i in range(num_stories) if f'{seed}-{i:08d}' not in writer.done)
    if backend != 'offline' and n_wanted > MAX_LLM_STORIES:
        raise SystemExit(f"error: --num_stories={num_stories} asks for {n_wanted:,} new stories; an LLM "
                         f"backend makes at most {MAX_LLM_STORIES:,} per run (each request waits in "
                         f"memory): raise --num_stories in steps, each re-run tops the folder up")
    print(f'generate_data: {len(writer.done)} stories already in {stories_dir}, '
          f'{n_wanted} to make with backend={backend}')
    try:
        report = run_offline(writer, wanted, n_wanted) if backend == 'offline' else run_llm(writer, list(wanted))
    finally:
        writer.close()
    report['stories_in_dir'] = len(writer.done)
    atomic_write(os.path.join(stories_dir, '.state', 'report.json'), json.dumps(report, indent=2) + '\n')
    print('generate_data: ' + ', '.join(f'{k}={v}' for k, v in report.items()))
    if report['unfinished']:
        raise SystemExit(f"error: {report['unfinished']} of {n_wanted} stories unfinished "
                         f"({why_unfinished(report)}); re-run the same command to continue them")


if __name__ == '__main__':
    main()
