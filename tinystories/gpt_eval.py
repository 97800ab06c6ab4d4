"""
GPT-Eval (the TinyStories paper's section 3): a strong LLM grades a model's completions of story
beginnings like a teacher, in two turns: a free-text assessment, then grades out of 10 for
grammar, creativity, consistency and plot, and a guess of the writer's age group. This file is
the engine grade.py runs: the grader's two prompts, the conversation through llm.py, reading
the grades from whatever shape the grader answers in, and their summary.

Also the paper's grading of its Instruct models (section 4.2): the grader gets the instruction
lines a story was written from (summary, words, sentence, features) and the story, and scores
how well each instruction is followed, 1-10, with a reason: grade_instructions().
"""
import json
import re
import statistics

SCORES = ('grammar', 'creativity', 'consistency', 'plot')
AGE_GROUPS = {'A': '3 or under', 'B': '4-5', 'C': '6-7', 'D': '8-9', 'E': '10-12', 'F': '13-16'}


# ----------------------------------------------------------------------------- the two turns
ASSESS = (
    "In the following exercise, the student is given the beginning of a story and must "
    "complete it into a whole story. The exercise tests the student's language abilities and "
    "creativity. The symbol *** marks where the given beginning ends and the student's "
    "completion starts.\n\n{beginning}***{completion}\n\n"
    "Please give your general assessment of the part written by the student (after the *** "
    "symbol). Is it grammatically correct? Is it consistent with the beginning of the story? "
    "Pay special attention to whether the student manages to complete the sentence that the "
    "*** separator splits in the middle.")
GRADE = (
    "Now grade the student's completion in terms of grammar, creativity, consistency with the "
    "story's beginning, and whether the plot makes sense, each as a whole number from 1 to 10. "
    "Also give your best guess of the student's age group, as reflected in the completion. "
    "Choose from: A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16.\n"
    'Answer with JSON only: {"grammar": <1-10>, "creativity": <1-10>, "consistency": <1-10>, '
    '"plot": <1-10>, "age_group": "<A-F>"}')
# servers that support structured output are held to exactly this shape
GRADE_SCHEMA = {
    'type': 'json_schema',
    'json_schema': {'name': 'grades', 'strict': True, 'schema': {
        'type': 'object', 'additionalProperties': False,
        'required': list(SCORES) + ['age_group'],
        'properties': {**{k: {'type': 'integer'} for k in SCORES},
                       'age_group': {'type': 'string', 'enum': list(AGE_GROUPS)}}}}}


def first_turn(beginning, completion):
    return [{'role': 'user', 'content': ASSESS.format(beginning=beginning, completion=completion)}]


SCORE_NAMES = {'grammar': r'grammar', 'creativity': r'creativ', 'consistency': r'consisten',
               'plot': r'plot'}
# "out of 10", "/10", "(1-10)": the scale, which must not be read as the grade
SCALE = re.compile(r'\(?\s*(?:out\s+of\s+10|/\s*10|\b[01]\s*(?:-|–|to)\s*10)\b\s*\)?', re.I)
NUMBER = re.compile(r'(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)')


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = NUMBER.search(SCALE.sub(' ', value))
        return float(m.group(1)) if m else None
    if isinstance(value, dict):  # {"score": 8, "reason": ...}
        for k, v in value.items():
            if k.lower() in ('score', 'grade', 'value', 'rating'):
                return _number(v)
    return None


def _age_group(value):
    """A-F from "C", "C: 6-7", "(C)", "6-7", "3 or under", "age group B" ..."""
    text = str(value).strip()
    for pattern in (r'^\W*([A-F])\b', r'\(([A-F])\)', r'\b([A-F])\s*[:)\]]', r'\bgroup\W+([A-F])\b'):
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    if re.search(r'3\s+or\s+(?:under|younger|less)', text, re.I):
        return 'A'
    m = re.search(r'\b(\d+)\s*(?:-|–|to)\s*(\d+)\b', text)
    if m:
        for group, span in AGE_GROUPS.items():
            if span == f"{m.group(1)}-{m.group(2)}":
                return group
    return None


def _json_objects(text):
    """Every JSON object in the text (answers often wrap JSON in prose or ``` fences)."""
    dec = json.JSONDecoder()
    found = []
    for m in re.finditer(r'\{', text):
        try:
            obj, _ = dec.raw_decode(text[m.start():])
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def parse_grades(text):
    """The grades in a grader's answer: {grammar, creativity, consistency, plot (1-10 floats),
    age_group (A-F)}, or None when any of them cannot be read. JSON first, then labelled lines
    such as "**Grammar:** 8/10" or "Age group: C (6-7)"."""
    grades = {}
    for obj in _json_objects(text):
        for key, value in obj.items():
            low = key.lower()
            for name, pat in SCORE_NAMES.items():
                if name not in grades and re.search(pat, low) and _number(value) is not None:
                    grades[name] = _number(value)
            if 'age' in low and 'age_group' not in grades and _age_group(value):
                grades['age_group'] = _age_group(value)
    for line in text.splitlines():
        plain = line.replace('*', '').replace('#', '')
        for name, pat in SCORE_NAMES.items():
            m = re.search(pat + r'\w*', plain, re.I)
            if name not in grades and m:
                value = _number(plain[m.end():])
                if value is not None:
                    grades[name] = value
        m = re.search(r'\bage\b', plain, re.I)
        if 'age_group' not in grades and m and _age_group(plain[m.end():]):
            grades['age_group'] = _age_group(plain[m.end():])
    if any(k not in grades for k in SCORES + ('age_group',)):
        return None
    if any(not 0 <= grades[k] <= 10 for k in SCORES):
        return None
    return {k: grades[k] for k in SCORES + ('age_group',)}


