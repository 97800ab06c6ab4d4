# nanoGPT's CPU recipe (its README's "I only have a macbook" run: 4 layers, 4 heads, hidden 128,
# context 64, batch 12, lr 1e-3, dropout 0, with its Shakespeare config's min_lr 1e-4, beta2 0.99,
# warmup 100; nanoGPT's defaults: no biases, weight decay 0.1, gradient clipping at 1.0), trained
# with this repo's train.py on the same bins as config/cpu_tiny.py: the baseline of issue 24's CPU
# recipe comparison (docs/measurements.md). nanoGPT's own train.py is not run here. Measured: 0.9367
# +- 0.0039 bits/byte in the 13,570 steps 10 minutes of 2 cores buy it (3 seeds); cpu_tiny: 0.8575.
#   python train.py config/cpu_nanogpt.py --data_dir=data/ts_cpu
vocab_size = 2048          # prepare.py: the same bins as cpu_tiny
n_layer = 4
n_head = 4
n_embd = 128
block_size = 64
dropout = 0.0
bias = False

batch_size = 12
grad_accum = 1
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
schedule = 'cosine'
weight_decay = 0.1
beta2 = 0.99
grad_clip = 1.0
muon_lr = 0.0              # AdamW for everything
dtype = 'float32'
max_minutes = 10.0
eval_interval = 250
eval_iters = 10
out_dir = 'out/cpu_nanogpt'
