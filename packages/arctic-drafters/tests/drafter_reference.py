"""An independent, deliberately plain implementation of the anchor's equations, written from
the reference (not from arctic_drafters), reading weights in the anchor's own key layout."""

from __future__ import annotations

import math

import torch


def rms(x: torch.Tensor, weight=None, bias=None, eps: float = 1e-6) -> torch.Tensor:
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight + bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def mix_factor(n_predict: int, inner: int) -> float:
    sw = 0.5 ** (0.5 / n_predict)
    ew = math.sqrt((1 - sw**2) * inner / 2)
    return ew / sw


def _get(w: dict, *names: str) -> torch.Tensor:
    for name in names:
        if name in w:
            return w[name]
    raise KeyError(names)


def reference_logits(
    w: dict, cfg: dict, hidden: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Teacher-forced logits (k, B, V): head i reads tokens[:, i]. ``w``: anchor state dict."""
    w = {k.removeprefix("speculator."): v.double() for k, v in w.items()}
    n = cfg["n_predict"]
    arctic = "input_hidden_dim" in cfg
    inner = int(str(cfg.get("inner_dim") or cfg["emb_dim"]).split(".")[0])
    method = cfg.get("method", "sum_rnn") if arctic else "mlp"
    a = mix_factor(n, inner)
    state = hidden.double()
    if cfg.get("scale_input"):
        state = rms(state) / math.sqrt(2.0)
    cell = torch.zeros(hidden.shape[0], inner, dtype=torch.float64)
    out = []
    tied = cfg.get("tie_weights", False)
    for i in range(tokens.shape[1]):
        tok = tokens[:, i]
        e = 0 if tied else i
        p = min(i, 1) if tied else i
        if method == "sum_lstm":
            z = w["forget_emb.0.weight"][tok].repeat(1, 4)
            x = state @ w[f"projs.{p}.weight"].T + a * z
            f, g_in, o = (torch.sigmoid(x[:, k * inner : (k + 1) * inner]) for k in range(3))
            cand = gelu(rms(x[:, 3 * inner :], w["cell_ln.0.weight"], w["cell_ln.0.bias"]))
            cell = f * cell + g_in * cand
            state = gelu(rms(cell, w["state_ln.0.weight"], w["state_ln.0.bias"])) * o
        else:
            z = _get(w, f"emb.{e}.weight", f"emb.{e}.0.weight")[tok]
            x = state @ _get(w, f"proj.{p}.weight", f"proj.{p}.0.weight").T + a * z
            lw = _get(w, f"ln.{e}.weight", f"ln.{e}.0.weight")
            lb = _get(w, f"ln.{e}.bias", f"ln.{e}.0.bias")
            state = gelu(rms(x, lw, lb))
        out.append(state @ w[f"head.{e}.weight"].T)
    return torch.stack(out)


def reference_greedy(
    w: dict, cfg: dict, hidden: torch.Tensor, last: torch.Tensor, n: int
) -> torch.Tensor:
    tokens = last[:, None]
    drafted = []
    for i in range(n):
        logits = reference_logits(
            w, cfg, hidden, torch.cat([tokens, *drafted], 1) if drafted else tokens
        )
        drafted.append(logits[i].argmax(-1, keepdim=True))
        del logits
    return torch.cat(drafted, 1)
