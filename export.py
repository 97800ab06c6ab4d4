"""
Export a model to a Hugging Face folder that transformers loads with no custom code, or to the two
files llama2.c's run.c runs.

    python export.py --out_dir=out/demo --hf_dir=hf/demo
    python -c "from transformers import pipeline; print(pipeline('text-generation', 'hf/demo')(
               '<|endoftext|>Once upon a time', max_new_tokens=100)[0]['generated_text'])"
    python export.py --out_dir=out/llama --llama2c_dir=llama2c/demo      # a Llama-style model
    ./run llama2c/demo/model.bin -z llama2c/demo/tokenizer.bin -t 0 -i ""  # llama2.c's run.c

--hf_dir's folder holds:
- config.json + model.safetensors: GPT-2's architecture (GPT2LMHeadModel) for a model without
  local attention, GPT-Neo's (GPTNeoForCausalLM) for one with it, Llama's (LlamaForCausalLM) for a
  Llama-style one (RMSNorm, rotary, SwiGLU: llama2c.py's layout, the query and key rows in Hugging
  Face's rotary order). The weights are mapped exactly; a model that none can hold (GPT-Neo has no
  query biases) is a one-line error saying why.
- tokenizer.json (+ tokenizer_config.json): our tiktoken tokenizer written as a byte-level BPE
  that encodes every string exactly as ours does (hf.tokenizer_json), or a llama2.c tokenizer as
  a BPE with byte fallback (llama2c_tokenizer.tokenizer_json); and a chat template
  (CHAT_TEMPLATE) so that OpenAI-compatible servers can serve the model on the chat endpoint.
- generation_config.json: the start token (<|endoftext|>, or <s>) as bos, the stop token as eos.
- README.md: how the model was trained (config, data, val bits/byte from log.jsonl), and that it
  expects the start token before a prompt, as every story in training had one.
--llama2c_dir's folder holds model.bin (llama2.c's legacy fp32 format, version 0: the only one
run.c reads), tokenizer.bin and a README.md; only a Llama-style model with run.c's fixed RMSNorm
eps (1e-5) and rotary theta (10000) fits (a GPT-2-style one is a one-line error saying why). A
model of a llama2.c tokenizer gets that tokenizer's own file, byte for byte. A model of our BPE is
remapped (llama2c_tokenizer.runc_layout): run.c wants <unk>, BOS, EOS at ids 0-2 and the 256 bytes
at 3-258, so the ids are permuted (EOT -> BOS, byte b -> b + 3, merged tokens after, scored minus
their rank) and so are the embedding and output rows: the model computes the same function. What
run.c then does exactly as sample.py: the model, decoding, and greedy stories from an empty prompt
(BOS alone). Not exactly: run.c encodes a prompt with a space in front and without tiktoken's
pre-splitting, so a prompt's ids can differ from ours (docs/llama.md says when).
The folder is written beside it (.NAME.partial) and renamed into place only when complete;
--overwrite moves the old one aside (.NAME.old) before and deletes it after, so a kill at any
moment leaves one complete export, and the next run finishes the swap. One export at a time
writes a folder: the lock is the sibling file .NAME.lock (inside, it would be replaced with the
folder). The folder may not be, hold, or lie inside the model being exported.
"""
import json
import os
import shutil

from dataclasses import asdict

from tinystories import llama2c
from tinystories.atomic_write import atomic_write
from tinystories.configurator import Key, configure
from tinystories.dirlock import lock_beside
from tinystories.llama2c_tokenizer import HF_SPECIALS, runc_layout, tokenizer_bin

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model to export: a run of ours (or any location checkpoint.load_run accepts)")
hf_dir = Key('', "the Hugging Face model folder to write")
llama2c_dir = Key('', "instead of hf_dir: the folder to write for llama2.c's run.c (model.bin, tokenizer.bin)")
overwrite = Key(False, "replace the folder if it exists")
# -----------------------------------------------------------------------------
config = configure(globals())
target = hf_dir or llama2c_dir  # the folder this run writes
flag = '--hf_dir' if hf_dir else '--llama2c_dir'

