# The paper's heads study at CPU scale (sweep.py): one shape, 2/4/8/16 heads, the same training
# as config/sweep_grid.py. The paper: the number of heads matters little once past a few.
#   python sweep.py config/sweep_heads.py --data_dir=data/ts2k
sweep_dir = 'out/sweep_heads'
widths = [64]
depths = [2]
heads = [2, 4, 8, 16]
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
title = 'Heads study at CPU scale (hidden 64, 2 layers)'
