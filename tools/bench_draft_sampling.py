"""Offline: at target temperature 1, do sampled drafts passed with their q (what arctic-vllm
serves, `drafter_sampling`) accept more than argmax drafts verified as one-hot proposals?

Usage: `.venv/bin/python tools/bench_draft_sampling.py [sampled|real]` (~3 min, one core);
writes results/draft_sampling_<mode>.json.

Teacher-forced on the target's OWN sampled continuation (T=1, no top-k) of held-out prompts
(arctic_vllm.bench's corpus, heldout split: stdlib files + HumanEval prompts, 64-token chunks).
Draft point t: head 0 reads h_t (final-norm state at t) and x_{t+1}; it proposes x_{t+2},
checked against p_{t+1} = softmax(target logits at t+1).  Heads 1, 2 read the previous head's
token d_i; their p is the target's distribution given x_{<=t+1}, d_1 (, d_2), computed exactly
by feeding the drafted tokens to the target with the prefix KV cache.
Estimator of P(first k accepted): E_d[alpha_1..alpha_{k-1} * E_k] with the chain d sampled
from the proposal, alpha_i = min(1, p(d_i)/q(d_i)) and E_k = sum_x min(p_k, q_k)
(one-hot: alpha = p(d), E = p(argmax q)); unbiased, Rao-Blackwellised at the last head.
"""

import copy
import json
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from arctic_drafters import load_drafter
from arctic_vllm.bench import humaneval_tasks, stdlib_files

torch.set_num_threads(1)
torch.manual_seed(0)
N_HE, N_STD, P, G, S = 16, 32, 64, 48, 4  # prompts, prompt len, generated len, samples/chain
MODE = (
    sys.argv[1] if len(sys.argv) > 1 else "sampled"
)  # "sampled": target's own T=1 continuation; "real": held-out text
TEMPS = [1.0, 0.7, 0.5]
REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "models"

tok = AutoTokenizer.from_pretrained(f"{ROOT}/arctic-tiny-llama")
model = AutoModelForCausalLM.from_pretrained(
    f"{ROOT}/arctic-tiny-llama", dtype=torch.float32
).eval()

CH = P if MODE == "sampled" else P + G


def chunks(texts, n, seed):
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        out += [ids[s : s + CH] for s in range(0, len(ids) - CH + 1, CH)]
    random.Random(seed).shuffle(out)
    return out[:n]


he = chunks([t.prompt for t in humaneval_tasks("heldout")], N_HE, 1)
std = chunks([f.text for f in stdlib_files("heldout")], N_STD, 2)
prompts = torch.tensor(he + std)
N = prompts.shape[0]


@torch.no_grad()
def sample_continuation(prompts):
    g = torch.Generator().manual_seed(123)
    out = model(input_ids=prompts, use_cache=True)
    cache, seq = out.past_key_values, prompts
    for _ in range(G):
        pr = torch.softmax(out.logits[:, -1].float(), -1)
        nxt = torch.multinomial(pr, 1, generator=g)
        seq = torch.cat([seq, nxt], 1)
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
    return seq


t0 = time.time()
seq = sample_continuation(prompts) if MODE == "sampled" else prompts
L = seq.shape[1]
pre = {}
h = model.model.norm.register_forward_hook(lambda m, i, o: pre.__setitem__("x", i[0]))
with torch.no_grad():
    out = model(input_ids=seq, use_cache=True)
h.remove()
full_cache = out.past_key_values
post = model.model(input_ids=seq).last_hidden_state
ptrue = torch.softmax(out.logits.float(), -1)  # (N, L, V): distribution of the NEXT token
assert torch.allclose(model.lm_head(post), out.logits, atol=1e-4)
pt = ptrue[:, P : L - 1]
tstats = {
    "mean_max_p": pt.max(-1).values.mean().item(),
    "mean_entropy_nats": (-(pt * pt.clamp_min(1e-30).log()).sum(-1)).mean().item(),
    "mean_logp_of_next_token": ptrue[:, P - 1 : L - 1]
    .gather(2, seq[:, P:, None])
    .log()
    .mean()
    .item(),
}
print(tstats)
print(f"target: {N} seqs x {L} tokens in {time.time() - t0:.1f}s", flush=True)

# draft points: state at t, last token x_{t+1}; x_{t+1} is the last prompt token or a continuation token
ts = list(range(P - 1, L - 1))


