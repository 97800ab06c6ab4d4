# The paper's 1-layer, 16-head shape (its interpretability model, section 6) at a width a CPU
# trains in about 10 minutes, as a one-run sweep; then look inside it with interpret.py:
#   python sweep.py config/sweep_1layer.py --data_dir=data/ts2k
#   python interpret.py --out_dir=out/sweep_1layer/w256_d1_h16
sweep_dir = 'out/sweep_1layer'
widths = [256]
depths = [1]
heads = [16]
max_iters = 500
batch_size = 16
block_size = 256
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 50
eval_interval = 100
eval_iters = 10
log_interval = 10
progress = False
threads = 2
title = 'The 1-layer, 16-head model at CPU scale'
