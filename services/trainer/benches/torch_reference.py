"""The same model and training step as `gradients-trainer`, in PyTorch, for the benchmark.

Reads a `config.json` written by the Rust benchmark (a Llama-style preset), builds the
decoder the trainer builds (RMSNorm, RoPE in HF's rotate_half form, grouped-query
attention through scaled_dot_product_attention with a boolean causal-and-padding mask,
SwiGLU, tied embeddings), and times AdamW steps with gradient clipping on the
answer-masked next-token loss, batch x sequence tokens per step. On CUDA (fifth argument
`cuda`) it trains under bf16 autocast, as the trainer does there, and synchronises the device
before reading the clock. Prints one JSON line:
{"parameters": N, "tokens_per_second": R, "threads": T, "torch": version, "device": D}.
"""

import contextlib

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, self.heads, self.kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.dim = h // self.heads
        linear = lambda i, o: nn.Linear(i, o, bias=False)
        self.input_norm = RMSNorm(h, c["rms_norm_eps"])
        self.q, self.k = linear(h, h), linear(h, self.kv * self.dim)
        self.v, self.o = linear(h, self.kv * self.dim), linear(h, h)
        self.post_norm = RMSNorm(h, c["rms_norm_eps"])
        i = c["intermediate_size"]
        self.gate, self.up, self.down = linear(h, i), linear(h, i), linear(i, h)

    def forward(self, x, cos, sin, allowed):
        b, t, _ = x.shape
        h = self.input_norm(x)
        split = lambda y, n: y.view(b, t, n, self.dim).transpose(1, 2)
        q, k, v = split(self.q(h), self.heads), split(self.k(h), self.kv), split(self.v(h), self.kv)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        repeat = self.heads // self.kv
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.o(attended.transpose(1, 2).reshape(b, t, -1))
        h = self.post_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        dim = c["hidden_size"] // c["num_attention_heads"]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        angles = torch.outer(torch.arange(c["max_position_embeddings"], dtype=torch.float64), inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos().float(), persistent=False)
        self.register_buffer("sin", emb.sin().float(), persistent=False)

    def forward(self, ids, mask):
        b, t = ids.shape
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        allowed = causal.view(1, 1, t, t) & mask.ne(0).view(b, 1, 1, t)
        x = self.embed(ids)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin, allowed)
        return self.norm(x) @ self.embed.weight.t()


def main():
    config_path, batch, sequence, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    config = json.load(open(config_path))
    assert config["model_type"] == "llama" and config["tie_word_embeddings"], "presets are tied Llamas"
    torch.manual_seed(1)
    model = Llama(config)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            nn.init.normal_(p, 0.0, 0.02)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    ids = torch.randint(0, 256, (batch, sequence), device=device)
    mask = torch.ones(batch, sequence, dtype=torch.long, device=device)
    answer = torch.ones(batch, sequence - 1, device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        optimizer.zero_grad()
        with autocast:
            logits = model(ids, mask)
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1), reduction="none"
        )
        loss = (nll * answer.reshape(-1)).sum() / answer.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(2):
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_second": batch * sequence * steps / elapsed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }))


if __name__ == "__main__":
    main()
