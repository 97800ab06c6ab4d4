# The paper's grid on a GPU (sweep.py): hidden 64-1024 x layers 1-12, its GPT-Neo shapes
# (16 heads, alternating global / 256-token local attention, context 512), on the full
# TinyStories V2 prepared with prepare.py (--data_dir). One command:
#   python sweep.py config/sweep_paper.py --data_dir=data/tinystories --sweep_dir=out/sweep_paper
# Budget: 500M tokens per run (about one epoch of TinyStories V2). Expected cost per run on one
# H100/H200, extrapolated from measured tokens/s of nanoGPT's model (not this repo's, on those
# cards: about 1.65M tokens/s at hidden 768 / 4 layers, about 2M at hidden 64 / 8 layers) by
# training FLOPs per token: ~4 min for every model up to hidden 512 / 4 layers, 5 min at
# 768 / 4, 10 min at 768 / 8, 14 min at 768 / 12, 9-25 min at hidden 1024 with 4-12 layers;
# about 3 hours for all 30 runs. Add gpt_eval = True and a grader for the paper's GPT-Eval table.
sweep_dir = 'out/sweep_paper'
widths = [64, 128, 256, 512, 768, 1024]
depths = [1, 2, 4, 8, 12]
heads = [16]
max_tokens = 500_000_000
window_size = 256
batch_size = 64            # x 512 tokens x grad_accum 2 = 65k tokens per step, as config/ts_33m.py
grad_accum = 2
block_size = 512
warmup_iters = 500
eval_interval = 1000
compile = True
progress = False
title = "The paper's width x depth grid (TinyStories V2, 500M tokens per run)"
