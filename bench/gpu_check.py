"""HF vs DeepSpeed inference on one GPU, through the extraction path: one table.

A random-init Llama (by default about 1B parameters: 2048 wide, 16 blocks, 32 heads, 8 key/value
heads, vocabulary 32000) in bf16 embeds the same synthetic survey prompts (gpo/data/synthetic.py)
with the project's extractor (gpo/embed/extract.py) under:
  - hf: the plain transformers model, prefix sharing on (the default for causal LMs);
  - hf, prefix sharing off: every (question, option) prompt run whole;
  - deepspeed, kernel injection off: `init_inference(tp_size=1)`, which leaves the model as is;
  - deepspeed, kernel injection on: DeepSpeed's fused Llama kernels (JIT-built on first use).
Each row: prompt tokens/s (the tokens of the prompts as written, which prefix sharing runs only
partly), model tokens/s (the tokens actually run), peak GPU memory, and the largest difference
of its embeddings from the hf row (bf16, so about 1e-2 is noise; DeepSpeed's injected kernels are
known to be wrong for padded Llama inputs, deepspeedai/DeepSpeed#3960). A variant that fails
(e.g. no CUDA compiler for the injected kernels) gets its error in the table instead.

Nothing is downloaded: the tokenizer is a BPE trained on the prompts (gpo/llm/random_model.py),
and no Ray is needed. Run it with bench/gpu_check.sh on a GPU machine; `--device cpu --width 256
--layers 2 --questions 40` is a smoke test of the script itself.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaModel

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.models import Embedder
from gpo.llm.random_model import tokenizer as train_tokenizer

VARIANTS = {  # name -> EmbedConfig fields; hf first: the others are compared with it
    "hf": {"backend": "hf"},
    "hf, prefix sharing off": {"backend": "hf", "prefix_sharing": "off"},
    "deepspeed, injection off": {"backend": "deepspeed"},
    "deepspeed, injection on": {"backend": "deepspeed", "kernel_inject": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --device cpu for a smoke test)")
    table, _ = SyntheticWorld(n_questions=args.questions, n_groups=2, seed=0).build()
    data = select(table, "all")
    questions = list(zip(data.questions, data.options))
    tok = train_tokenizer(data.questions)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=args.width, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, intermediate_size=-(-8 * args.width // 3 // 256) * 256,
                         max_position_embeddings=4096)
    master = LlamaModel(config).to(getattr(torch, args.dtype)).eval()  # on the CPU; each variant gets a copy
    n_params = sum(p.numel() for p in master.parameters())
    print(f"random-init Llama: {n_params / 1e9:.2f}B parameters ({args.width} wide, {args.layers} blocks, {args.heads} heads, "
          f"{args.kv_heads} key/value heads), {args.dtype}; {len(questions)} synthetic questions, "
          f"{sum(len(o) for _, o in questions)} points; {torch.cuda.get_device_name() if cuda else args.device}; "
          f"torch {torch.__version__}")
    rows, reference = [], None
    for name, fields in VARIANTS.items():
        try:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            cfg = EmbedConfig(model="random-llama", dtype=args.dtype, **fields)
            embedder = Embedder(cfg, args.device, tokenizer=tok, net=copy.deepcopy(master))
            embedder.embed(questions[:64])  # warm-up (and the JIT build of injected kernels)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            vectors, stats = embedder.embed(questions)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            reference = vectors if reference is None else reference
            diff = np.abs(vectors - reference).max()
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if cuda else "n/a"
            rows.append((name, f"{stats.full_tokens / seconds:,.0f}", f"{stats.tokens / seconds:,.0f}", peak, f"{diff:.2e}"))
            del embedder
        except Exception as e:  # a variant that cannot run here is a finding, not the end of the check
            rows.append((name, "failed", "", "", f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"))
    print(f"{'variant':26s} {'prompt tok/s':>13s} {'model tok/s':>12s} {'peak GiB':>9s}  max |emb - hf|")
    for row in rows:
        print(f"{row[0]:26s} {row[1]:>13s} {row[2]:>12s} {row[3]:>9s}  {row[4]}")


if __name__ == "__main__":
    main()
