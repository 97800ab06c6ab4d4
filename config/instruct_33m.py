# TinyStories-Instruct-33M: the ts_33m shape trained on the Instruct layout
# (prepare.py --format=instruct: Summary / Features / Sentence / Words lines, then Story).
# Prompt it through sample.py with any subset of those lines followed by 'Story:'.
n_embd = 768
n_layer = 4
n_head = 16
window_size = 256
qkv_bias = False          # GPT-Neo has no q/k/v biases: these models export to it (export.py)
# optimiser: train.py's defaults, the paper's (AdamW, lr 5e-4, weight decay 0.1,
# betas 0.9/0.95, context 512)
out_dir = 'out/instruct_33m'
data_dir = 'data/ts_instruct'

warmup_iters = 500
max_iters = 30000
batch_size = 64          # x 512 tokens x grad_accum = 65k tokens per step
grad_accum = 2
eval_interval = 1000
compile = True
