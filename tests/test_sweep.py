"""sweep.py: a 2x2 grid end to end with a kill -9 in the middle (every run trained and evaluated
exactly once), the report's numbers against the runs' own logs, a run folder with other settings
refused, and bad grids refused before anything trains."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import tiny_stories, write_byte_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--widths=16,32', '--depths=1,2', '--heads=2', '--max_iters=12', '--block_size=32',
        '--batch_size=4', '--eval_interval=3', '--eval_iters=2', '--log_interval=1',
        '--warmup_iters=2', '--threads=1', '--progress=False', '--device=cpu']


def sweep_cmd(data, sweep_dir, *extra):
    return [sys.executable, os.path.join(ROOT, 'sweep.py'), f'--data_dir={data}',
            f'--sweep_dir={sweep_dir}', *TINY, *extra]


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def train_invocations(run_dir):
    with open(os.path.join(run_dir, 'train_output.txt')) as f:
        return re.findall(r'^\$ .*train\.py .*--init_from=(\w+)', f.read(), re.M)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('sweepdata') / 'data')
    write_byte_dataset(d, tiny_stories(200), tiny_stories(6, seed=1))
    return d


@pytest.fixture(scope='module')
def swept(data, tmp_path_factory):
    """The 2x2 sweep, killed with kill -9 while its second run trains, then run again."""
    sweep_dir = str(tmp_path_factory.mktemp('sweep') / 'grid')
    p = subprocess.Popen(sweep_cmd(data, sweep_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    second = os.path.join(sweep_dir, 'w16_d2_h2')
    deadline = time.time() + 90
    while time.time() < deadline and p.poll() is None:
        if os.path.isfile(os.path.join(second, 'ckpt.pt')):
            break
        time.sleep(0.02)
    assert p.poll() is None, "the sweep ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL)  # the sweep alone: its training child must die with it
    p.wait()
    r = subprocess.run(sweep_cmd(data, sweep_dir), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return sweep_dir


def test_kill_9_and_rerun_gives_every_run_exactly_once(swept):
    results = read_jsonl(os.path.join(swept, 'results.jsonl'))
    assert sorted(r['run'] for r in results) == ['w16_d1_h2', 'w16_d2_h2', 'w32_d1_h2', 'w32_d2_h2']
    for r in results:
        run_dir = os.path.join(swept, r['run'])
        log = read_jsonl(os.path.join(run_dir, 'log.jsonl'))
        iters = [x['iter'] for x in log if 'loss' in x]
        assert iters == list(range(1, 13)), (r['run'], iters)       # no step twice, none missing
        assert sum(bool(x.get('final')) for x in log) == 1 and log[-1].get('final')
        runs = train_invocations(run_dir)
        assert runs[0] == 'scratch' and all(k == 'resume' for k in runs[1:]), runs
    # the first run finished before the kill: trained once; the killed one resumed, not restarted
    assert train_invocations(os.path.join(swept, 'w16_d1_h2')) == ['scratch']
    assert train_invocations(os.path.join(swept, 'w16_d2_h2')) == ['scratch', 'resume']
    # only the runs' own logs are called log.jsonl
    logs = [os.path.relpath(os.path.join(d, f), swept) for d, _, fs in os.walk(swept) for f in fs
            if f == 'log.jsonl']
    assert sorted(logs) == sorted(f"{r['run']}/log.jsonl" for r in results)


def test_results_and_report_equal_the_runs_own_logs(swept):
    results = read_jsonl(os.path.join(swept, 'results.jsonl'))
    report = open(os.path.join(swept, 'report.md')).read()
    for r in results:
        run_dir = os.path.join(swept, r['run'])
        final = read_jsonl(os.path.join(run_dir, 'log.jsonl'))[-1]
        assert (r['val_bpb'], r['val_loss'], r['iters']) == (final['val_bpb'], final['val_loss'], 12)
        assert r['tokens'] == 12 * 4 * 32 and r['flops'] == r['flops_per_token'] * r['tokens']
        assert (r['n_embd'], r['n_layer'], r['n_head']) == tuple(
            int(x) for x in re.match(r'w(\d+)_d(\d+)_h(\d+)', r['run']).groups())
        with open(os.path.join(run_dir, 'grade', 'probes.json')) as f:
            probes = json.load(f)
        for cat, s in probes['by_category'].items():
            assert r[cat] == s['accuracy'] and r[f'{cat}_stderr'] > 0
        # the grid table shows each run's own loss and bits/byte
        assert f"{final['val_loss']:.3f} ({final['val_bpb']:.3f})" in report
        assert f"| {r['run']} | {r['params']:,} |" in report
    for png in ('loss_grid_h2.png', 'probes_vs_width.png', 'probes_vs_depth.png', 'loss_vs_flops.png'):
        assert os.path.getsize(os.path.join(swept, png)) > 1000
    assert 'Loss falls with width: **' in report and 'Loss falls with depth: **' in report
    # --report_only rebuilds the same report from results.jsonl, training nothing
    os.remove(os.path.join(swept, 'report.md'))
    r = subprocess.run(sweep_cmd('no/such/data', swept, '--report_only'), cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(swept, 'report.md')).read() == report


def test_run_folder_with_other_settings_is_an_error(swept, data):
    before = os.path.getmtime(os.path.join(swept, 'results.jsonl'))
    r = subprocess.run(sweep_cmd(data, swept, '--learning_rate=0.01'), cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    line = r.stderr.strip()
    assert line.startswith('error:') and 'learning_rate' in line and '\n' not in line, line
    assert os.path.getmtime(os.path.join(swept, 'results.jsonl')) == before
    # a re-run with the same settings (how it runs may change) does nothing and succeeds
    r = subprocess.run(sweep_cmd(data, swept, '--threads=2'), cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and '4 runs' in r.stdout and '(4 done)' in r.stdout, r.stderr


@pytest.mark.parametrize('args,msg', [
    (['--widths=48', '--heads=5'], 'not divisible by 5 heads'),
    (['--widths='], '--widths is empty'),
    (['--depths=0'], 'not a positive integer'),
    (['--depths=2,2'], 'lists a value twice'),
    (['--max_iters=0'], 'no per-run budget'),
    (['--max_iters=-3'], 'must be positive'),
    (['--max_iters=0', '--max_minutes=nan'], 'must be positive'),
    (['--max_tokens=1000'], 'not both'),
    (['--n_layer=3'], 'unknown key --n_layer'),
    (['--widthz=3'], 'unknown key --widthz'),
    (['--repeats=0'], 'must be at least 1'),
])
def test_bad_grid_is_one_line_error_before_training(tmp_path, data, args, msg):
    sweep_dir = str(tmp_path / 'bad')
    r = subprocess.run(sweep_cmd(data, sweep_dir, *args), cwd=ROOT, capture_output=True, text=True, timeout=60)
    err = r.stderr.strip()
    assert r.returncode != 0 and err.startswith('error:') and msg in err and 'Traceback' not in err, err
    assert not os.path.exists(sweep_dir)  # nothing made, nothing trained


def test_token_budget_becomes_steps(tmp_path, data):
    sweep_dir = str(tmp_path / 'tok')
    args = [a for a in sweep_cmd(data, sweep_dir) if not a.startswith(('--max_iters', '--widths', '--depths'))]
    r = subprocess.run(args + ['--widths=16', '--depths=1', '--max_tokens=500', '--probes=False'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = read_jsonl(os.path.join(sweep_dir, 'results.jsonl'))
    assert rec['iters'] == 4 and rec['tokens'] == 4 * 4 * 32  # ceil(500 / 128) steps


def test_instruct_conditions_and_scores():
    from tinystories.instruct_eval import conditions, field_line, score, summary_nouns
    conds = conditions('Summary,Words')
    assert conds == {'none': ([], False), 'Summary': (['Summary'], False), 'Words': (['Words'], False),
                     'Summary+Words': (['Summary', 'Words'], True)}
    for bad in ('Summary', 'Summary,Colour', ''):
        with pytest.raises(SystemExit, match='error: --instruct_holdout'):
            conditions(bad)
    rec = {'summary': 'A little dog named  Max finds a shiny ball in the park, but it rains.',
           'instruction': {'words': ['jump', 'ball', 'happy'], 'features': ['Dialogue']}}
    assert field_line('Words', rec) == 'Words: jump, ball, happy'
    assert field_line('Summary', rec).startswith('Summary: A little dog named Max finds')
    assert summary_nouns(rec['summary']) == ['ball', 'dog', 'park']
    story = 'Max jumped over the ball. The dog was happy.'
    assert score(rec, story) == (3, 3, 2, 3)  # jump (as jumped), ball, happy; ball and dog, not park


def test_gpt_eval_scores_reach_results_and_report(tmp_path, data):
    """With a grader configured (a stand-in server on 127.0.0.1), each run is graded once and
    its mean scores land at the top level of its record and in the report's table."""
    from tinystories.fake_openai import FakeOpenAI
    prompts = tmp_path / 'prompts.jsonl'
    prompts.write_text(''.join(json.dumps({'id': f'p{i}', 'prompt': p}) + '\n'
                               for i, p in enumerate(['Tom had a red', 'Mia saw a big'])))

    def respond(body):
        if len(body['messages']) == 1:
            return 'A short assessment.'
        return '{"grammar": 7, "creativity": 5, "consistency": 6, "plot": 4, "age_group": "B"}'
    sweep_dir = str(tmp_path / 'graded')
    args = [a for a in sweep_cmd(data, sweep_dir) if not a.startswith(('--widths', '--depths', '--max_iters'))]
    with FakeOpenAI(respond=respond) as server:
        r = subprocess.run(args + ['--widths=16', '--depths=1', '--max_iters=3', '--probes=False',
                                   '--gpt_eval', f'--base_url={server.base_url}', '--api_key_env=SWEEP_TEST_KEY',
                                   f'--grader_prompts={prompts}', '--grader_max_new_tokens=8', '--yes'],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, SWEEP_TEST_KEY='sk-test'))
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(server.answered) == 4  # 2 completions x 2 turns
    (rec,) = read_jsonl(os.path.join(sweep_dir, 'results.jsonl'))
    assert (rec['grammar'], rec['creativity'], rec['consistency'], rec['plot'], rec['graded']) == (7, 5, 6, 4, 2)
    report = open(os.path.join(sweep_dir, 'report.md')).read()
    assert '| w16_d1_h2 | 7.00 | 5.00 | 6.00 | 4.00 | 2 |' in report


