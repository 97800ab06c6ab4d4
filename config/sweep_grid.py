# The paper's width x depth grid at CPU scale (sweep.py): hidden 32/64/128 x 1/2/4 layers, a few
# minutes each on 2 CPU cores (about 35 minutes in all), a fixed step budget so the results do not
# depend on how busy the machine is. The paper's full grid for a GPU: config/sweep_paper.py.
#   python sweep.py config/sweep_grid.py --data_dir=data/ts2k --sweep_dir=out/sweep_grid
sweep_dir = 'out/sweep_grid'
widths = [32, 64, 128]
depths = [1, 2, 4]
heads = [4]
max_iters = 500            # 500 x 16 x 256 = 2.0M tokens per run (~0.8 epoch of the 9.6 MB sample)
# train.py keys, for every run
batch_size = 16
block_size = 256
learning_rate = 2e-3       # small models, short runs: a higher peak rate than the paper's 5e-4
min_lr = 2e-4
warmup_iters = 50
eval_interval = 100
eval_iters = 10
log_interval = 10
progress = False
threads = 2
title = 'Width x depth grid at CPU scale'