# The chat template for a story model (Jinja, as transformers, vLLM and llama.cpp read it). The
# model follows no instructions: it continues a story. So a conversation becomes the start of a
# story: the token every training story came after (bos_token: our <|endoftext|>, a Llama-style
# tokenizer's <s>), then the messages' text in order, the model's own earlier answers included
# as the story's continuation. System messages are left out: they are instructions, not story.
# No generation prompt is added: the answer is the story's next words.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{% endfor %}")


def fail(msg):
    raise SystemExit(f"error: {msg}")


def last_eval(run_dir):
    """The final (else the latest) val record of the run's log.jsonl, or None."""
    from tinystories.records import read_log
    evals = [r for r in read_log(run_dir) if r.get('val_bpb') is not None]
    return next((r for r in evals if r.get('final')), evals[-1] if evals else None)


def readme(name, model, info, hf_cfg, tok):
    c, cfg = model.config, info.get('config') or {}
    meta, ev = info.get('meta') or {}, last_eval(info['report_dir'])
    start, stop = (special_text(tok, i) for i in (tok.start_token, tok.stop_token))
    arch = hf_cfg['architectures'][0]
    local = f", local attention over {c.window_size} tokens on odd layers" if c.window_size else ''
    lines = [f"# {name}", "",
             f"A TinyStories model (Eldan & Li 2023) trained from scratch with this project's "
             f"train.py and exported by export.py as `{arch}`.", "",
             f"- **Shape**: {c.n_layer} layers, hidden {c.n_embd}, {c.n_head} heads, context "
             f"{c.block_size}{local}; {model.num_params():,} parameters; vocabulary {c.vocab_size}.",
             f"- **Data**: {cfg.get('data_dir') or 'unknown'}" + (
                 f" (source {meta.get('source')}, tokenizer {meta.get('tokenizer')}, "
                 f"{meta['splits']['train']['tokens']:,} training tokens)" if meta.get('splits') else ''),
             f"- **Training**: {info.get('iter_num')} steps.",
             "- **Validation**: " + (
                 f"{ev['val_bpb']:.4f} bits per byte on the val split at step {ev['iter']}"
                 + (" (the final whole-split evaluation)" if ev.get('final') else " (an estimate)")
                 if ev else "not recorded (no log.jsonl)."), "",
             f"Every training story came after `{start}` (id {tok.start_token}), so put it before a "
             f"prompt; the model ends a story with `{stop}` (id {tok.stop_token}). Its context is {c.block_size} tokens "
             f"(`model_max_length`): the prompt and the new tokens together must fit in it (past "
             f"it, transformers fails with an IndexError), hence `max_new_tokens` below:", "",
             "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f"tok = AutoTokenizer.from_pretrained('{name}')",
             f"model = AutoModelForCausalLM.from_pretrained('{name}')",
             "ids = tok(tok.bos_token + 'Once upon a time', add_special_tokens=False, return_tensors='pt').input_ids",
             "out = model.generate(ids, max_new_tokens=tok.model_max_length - ids.shape[1], "
             "do_sample=True, top_k=50)",
             "print(tok.decode(out[0, 1:], skip_special_tokens=True))",
             "```", "",
             "## Serving it",
             "",
             f"The tokenizer carries a chat template for a story model: `{start}`, then the "
             "messages' text as the story's beginning (system messages left out), so an "
             "OpenAI-compatible server serves the model on `/v1/chat/completions` as well as "
             "`/v1/completions`; the answer is the story's continuation. With transformers "
             "(`pip install \"transformers[serving]\"`):", "",
             "```sh",
             f"transformers serve ./{name} --host 127.0.0.1 --port 8000 --device cpu",
             "curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '"
             f'{{"model": "./{name}", "messages": [{{"role": "user", "content": "Once upon a time"}}], '
             f'"max_tokens": {max(1, min(200, c.block_size // 2))}}}\'',
             "```", "",
             f"A request whose prompt and `max_tokens` exceed the {c.block_size}-token context fails "
             "(transformers serve answers HTTP 500).", ""]
    if cfg:
        lines += ["The training configuration (train.py's keys):", "", "```json",
                  json.dumps(cfg, indent=1, sort_keys=True, default=str), "```", ""]
    return '\n'.join(lines)