# -----------------------------------------------------------------------------
# The reading rules, checked on the paper's own table (Eldan & Li 2023: eval loss, nats/token)

PAPER_LOSS = {  # (hidden, layers): loss
    (64, 12): 2.02, (64, 8): 2.08, (64, 4): 2.26, (64, 2): 2.38,
    (128, 12): 1.62, (128, 8): 1.65, (128, 4): 1.78, (128, 2): 1.92,
    (256, 12): 1.34, (256, 8): 1.38, (256, 4): 1.47, (256, 2): 1.60,
    (512, 12): 1.19, (512, 8): 1.20, (512, 4): 1.27, (512, 2): 1.39,
    (768, 12): 1.18, (768, 8): 1.18, (768, 4): 1.20, (768, 2): 1.31, (768, 1): 1.54,
    (1024, 12): 1.22, (1024, 8): 1.20, (1024, 4): 1.21, (1024, 2): 1.27, (1024, 1): 1.49}


def grid_readings(losses, sd=None, n=1):
    from tinystories import sweep_report
    cell = {k: {'val_loss': v, 'n': n} for k, v in losses.items()}
    widths, depths = sorted({w for w, _ in losses}), sorted({d for _, d in losses})
    return sweep_report.grid_findings(cell, widths, depths, sd)[:2]


