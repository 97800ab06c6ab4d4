# TinyStories-Instruct-8M: the ts_8m shape trained on the Instruct layout
# (prepare.py --format=instruct: Summary / Features / Sentence / Words lines, then Story).
# Prompt it through sample.py with any subset of those lines followed by 'Story:'.
n_embd = 256
n_layer = 8
n_head = 16
block_size = 512
window_size = 256
dropout = 0.0
out_dir = 'out/instruct_8m'
data_dir = 'data/ts_instruct'

learning_rate = 5e-4
min_lr = 5e-5
weight_decay = 0.1
beta1, beta2 = 0.9, 0.95
warmup_iters = 500
max_iters = 30000
batch_size = 64          # x 512 tokens x grad_accum = 65k tokens per step
grad_accum = 2
eval_interval = 1000
compile = True