def grade_completions(samples, run_llm, structured=True):
    """The two-turn GPT-Eval conversation for every sample, through llm.run (concurrency,
    retries, budget, Batch API and the response log are all its business).

    run_llm(requests, validate=None, on_result=None) -> report is llm.run with its state_dir and
    settings bound. Turn 1 asks every assessment; turn 2 continues each conversation and asks
    for the grades. A grade answer that does not parse is rejected, so llm.run asks again (up
    to its max_rejects); if it never parses, the record keeps the last answer, error
    'unparseable', and no scores. Returns one record per sample, in order."""
    from tinystories import llm  # only GPT-Eval needs the client (and the openai package)
    records = [dict(s, assessment=None, grades_text=None, scores=None, error=None) for s in samples]
    by_key = {r['key']: r for r in records}
    turn1 = [{'custom_id': f"{r['key']}/assess", 'params': {'max_tokens': 600},
              'messages': first_turn(r['prompt'], r['completion'])} for r in records]
    answers = {}
    report = run_llm(turn1, on_result=lambda req, res: answers.__setitem__(req['custom_id'], res['text']))
    turn2 = []
    for req in turn1:
        r = by_key[req['custom_id'].rsplit('/', 1)[0]]
        r['assessment'] = answers.get(req['custom_id'])
        if r['assessment'] is None:
            r['error'] = no_answer(report)
            continue
        turn2.append(llm.followup(req, r['assessment'], GRADE, f"{r['key']}/grades"))
        turn2[-1]['params'] = {'max_tokens': 200}

    ask_for_scores(by_key, turn2, lambda key, text: parse_grades(text), run_llm, structured, GRADE_SCHEMA)
    return records


def ask_for_scores(by_key, requests, parse, run_llm, structured, schema):
    """Ask every request (custom_id '<record key>/<turn>') until parse(key, answer) reads it:
    an answer that does not parse is rejected, so llm.run asks again (up to its max_rejects).
    Sets each record's grades_text, scores and error ('unparseable' with the last answer kept,
    or why no answer came). With structured, the requests ask for `schema`; a server that
    refuses it (HTTP 400) is asked again in plain text."""
    key_of = lambda req: req['custom_id'].rsplit('/', 1)[0]
    if structured:
        for req in requests:
            req['params'] = dict(req['params'], response_format=schema)
    last_bad = {}

    def validate(req, text):
        if parse(key_of(req), text) is None:
            last_bad[req['custom_id']] = text
            return 'unparseable grades'
        return None

    def keep(req, res):
        r = by_key[key_of(req)]
        r['grades_text'], r['scores'], r['error'] = res['text'], parse(key_of(req), res['text']), None

    report = run_llm(requests, validate=validate, on_result=keep)
    if structured and any(reason == 'http 400' for reason in report['failed']):
        # some servers refuse response_format: ask those again, in plain text (new ids, so the
        # response log keeps both attempts apart)
        retry = [dict(req, custom_id=req['custom_id'] + '-plain',
                      params={k: v for k, v in req['params'].items() if k != 'response_format'})
                 for req in requests if by_key[key_of(req)]['scores'] is None and req['custom_id'] not in last_bad]
        print(f"grade: the server refused structured output (HTTP 400); asking {len(retry)} "
              f"again in plain text")
        report = run_llm(retry, validate=validate, on_result=keep)
    for req in requests:
        r = by_key[key_of(req)]
        if r['scores'] is None:
            bad = last_bad.get(req['custom_id'] + '-plain', last_bad.get(req['custom_id']))
            r['grades_text'] = bad
            r['error'] = 'unparseable' if bad is not None else no_answer(report)


def no_answer(report):
    """Why a request got no answer, as far as llm.run's report tells: with the server's own
    reason for each failing status."""
    from tinystories.llm import failures_text
    failed = failures_text(report) if report['failed'] else ''
    if report['stopped']:
        return f"not sent: {report['stopped']} reached" + (f"; failed: {failed}" if failed else '')
    return 'no answer: ' + (failed or 'unknown')