def inside(path, folder):
    """Whether path is folder or somewhere below it (symlinks resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_target(source):
    """The folder is deleted and replaced: it must not be the model's folder (or file), hold it or
    lie in it (`--out_dir=RUN --hf_dir=RUN --overwrite` would delete the run), nor hold the working
    folder."""
    if inside(target, source) or inside(source, target):
        fail(f"{flag}={target} {'is' if inside(target, source) and inside(source, target) else 'overlaps'} "
             f"the model being exported ({source}): give a folder of its own, e.g. {flag}=hf/NAME")
    if inside(os.getcwd(), target):
        fail(f"{flag}={target} holds the current folder: give a folder of its own, e.g. {flag}=hf/NAME")


def sibling(suffix):
    """A hidden name beside the folder (same filesystem, so renames are atomic): .NAME.partial ..."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f'.{name}.{suffix}')


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def recover(old):
    """Finish what a killed export left (under the lock, so nobody else is writing): the old
    export set aside but the new one not yet in place goes back; set aside and replaced, it goes."""
    if os.path.lexists(old):
        if os.path.lexists(target):
            remove(old)
        else:
            os.replace(old, target)


def special_text(tok, i):
    """How tokenizer_config.json names a special token: our <|endoftext|>, or Llama's <s> / </s>."""
    return HF_SPECIALS[i] if tok.kind == 'llama2c' else tok.encoding.decode([i])


def hf_files(model, tok, info):
    """{file name: contents} of a Hugging Face folder, every conversion done (its errors first)."""
    from safetensors.torch import save
    from tinystories import hf
    from tinystories.llama2c_tokenizer import tokenizer_json
    if hf.llama_switches(model.config):
        c = llama2c.config_from_gpt(asdict(model.config), run_c=False)
        hf_cfg = dict(llama2c.hf_config(c, model.config.norm_eps, model.config.rope_theta))
        weights = llama2c.hf_state_dict(llama2c.weights_from_gpt(model.state_dict(), c), c)
        if c['tied']:
            del weights['lm_head.weight']  # transformers ties it to the embedding itself
        weights = {k: v.detach().float().contiguous().clone() for k, v in weights.items()}
    else:
        hf_cfg = hf.hf_config(model.config, tok.start_token)
        weights = hf.hf_weights(model)  # the one-line error, if the model cannot be represented
    hf_cfg.update(bos_token_id=tok.start_token, eos_token_id=tok.stop_token)
    start, stop = (special_text(tok, i) for i in (tok.start_token, tok.stop_token))
    # PreTrainedTokenizerFast: tokenizer.json as it is (GPT2Tokenizer would rebuild GPT-2's regex)
    tok_cfg = {'tokenizer_class': 'PreTrainedTokenizerFast', 'bos_token': start, 'eos_token': stop,
               'model_max_length': model.config.block_size, 'clean_up_tokenization_spaces': False,
               'chat_template': CHAT_TEMPLATE}
    if tok.kind == 'llama2c':
        tok_cfg['unk_token'] = HF_SPECIALS[0]
    dump = lambda obj: json.dumps(obj, indent=1) + '\n'
    return {'model.safetensors': save(weights, metadata={'format': 'pt'}),
            'config.json': dump(hf_cfg),
            'generation_config.json': dump({'bos_token_id': tok.start_token, 'eos_token_id': tok.stop_token}),
            'tokenizer.json': dump(tokenizer_json(tok) if tok.kind == 'llama2c' else hf.tokenizer_json(tok.encoding)),
            'tokenizer_config.json': dump(tok_cfg),
            'README.md': readme(os.path.basename(os.path.abspath(target)), model, info, hf_cfg, tok)}


