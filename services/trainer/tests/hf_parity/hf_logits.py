"""Logits of Hugging Face transformers for model folders written by the trainer.

Used by services/trainer/tests/hf_parity.rs: reads a JSON list of jobs
{"dir", "input_ids", "attention_mask", "out"} from argv[1], loads each folder with
AutoModelForCausalLM in float32 (eager attention, eval mode), refuses a folder whose
weights do not match the model class exactly (missing or unexpected tensors), and writes
the logits [B, T, V] as little-endian float32 to "out". A job with "generate"
({"prompts", "max_new_tokens", "eos", "out"}) also writes, as JSON, the ids HF's greedy
`generate` appends to each prompt (one prompt at a time, so no padding is involved).
A job with "hf_written" ({"dir", "out", "seed"}) builds a second model of the same
config in transformers, every parameter random, saves it with `save_pretrained` (HF's own
config.json and safetensors layout) plus the tokenizer, and writes its logits to "out":
that checks the loader on folders transformers writes, not only on ours.
"""
import json
import shutil
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    torch.set_num_threads(1)
    for job in jobs:
        model, info = AutoModelForCausalLM.from_pretrained(
            job["dir"], torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
        # A tied output layer is legitimately absent from the file.
        missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]
        problems = {"missing": missing, "unexpected": info["unexpected_keys"], "mismatched": info["mismatched_keys"]}
        if any(problems.values()):
            raise SystemExit(f"{job['dir']}: weights do not match {type(model).__name__}: {problems}")
        model.eval()
        ids = torch.tensor(job["input_ids"], dtype=torch.long)
        mask = torch.tensor(job["attention_mask"], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        logits.to(torch.float32).numpy().astype("<f4").tofile(job["out"])
        if "generate" in job:
            g = job["generate"]
            completions = []
            for prompt in g["prompts"]:
                prompt_ids = torch.tensor([prompt], dtype=torch.long)
                with torch.no_grad():
                    out = model.generate(
                        input_ids=prompt_ids,
                        attention_mask=torch.ones_like(prompt_ids),
                        do_sample=False,
                        max_new_tokens=g["max_new_tokens"],
                        eos_token_id=g["eos"],
                        pad_token_id=g["eos"][0],
                    )
                completions.append(out[0, len(prompt):].tolist())
            with open(g["out"], "w", encoding="utf-8") as f:
                json.dump(completions, f)
        if "hf_written" in job:
            w = job["hf_written"]
            torch.manual_seed(w["seed"])
            config = AutoConfig.from_pretrained(job["dir"])
            fresh = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32, attn_implementation="eager")
            with torch.no_grad():
                for name, p in fresh.named_parameters():
                    is_scale = p.dim() == 1 and not name.endswith(".bias")
                    p.copy_(torch.randn_like(p) * 0.1 + (1.0 if is_scale else 0.0))
            fresh.eval()
            fresh.save_pretrained(w["dir"], safe_serialization=True)
            shutil.copy(f"{job['dir']}/tokenizer.json", f"{w['dir']}/tokenizer.json")
            with torch.no_grad():
                logits = fresh(input_ids=ids, attention_mask=mask).logits
            logits.to(torch.float32).numpy().astype("<f4").tofile(w["out"])
        print(f"{type(model).__name__}: {tuple(logits.shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
