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
  that encodes every string exactly as ours does (hf.tokenizer_json).
- generation_config.json: <|endoftext|> as bos and eos.
- README.md: how the model was trained (config, data, val bits/byte from log.jsonl), and that it
  expects <|endoftext|> before a prompt, as every story in training had one.
The folder is written beside hf_dir and renamed into place only when complete.
"""
import json
import os
import shutil

from tinystories.atomic_write import atomic_write
from tinystories.configurator import Key, configure

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model to export: a run of ours (or any location checkpoint.load_run accepts)")
hf_dir = Key('', "the Hugging Face model folder to write")
overwrite = Key(False, "replace hf_dir if it exists")
# -----------------------------------------------------------------------------
config = configure(globals())


def fail(msg):
    raise SystemExit(f"error: {msg}")


def last_eval(run_dir):
    """The final (else the latest) val record of the run's log.jsonl, or None."""
    found = None
    try:
        with open(os.path.join(run_dir, 'log.jsonl'), encoding='utf-8') as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:  # a torn last line of a killed run
                    continue
                if isinstance(r, dict) and r.get('val_bpb') is not None and \
                        not (found or {}).get('final'):
                    found = r
    except OSError:
        return None
    return found


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
             f"prompt; the model ends a story with it too:", "",
             "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f"tok = AutoTokenizer.from_pretrained('{name}')",
             f"model = AutoModelForCausalLM.from_pretrained('{name}')",
             "ids = tok(tok.eos_token + 'Once upon a time', return_tensors='pt').input_ids",
             "out = model.generate(ids, max_new_tokens=200, do_sample=True, top_k=50)",
             "print(tok.decode(out[0, 1:], skip_special_tokens=True))",
             "```", ""]
    if cfg:
        lines += ["The training configuration (train.py's keys):", "", "```json",
                  json.dumps(cfg, indent=1, sort_keys=True, default=str), "```", ""]
    return '\n'.join(lines)


def main():
    if not hf_dir:
        fail("--hf_dir=DIR names the folder to write")
    if os.path.exists(hf_dir) and (not os.path.isdir(hf_dir) or os.listdir(hf_dir)) and not overwrite:
        fail(f"{hf_dir} exists: --overwrite to replace it")
    from tinystories import hf
    from tinystories.checkpoint import load_run
    from safetensors.torch import save_file
    model, enc, info = load_run(out_dir, 'cpu')
    eot = info['tokenizer']['eot_token']
    hf_cfg = hf.hf_config(model.config, eot)
    weights = hf.hf_weights(model)  # the one-line error, if the model cannot be represented

    tmp = hf_dir.rstrip('/') + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
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
                                    'clean_up_tokenization_spaces': False})
    atomic_write(os.path.join(tmp, 'README.md'),
                 readme(os.path.basename(os.path.abspath(hf_dir)), model, info, hf_cfg))
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    elif os.path.exists(hf_dir):
        os.remove(hf_dir)
    os.replace(tmp, hf_dir)
    print(f"wrote {hf_dir}: {hf_cfg['architectures'][0]}, {model.num_params():,} parameters, "
          f"vocabulary {model.config.vocab_size}; transformers' AutoModelForCausalLM and "
          f"AutoTokenizer load it")


if __name__ == '__main__':
    main()