def llama2c_files(model, tok, info):
    """{file name: contents} for run.c: model.bin (legacy fp32), tokenizer.bin, README.md."""
    c = llama2c.config_from_gpt(asdict(model.config))  # a GPT-2-style model: the one-line refusal
    weights = llama2c.weights_from_gpt(model.state_dict(), c)
    if tok.kind == 'llama2c':
        if tok.vocab_size != c['vocab_size']:
            fail(f"the model has {c['vocab_size']} token embeddings but its tokenizer {tok.vocab_size} "
                 f"pieces: run.c reads as many pieces as embeddings")
        data, how = tok.data, "the model's own llama2.c tokenizer, unchanged"
    else:
        pieces, scores, order = runc_layout(tok.encoding._mergeable_ranks, tok.start_token, c['vocab_size'])
        for name in ('tok_embeddings.weight', 'output.weight'):
            if name in weights:
                weights[name] = weights[name][order]  # row i of the file is our token order[i]
        data, how = tokenizer_bin(pieces, scores), ("our BPE remapped to run.c's layout: <|endoftext|> is "
                                                   "BOS (1), byte b is b + 3, the merged tokens after")
    name = os.path.basename(os.path.abspath(target))
    text = '\n'.join([
        f"# {name}", "",
        f"A TinyStories model of this project in llama2.c's legacy fp32 format (run.c's), "
        f"{c['n_layers']} layers, dim {c['dim']}, {c['n_heads']} heads ({c['n_kv_heads']} key/value), "
        f"vocabulary {c['vocab_size']}, context {c['seq_len']}. tokenizer.bin: {how}.", "",
        "```sh", "./run model.bin -z tokenizer.bin -t 0 -n 256 -i \"\"   # greedy, from BOS alone", "```", "",
        "run.c starts from BOS and stops when the model writes it (the end of a story). It encodes a "
        "prompt with a space in front" + ("." if tok.kind == 'llama2c' else
                                          " and without our BPE's pre-splitting, so a prompt's ids can differ "
                                          "from the ones the model was trained on; an empty prompt is exact."), ""])

    def write_model(path):
        llama2c.write_checkpoint(path, weights, c, version=0)
    return {'model.bin': write_model, 'tokenizer.bin': data, 'README.md': text}


def main():
    if bool(hf_dir) == bool(llama2c_dir):
        fail("name the one folder to write: --hf_dir=DIR (a Hugging Face model) or --llama2c_dir=DIR "
             "(llama2.c's run.c)")
    if not out_dir.startswith('hf:'):  # a run's folder, or a llama2.c file alone (not the folder it is in)
        check_target(out_dir if os.path.isdir(out_dir) or out_dir.endswith('.bin')
                     else os.path.dirname(os.path.abspath(out_dir)))
    lock_beside(target, 'export.py run')  # beside, not inside: the folder itself is replaced
    tmp, old = sibling('partial'), sibling('old')
    recover(old)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)) and not overwrite:
        fail(f"{target} exists: --overwrite to replace it")
    from tinystories.checkpoint import load_run
    model, tok, info = load_run(out_dir, 'cpu')
    for source in [info.get('model_dir') or info['report_dir'], *info.get('model_files', [])]:
        check_target(source)  # an hf: download's own folder too; a llama2.c file and its tokenizer
    files = (hf_files if hf_dir else llama2c_files)(model, tok, info)

    remove(tmp)  # a killed export's half-written folder
    os.makedirs(tmp)
    for name, contents in files.items():
        path = os.path.join(tmp, name)
        contents(path) if callable(contents) else atomic_write(path, contents)
    # old aside, new in, then old deleted: at every moment one complete export exists (recover()
    # puts the old one back if a kill comes between the two renames)
    if os.path.lexists(target):
        os.replace(target, old)
    os.replace(tmp, target)
    remove(old)
    what = (json.loads(files['config.json'])['architectures'][0] if hf_dir
            else "llama2.c's legacy fp32 format and tokenizer.bin")
    print(f"wrote {target}: {what}, {model.num_params():,} parameters, vocabulary {model.config.vocab_size}"
          + ("; transformers' AutoModelForCausalLM and AutoTokenizer load it" if hf_dir else "; run.c runs it"))


if __name__ == '__main__':
    main()
