"""
Export a model to a Hugging Face folder that transformers loads with no custom code.

    python export.py --out_dir=out/demo --hf_dir=hf/demo
    python -c "from transformers import pipeline; print(pipeline('text-generation', 'hf/demo')(
               '<|endoftext|>Once upon a time', max_new_tokens=100)[0]['generated_text'])"

The folder holds:
- config.json + model.safetensors: GPT-2's architecture (GPT2LMHeadModel) for a model without
  local attention, GPT-Neo's (GPTNeoForCausalLM) for one with it. hf.py maps the weights exactly;
  a model that neither can hold (GPT-Neo has no query biases) is a one-line error saying why.
- tokenizer.json (+ tokenizer_config.json): our tiktoken tokenizer written as a byte-level BPE
  that encodes every string exactly as ours does (hf.tokenizer_json), and a chat template
  (CHAT_TEMPLATE) so that OpenAI-compatible servers can serve the model on the chat endpoint.
- generation_config.json: <|endoftext|> as bos and eos.
- README.md: how the model was trained (config, data, val bits/byte from log.jsonl), and that it
  expects <|endoftext|> before a prompt, as every story in training had one.
The folder is written beside hf_dir (.NAME.partial) and renamed into place only when complete;
--overwrite moves the old one aside (.NAME.old) before and deletes it after, so a kill at any
moment leaves one complete export, and the next run finishes the swap. One export at a time
writes hf_dir: the lock is the sibling file .NAME.lock (inside, it would be replaced with the folder).
hf_dir may not be, hold, or lie inside the model being exported.
"""
import json
import os
import shutil

from tinystories.atomic_write import atomic_write
from tinystories.configurator import Key, configure
from tinystories.dirlock import lock_beside

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model to export: a run of ours (or any location checkpoint.load_run accepts)")
hf_dir = Key('', "the Hugging Face model folder to write")
overwrite = Key(False, "replace hf_dir if it exists")
# -----------------------------------------------------------------------------
config = configure(globals())

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


def readme(name, model, info, hf_cfg):
    c, cfg = model.config, info.get('config') or {}
    meta, ev = info.get('meta') or {}, last_eval(info['report_dir'])
    eot = info['tokenizer']['eot_token']
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
             f"Every training story came after `<|endoftext|>` (id {eot}), so put it before a "
             f"prompt; the model ends a story with it too. Its context is {c.block_size} tokens "
             f"(`model_max_length`): the prompt and the new tokens together must fit in it (past "
             f"it, transformers fails with an IndexError), hence `max_new_tokens` below:", "",
             "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f"tok = AutoTokenizer.from_pretrained('{name}')",
             f"model = AutoModelForCausalLM.from_pretrained('{name}')",
             "ids = tok(tok.eos_token + 'Once upon a time', return_tensors='pt').input_ids",
             "out = model.generate(ids, max_new_tokens=tok.model_max_length - ids.shape[1], "
             "do_sample=True, top_k=50)",
             "print(tok.decode(out[0, 1:], skip_special_tokens=True))",
             "```", "",
             "## Serving it",
             "",
             "The tokenizer carries a chat template for a story model: `<|endoftext|>`, then the "
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
    """hf_dir is deleted and replaced: it must not be the model's folder, hold it or lie in it
    (`--out_dir=RUN --hf_dir=RUN --overwrite` would delete the run), nor hold the working folder."""
    if inside(hf_dir, source) or inside(source, hf_dir):
        fail(f"--hf_dir={hf_dir} {'is' if inside(hf_dir, source) and inside(source, hf_dir) else 'overlaps'} "
             f"the model being exported ({source}): give a folder of its own, e.g. --hf_dir=hf/NAME")
    if inside(os.getcwd(), hf_dir):
        fail(f"--hf_dir={hf_dir} holds the current folder: give a folder of its own, e.g. --hf_dir=hf/NAME")


def sibling(suffix):
    """A hidden name beside hf_dir (same filesystem, so renames are atomic): .NAME.partial ..."""
    parent, name = os.path.split(os.path.abspath(hf_dir))
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
        if os.path.lexists(hf_dir):
            remove(old)
        else:
            os.replace(old, hf_dir)


def main():
    if not hf_dir:
        fail("--hf_dir=DIR names the folder to write")
    if not out_dir.startswith('hf:'):
        check_target(out_dir if os.path.isdir(out_dir) else os.path.dirname(os.path.abspath(out_dir)))
    lock_beside(hf_dir, 'export.py run')  # beside, not inside: hf_dir itself is replaced
    tmp, old = sibling('partial'), sibling('old')
    recover(old)
    if os.path.exists(hf_dir) and (not os.path.isdir(hf_dir) or os.listdir(hf_dir)) and not overwrite:
        fail(f"{hf_dir} exists: --overwrite to replace it")
    from tinystories import hf
    from tinystories.checkpoint import load_run
    from safetensors.torch import save_file
    model, tok, info = load_run(out_dir, 'cpu')
    check_target(info.get('model_dir') or info['report_dir'])  # an hf: download's own folder too
    eot = tok.start_token
    hf_cfg = hf.hf_config(model.config, eot)
    enc = tok.encoding  # the tiktoken Encoding (hf_config refuses the models of other tokenizers)
    weights = hf.hf_weights(model)  # the one-line error, if the model cannot be represented

    remove(tmp)  # a killed export's half-written folder
    os.makedirs(tmp)
    save_file(weights, os.path.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
    write = lambda f, obj: atomic_write(os.path.join(tmp, f), json.dumps(obj, indent=1) + '\n')
    write('config.json', hf_cfg)
    write('generation_config.json', {'bos_token_id': eot, 'eos_token_id': eot})
    write('tokenizer.json', hf.tokenizer_json(enc))
    # PreTrainedTokenizerFast: tokenizer.json as it is (GPT2Tokenizer would rebuild GPT-2's regex)
    write('tokenizer_config.json', {'tokenizer_class': 'PreTrainedTokenizerFast',
                                    'bos_token': enc.decode([eot]), 'eos_token': enc.decode([eot]),
                                    'model_max_length': model.config.block_size,
                                    'clean_up_tokenization_spaces': False,
                                    'chat_template': CHAT_TEMPLATE})
    atomic_write(os.path.join(tmp, 'README.md'),
                 readme(os.path.basename(os.path.abspath(hf_dir)), model, info, hf_cfg))
    # old aside, new in, then old deleted: at every moment one complete export exists (recover()
    # puts the old one back if a kill comes between the two renames)
    if os.path.lexists(hf_dir):
        os.replace(hf_dir, old)
    os.replace(tmp, hf_dir)
    remove(old)
    print(f"wrote {hf_dir}: {hf_cfg['architectures'][0]}, {model.num_params():,} parameters, "
          f"vocabulary {model.config.vocab_size}; transformers' AutoModelForCausalLM and "
          f"AutoTokenizer load it")


if __name__ == '__main__':
    main()