def test_grid_rule_reads_the_papers_table_as_reproduced():
    width, depth = grid_readings(PAPER_LOSS)
    assert width.startswith('- Loss falls with width: **reproduced** (18 of 21 neighbouring pairs'), width
    assert depth.startswith('- Loss falls with depth: **reproduced** (18 of 20 neighbouring pairs'), depth


def test_grid_rule_reads_flat_and_noisy_grids_as_not_shown():
    import random
    flat = {k: 1.5 for k in PAPER_LOSS}
    zigzag = {(w, d): 1.5 + 0.05 * (-1) ** (i + j) for i, w in enumerate(sorted({w for w, _ in PAPER_LOSS}))
              for j, d in enumerate(sorted({d for _, d in PAPER_LOSS})) if (w, d) in PAPER_LOSS}
    rng = random.Random(0)
    noise = {k: 1.5 + rng.gauss(0, 0.05) for k in PAPER_LOSS}
    for grid in (flat, zigzag, noise):
        for line in grid_readings(grid):
            assert '**not reproduced** (not shown:' in line, line
    # the paper's table plus noise far larger than its steps: the spread, measured, says not shown
    for line in grid_readings(PAPER_LOSS, sd=0.5, n=2):
        assert '**not reproduced** (not shown:' in line, line


def test_grid_rule_on_a_small_grid_needs_repeats():
    small = {(64, 2): 2.38, (64, 8): 2.08, (128, 2): 1.92, (128, 8): 1.65}
    for line in grid_readings(small):  # 2 pairs an axis: a sign test cannot tell them from noise
        assert '**not tested at this scale**' in line, line
    for line in grid_readings(small, sd=0.01, n=2):  # repeats measured a spread well below the steps
        assert '**reproduced**' in line and 'by more than two standard errors' in line, line
    from tinystories import sweep_report
    assert sweep_report.trend_reading([]) == ('not tested at this scale', 'one value on this axis')


