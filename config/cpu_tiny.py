# The demo's model: the best quality we found for 10 minutes on 2 CPU cores (see the README's
# table of what we tried). Run: python train.py config/cpu_tiny.py --data_dir=data/ts
n_layer = 4
n_head = 4
n_embd = 192
block_size = 256
window_size = 0
dropout = 0.0

batch_size = 16
grad_accum = 1
learning_rate = 2e-3
min_lr = 1e-4
warmup_iters = 100
schedule = 'cosine'
weight_decay = 0.1
max_minutes = 10.0
eval_interval = 250
eval_iters = 10
out_dir = 'out/cpu_tiny'
