# The paper's depth effect at small width, at CPU scale (sweep.py; issue 23): hidden 64 and 128 x
# 2 and 8 layers, each to 10M tokens of the 9.6 MB train sample (about 4 passes over its 2.6M
# tokens: the report's results table gives each run's final train loss beside its val loss, so
# overfitting shows). The paper: from 2 to 8 layers the eval loss falls 0.30 nats at hidden 64
# (2.38 -> 2.08) and 0.27 at hidden 128 (1.92 -> 1.65), on the full TinyStories.
#   python sweep.py config/sweep_depth_small.py --data_dir=data/ts2k
# then one shape again with the next seed, for the run-to-run spread the readings weigh the
# effect against (same sweep_dir; the first run is the one above, reused), and the whole report:
#   python sweep.py config/sweep_depth_small.py --data_dir=data/ts2k --widths=64 --depths=2 --repeats=2
#   python sweep.py config/sweep_depth_small.py --report_only
# Measured: about 45 minutes for the five runs on 2 quiet CPU cores (hidden 128 / 8 layers: 12,000
# tokens/s). Kill it at any moment and run the same command again to resume. Results and readings:
# docs/experiments.md ("Depth at small width").
sweep_dir = 'out/sweep_depth_small'
widths = [64, 128]
depths = [2, 8]
heads = [4]
max_tokens = 10_000_000    # / (16 x 256) = 2,442 steps per run
batch_size = 16
block_size = 256
learning_rate = 2e-3       # small models: a higher peak rate than the paper's 5e-4 (as config/sweep_grid.py)
min_lr = 2e-4
warmup_iters = 100
eval_interval = 250
eval_iters = 10
log_interval = 25
progress = False
threads = 2
title = 'Depth at small width, CPU scale (hidden 64/128 x 2/8 layers, 10M tokens per run)'