def test_heads_rule_needs_a_gain_beyond_the_spread():
    from tinystories import sweep_report
    runs = lambda losses, h, w=64: [{'run': f'r{h}_{k}', 'n_embd': w, 'n_layer': 2, 'n_head': h,
                                    'val_loss': x, 'val_bpb': x / 3} for k, x in enumerate(losses)]
    flat = [runs([x], h)[0] for h, x in zip((2, 4, 8, 16), (3.845, 3.849, 3.842, 3.843))]
    cells = sweep_report.shape_cells(flat)
    rows = [dict(cells[64, 2, h], n_head=h) for h in (2, 4, 8, 16)]
    assert sweep_report.heads_reading(rows, None)[0] == 'not tested at this scale'  # no spread: no reading
    # the same flat curve, each shape trained twice: the spread swallows it
    repeated = runs([3.845, 3.850], 2) + runs([3.849, 3.846], 4) + runs([3.842, 3.847], 8) + runs([3.843, 3.841], 16)
    cells = sweep_report.shape_cells(repeated)
    assert cells[64, 2, 2]['n'] == 2 and cells[64, 2, 2]['val_loss'] == pytest.approx(3.8475)
    assert cells[64, 2, 2]['sd'] == pytest.approx(0.005 / math.sqrt(2))
    rows = [dict(cells[64, 2, h], n_head=h) for h in (2, 4, 8, 16)]
    v, why = sweep_report.heads_reading(rows, sweep_report.pooled_sd(rows))
    assert v == 'not reproduced' and why.startswith('not shown:')
    # a gain as the paper's (0.045 nats) against a spread of about 0.003: reproduced
    gain = runs([1.230, 1.236], 2) + runs([1.205, 1.201], 4) + runs([1.190, 1.186], 8)
    cells = sweep_report.shape_cells(gain)
    rows = [dict(cells[64, 2, h], n_head=h) for h in (2, 4, 8)]
    assert sweep_report.heads_reading(rows, sweep_report.pooled_sd(rows))[0] == 'reproduced'