# ----------------------------------------------------------------------------- Instruct grading
INSTRUCT_GRADE = (
    "In the following exercise, the student was given instructions and had to write a short "
    "story that follows them. The exercise tests how well the student follows instructions.\n\n"
    "The instructions:\n{instructions}\n\nThe student's story:\n{story}\n\n"
    "For each instruction ({names}), score how well the story follows it, as a whole number from "
    "1 (ignored) to 10 (followed perfectly), and give a one-sentence reason. Answer with JSON only: "
    "{{{shape}}}")


def instruct_request(lines, story):
    """The grader's prompt for one story, given the instruction lines [(name, text)]."""
    names = [n for n, _ in lines]
    shape = ', '.join(f'"{n}": {{"score": <1-10>, "reason": "<one sentence>"}}' for n in names)
    return [{'role': 'user', 'content': INSTRUCT_GRADE.format(
        instructions='\n'.join(text for _, text in lines), story=story, names=', '.join(names), shape=shape)}]


def instruct_schema(names):
    item = {'type': 'object', 'additionalProperties': False, 'required': ['score', 'reason'],
            'properties': {'score': {'type': 'integer'}, 'reason': {'type': 'string'}}}
    return {'type': 'json_schema', 'json_schema': {'name': 'instruction_scores', 'strict': True, 'schema': {
        'type': 'object', 'additionalProperties': False, 'required': list(names),
        'properties': {n: item for n in names}}}}


def parse_instruct_grades(text, names):
    """{name: {'score': 1-10, 'reason': str}} for every instruction named, or None when any is
    missing or off the scale. JSON first ({"Words": {"score": 8, "reason": ...}} or {"Words": 8}),
    then lines such as "Words: 8/10 - uses all three words"."""
    got = {}
    for obj in _json_objects(text):
        for key, value in obj.items():
            name = next((n for n in names if n.lower() == key.strip().lower()), None)
            if name and name not in got and _number(value) is not None:
                reason = value.get('reason', '') if isinstance(value, dict) else ''
                got[name] = {'score': _number(value), 'reason': str(reason)}
    for line in text.splitlines():
        plain = line.replace('*', '').replace('#', '').strip(' -')
        for n in names:
            m = re.match(re.escape(n) + r'\s*[:=-]\s*(.*)', plain, re.I)
            if n not in got and m and _number(m.group(1)) is not None:
                reason = re.sub(r'^[^A-Za-z]*', '', SCALE.sub(' ', m.group(1)).split(maxsplit=1)[-1]
                                if len(m.group(1).split()) > 1 else '')
                got[n] = {'score': _number(m.group(1)), 'reason': reason}
    if any(n not in got or not 1 <= got[n]['score'] <= 10 for n in names):
        return None
    return {n: got[n] for n in names}


def grade_instructions(samples, run_llm, structured=True):
    """One grading turn per story: each sample {'key', 'lines': [(name, text)], 'completion'}
    gets scores {name: {score, reason}} through llm.run (retries, budget, resume: its business),
    or an error ('unparseable' with the last answer, or why no answer came)."""
    records = [dict(s, grades_text=None, scores=None, error=None) for s in samples]
    by_key = {r['key']: r for r in records}
    names = {r['key']: [n for n, _ in r['lines']] for r in records}
    requests = [{'custom_id': f"{r['key']}/instructions", 'params': {'max_tokens': 400},
                 'messages': instruct_request(r['lines'], r['completion'])} for r in records]
    by_names = {}  # one schema per combination of lines
    for req in requests:
        key = req['custom_id'].rsplit('/', 1)[0]
        by_names.setdefault(tuple(names[key]), []).append(req)
    for combo, reqs in by_names.items():
        ask_for_scores(by_key, reqs, lambda key, text: parse_instruct_grades(text, names[key]),
                       run_llm, structured, instruct_schema(combo))
    return records


# ----------------------------------------------------------------------------- the summary
def summarise(records):
    """Mean and spread of each score over the graded records, the age-group distribution, and
    counts (an answer that could not be parsed is counted, never scored)."""
    graded = [r for r in records if r.get('scores')]
    summary = {'counts': {'completions': len(records), 'graded': len(graded),
                          'unparseable': sum(r.get('error') == 'unparseable' for r in records),
                          'too_long': sum(r.get('error') == 'too_long' for r in records),
                          'failed': sum(bool(r.get('error')) and r['error'] not in ('unparseable', 'too_long')
                                        for r in records)},
               'scores': {}, 'age_groups': {}}
    for k in SCORES:
        xs = [r['scores'][k] for r in graded]
        summary['scores'][k] = {
            'mean': statistics.fmean(xs) if xs else None,
            'std': statistics.stdev(xs) if len(xs) > 1 else None,  # spread of single grades
            'min': min(xs) if xs else None, 'max': max(xs) if xs else None, 'n': len(xs)}
    for g in AGE_GROUPS:
        n = sum(r['scores']['age_group'] == g for r in graded)
        summary['age_groups'][g] = {'ages': AGE_GROUPS[g], 'count': n,
                                    'fraction': n / len(graded) if graded else None}
    return summary
