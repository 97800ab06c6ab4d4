# Instruct generalisation (the paper's Figure 13) at CPU scale, one command:
#   python sweep.py config/sweep_instruct.py
# makes offline-generator records with every instruction field (sweep_dir/records), prepares
# them with --format=instruct and no training prompt holding Summary and Words together
# (sweep_dir/data), trains each shape, then prompts it from fresh records (another seed) with
# no instruction, Summary alone, Words alone (seen) and Summary + Words (never seen together),
# and scores the required words used and the summary's nouns used. The records come from the
# offline generator (template stories), not from TinyStories-Instruct: the report says so.
sweep_dir = 'out/sweep_instruct'
instruct_holdout = 'Summary,Words'
instruct_stories = 20000
instruct_eval_items = 100
widths = [64]
depths = [1, 2]            # the paper: instruction following needs 2+ layers
heads = [4]
max_iters = 400
probes = False             # the probes are plain-story prompts: not what this study measures
batch_size = 16
block_size = 256
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 40
eval_interval = 100
eval_iters = 10
log_interval = 10
progress = False
title = 'Instruct generalisation at CPU scale'