def test_repeats_and_a_changed_probe_file_rescores(tmp_path, data):
    """repeats=2 trains each shape twice (the first under today's name, the second with the next
    seed); changing the probe file rescores every run on the next invocation, training nothing."""
    probes_file = tmp_path / 'p.jsonl'
    probes_file.write_text(json.dumps({'category': 'context', 'prompt': 'Tom had a ball and a kite. He took the',
                                       'answer': 'ball.', 'distractors': ['kite.']}) + '\n')
    sweep_dir = str(tmp_path / 'rep')
    args = [a for a in sweep_cmd(data, sweep_dir) if not a.startswith(('--widths', '--depths', '--max_iters'))]
    args += ['--widths=16', '--depths=1', '--max_iters=3', '--repeats=2', f'--probes_file={probes_file}']
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    first = read_jsonl(os.path.join(sweep_dir, 'results.jsonl'))
    assert [(x['run'], x['repeat'], x['seed']) for x in first] == [('w16_d1_h2', 0, 1337), ('w16_d1_h2_r2', 1, 1338)]
    assert first[0]['val_loss'] != first[1]['val_loss'] and first[0]['context_items'] == 1
    assert first[0]['context_copy_most'] == 0.5 and first[0]['context_copy_last'] == 0.0
    report = open(os.path.join(sweep_dir, 'report.md')).read()
    assert '+- ' in report and '(n=2)' in report  # the grid cell: mean +- spread over the repeats
    # the same command again: nothing to do
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '(2 done)' in r.stdout, r.stderr[-2000:]
    # a changed probe file: both runs rescored (a newer record each), neither trained again
    with open(probes_file, 'a') as f:
        f.write(json.dumps({'category': 'context', 'prompt': 'Mia saw a cat and a dog. She fed the',
                            'answer': 'dog.', 'distractors': ['cat.']}) + '\n')
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '(0 done)' in r.stdout, r.stderr[-2000:]
    records = read_jsonl(os.path.join(sweep_dir, 'results.jsonl'))
    assert len(records) == 4 and all(x['context_items'] == 2 for x in records[2:])
    assert records[2]['probes_sha256'] != records[0]['probes_sha256']
    for run in ('w16_d1_h2', 'w16_d1_h2_r2'):
        assert train_invocations(os.path.join(sweep_dir, run)) == ['scratch']


def test_instruct_section_reports_graded_following():
    from tinystories.sweep_report import instruct_section
    row = {'run': 'w64_d2_h4', 'instruct_holdout': 'Summary,Words', 'instruct_prompts': 10,
           'instruct_none_words': 0.1, 'instruct_none_summary_nouns': 0.1,
           'instruct_Summary+Words_words': 0.5, 'instruct_Summary+Words_summary_nouns': 0.4}
    text = '\n'.join(instruct_section([row]))
    assert 'not tested at this scale' in text and '**reproduced** (words 50.0% vs 10.0%' in text
    graded = dict(row, instruct_following=6.5, instruct_following_held_out=6.0, instruct_following_seen=7.0, graded=10)
    assert '| w64_d2_h4 | 6.50 | 6.00 | 7.00 | 10 |' in '\n'.join(instruct_section([graded]))


def test_flops_table_has_one_row_per_budget_when_shapes_repeat(tmp_path):
    """Two repeats of one shape spend the same FLOPs: one row for that budget, its better run."""
    from tinystories import sweep_report
    run = lambda name, w, d, loss, params: {  # noqa: E731
        'run': name, 'n_embd': w, 'n_layer': d, 'n_head': 4, 'params_no_emb': params, 'tokens': 100,
        'flops_per_token': params * 6, 'val_loss': loss, 'val_curve': [[50, loss + 0.5], [100, loss]]}
    results = [run('w64_d2_h4', 64, 2, 2.90, 1000), run('w64_d2_h4_r2', 64, 2, 2.88, 1000),
               run('w128_d2_h4', 128, 2, 2.50, 4000)]
    lines = sweep_report.flops_section(results, str(tmp_path))
    rows = [line for line in lines if line.startswith('| 6.00e+05')]
    assert rows == ['| 6.00e+05 | w64_d2_h4_r2 | 1,000 | 2.880 |'], lines
    assert any('**reproduced** (w64_d2_h4_r2 -> w128_d2_h4)' in line for line in lines), lines
