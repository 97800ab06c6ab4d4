# TinyStories-8M: hidden 256, 8 layers
# The paper's shape (GPT-Neo family: 16 heads, alternating global/local attention with a
# 256-token window, context 512). Run: python train.py config/ts_8m.py --data_dir=data/ts
# Trained on a GPU for hours in the paper: sized for one GPU here (bf16 autocast, compile).
n_embd = 256
n_layer = 8
n_head = 16
window_size = 256
qkv_bias = False          # GPT-Neo has no q/k/v biases: these models export to it (export.py)
# optimiser: train.py's defaults, the paper's (AdamW, lr 5e-4, weight decay 0.1,
# betas 0.9/0.95, context 512)
out_dir = 'out/ts_8m'

warmup_iters = 500
max_iters = 30000
batch_size = 64          # x 512 tokens x grad_accum = 65k tokens per step
grad_accum = 2
eval_interval = 1000
compile = True