def probs(logits, T):
    return torch.softmax(logits.float() / T, -1)


@torch.no_grad()
def run(drafter, name):
    res = {}
    # indexing check: head 0 top-1 agreement with target argmax p_{t+1}, post vs pre-norm input
    chk = {}
    for lab, H, sh in (
        ("post_norm_h_t", post, 0),
        ("pre_norm_h_t", pre["x"], 0),
        ("post_norm_h_t+1(wrong)", post, 1),
    ):
        agree = []
        for t in ts[:-1]:
            st, c = drafter.initial_state(H[:, t + sh])
            st, c = drafter.step(0, st, c, seq[:, t + 1])
            agree.append(
                (drafter.head_logits(0, st).argmax(-1) == ptrue[:, t + 1].argmax(-1)).float()
            )
        chk[lab] = torch.cat(agree).mean().item()
    res["head0_top1_agreement_check"] = chk
    methods = [("onehot_argmax", None)] + [(f"sampled_T{T}", T) for T in TEMPS]
    for mname, T in methods:
        R = 1 if T is None else S
        A = torch.zeros(3)
        E = torch.zeros(3)
        cnt = 0
        lens = torch.zeros(N)
        for t in ts:
            hid = post[:, t].repeat_interleave(R, 0)
            last = seq[:, t + 1].repeat_interleave(R, 0)
            st, c = drafter.initial_state(hid)
            tok_in, qs, ds = last, [], []
            for i in range(3):
                st, c = drafter.step(i, st, c, tok_in)
                lg = drafter.head_logits(i, st)
                if T is None:
                    d = lg.argmax(-1)
                    q = None
                else:
                    q = probs(lg, T)
                    d = torch.multinomial(q, 1).squeeze(1)
                qs.append(q)
                ds.append(d)
                tok_in = d
            cache = copy.deepcopy(full_cache)
            cache.crop(t + 2)
            if R > 1:
                cache.batch_repeat_interleave(R)
            o = model(input_ids=torch.stack(ds[:2], 1), past_key_values=cache, use_cache=True)
            ps = [
                ptrue[:, t + 1].repeat_interleave(R, 0),
                *list(torch.softmax(o.logits.float(), -1).unbind(1)),
            ]
            weight = torch.ones(hid.shape[0])
            for i in range(3):
                p, q, d = ps[i], qs[i], ds[i]
                pd = p.gather(1, d[:, None]).squeeze(1)
                if q is None:
                    e_i, alpha = pd, pd
                else:
                    e_i = torch.minimum(p, q).sum(-1)
                    alpha = torch.clamp(pd / q.gather(1, d[:, None]).squeeze(1), max=1.0)
                E[i] += e_i.sum() / R
                A[i] += (weight * e_i).sum() / R
                lens += (weight * e_i).view(N, R).mean(1)
                weight = weight * alpha
            cnt += N
        A, E = A / cnt, E / cnt
        res[mname] = {
            "per_head_expected_acceptance_unconditional": E.tolist(),  # mean sum min(p,q) at head i, chain from proposal
            "P_first_k_accepted": A.tolist(),
            "conditional_acceptance": [A[0].item(), (A[1] / A[0]).item(), (A[2] / A[1]).item()],
            "expected_accepted_length": A.sum().item(),
            "length_stderr_over_seqs": (lens / len(ts)).std().item() / N**0.5,
        }
        print(name, mname, json.dumps(res[mname]), flush=True)
    res["draft_points"] = len(ts) * N
    return res


torch.manual_seed(7)
results = {
    "setup": dict(
        n_prompts=N,
        humaneval=len(he),
        stdlib=len(std),
        prompt_len=P,
        gen_len=G,
        samples_per_chain=S,
        continuation="target-sampled T=1 no top-k" if MODE == "sampled" else "real held-out text",
        draft_points_per_seq=len(ts),
    )
}
results["target_stats"] = tstats
for name in ("lstm", "mlp"):
    d = load_drafter(f"{ROOT}/arctic-tiny-llama-drafters/{name}", dtype=torch.float32).eval()
    results[name] = run(d, name)
    print(
        name,
        "check",
        results[name]["head0_top1_agreement_check"],
        f"{time.time() - t0:.0f}s",
        flush=True,
    )
(REPO / "results").mkdir(exist_ok=True)
(REPO / "results" / f"draft_sampling_{MODE}.json").write_text(json.dumps(results, indent=1))
