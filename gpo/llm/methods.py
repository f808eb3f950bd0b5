"""The paper's LLM baselines as evaluation methods: each maps an episode batch to (B, P)
probabilities, like GPO and the cheap baselines, so all share episodes, metrics and tables.

- zero_shot: the base model on the question alone;
- steered: the question after a description of the group (style bio / qa / portray);
- few_shot: the group's k context questions with their answer distributions, then the question;
- sft: per episode, LoRA fine-tuning on answers sampled from the group's context distributions;
- reward: per episode, a LoRA reward model (value head) regressing each option's share;
- icft: LoRA meta-trained over the training groups on the few-shot format, then few-shot.
Per-episode adapters start from the same initial LoRA weights, so nothing carries over
between groups. `train_seconds` records the training time of the trained ones.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from gpo.data.basis import Basis
from gpo.data.survey import SurveyText
from gpo.llm import LLM_BASELINES, prompts
from gpo.llm.scoring import last_logits, letter_token_ids, option_probs, score
from gpo.tasks import Episode, Points


def episode_questions(points: Points, episode: Episode):
    """Per row: context question ids, their shares (in option order) and target question ids."""
    pq = points.point_question.cpu().numpy()
    ctx_points, ctx_y, tar_points = episode.ctx.cpu().numpy(), episode.ctx_y.cpu().numpy(), episode.tar.cpu().numpy()
    rows = []
    for ctx, y, tar in zip(ctx_points, ctx_y, tar_points):  # rows of an episode: prompts are built per row
        ok = ctx >= 0
        ctx_questions, ctx_shares = pq[ctx[ok]], y[ok]
        order = list(dict.fromkeys(ctx_questions.tolist()))
        rows.append((order, {q: ctx_shares[ctx_questions == q] for q in order}, list(dict.fromkeys(pq[tar[tar >= 0]].tolist()))))
    return rows


class LLMMethod:
    """A baseline backed by a causal LM; subclasses say how each row's targets are scored."""

    adapter: str | None = None  # the LoRA adapter this method runs with (None: the base model)

    def __init__(self, llm, data: SurveyText):
        self.llm, self.data, self.train_seconds = llm, data, 0.0

    @contextlib.contextmanager
    def using(self):
        """Run with this method's adapter active, or with every adapter off."""
        model = self.llm.model
        if self.adapter is not None:
            model.set_adapter(self.adapter)
            yield
        elif hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield
        else:
            yield

    def fill(self, points: Points, per_row: list[dict]) -> torch.Tensor:
        out = torch.zeros(len(per_row), points.x.shape[0], device=points.device)
        qp = points.question_points.cpu().numpy()
        for r, probs in enumerate(per_row):
            for q, p in probs.items():
                out[r, qp[q, : len(p)]] = torch.as_tensor(p, dtype=torch.float32, device=points.device)
        return out

    def question_prompt(self, q: int) -> str:
        return prompts.question(self.data.questions[q], self.data.options[q])

    def __call__(self, points: Points, basis, episode: Episode) -> torch.Tensor:
        rows = episode_questions(points, episode)
        with self.using():
            per_row = [self.row(g, ctx_q, shares, targets) for g, (ctx_q, shares, targets) in zip(episode.tasks.tolist(), rows)]
        return self.fill(points, per_row)

    def score(self, texts: list[str], questions: list[int]) -> dict:
        if not questions:
            return {}
        n = [len(self.data.options[q]) for q in questions]
        return dict(zip(questions, score(self.llm.model, self.llm.tokenizer, texts, n, self.llm.cfg.batch_size, self.llm.cfg.max_tokens)))


class ZeroShot(LLMMethod):
    def __init__(self, llm, data):
        super().__init__(llm, data)
        self.cache = {}  # question -> probabilities: the same for every group

    def row(self, group, ctx_q, shares, targets):
        todo = [q for q in targets if q not in self.cache]
        self.cache.update(self.score([self.question_prompt(q) for q in todo], todo))
        return {q: self.cache[q] for q in targets}


class Steered(LLMMethod):
    def row(self, group, ctx_q, shares, targets):
        name, attribute = self.data.groups[group], self.data.attributes[group]
        texts = [prompts.steered(self.llm.cfg.steer, attribute, name, self.data.questions[q], self.data.options[q]) for q in targets]
        return self.score(texts, targets)


class FewShot(LLMMethod):
    def row(self, group, ctx_q, shares, targets):
        context = [(self.data.questions[q], self.data.options[q], shares[q]) for q in ctx_q]
        texts = [prompts.few_shot(context, self.data.questions[q], self.data.options[q]) for q in targets]
        return self.score(texts, targets)


class LoRAMethod(LLMMethod):
    """Its own LoRA adapter on the shared model; every episode restarts from its initial weights."""

    def __init__(self, llm, data):
        super().__init__(llm, data)
        self.adapter = type(self).__name__.lower()
        llm.add_adapter(self.adapter)
        self.initial = {k: v.clone() for k, v in llm.model.state_dict().items() if f".{self.adapter}." in k}

    def reset(self):
        self.llm.model.load_state_dict(self.initial, strict=False)

    def fit(self, loss_fn, steps: int, extra=(), seed: int = 0):
        """Train this adapter (and `extra` parameters); seeded, so an episode's result never
        depends on what ran before it (dropout draws from the torch RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._fit(loss_fn, steps, extra)

    def _fit(self, loss_fn, steps: int, extra):
        start = time.perf_counter()
        model = self.llm.model
        params = [p for name, p in model.named_parameters() if f".{self.adapter}." in name] + list(extra)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=self.llm.cfg.lora_lr)
        model.train()
        for _ in range(steps):
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
        model.eval()
        self.train_seconds += time.perf_counter() - start

    def letter_probs(self, texts: list[str], n_options: list[int]) -> torch.Tensor:
        tok = self.llm.tokenizer
        logits = last_logits(self.llm.model, tok, texts, self.llm.cfg.max_tokens)
        return option_probs(logits, letter_token_ids(tok, max(n_options)), torch.tensor(n_options, device=logits.device))


def distribution(shares) -> np.ndarray:
    """Shares as float64 probabilities summing to one (numpy's multinomial checks the sum in float64)."""
    p = np.clip(np.asarray(shares, dtype=np.float64), 0, None)
    return p / max(p.sum(), 1e-12)


def soft_cross_entropy(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * p.clamp_min(1e-9).log()).sum(1).mean()


def padded_shares(shares: list, width: int, device) -> torch.Tensor:
    out = torch.zeros(len(shares), width, device=device)
    for i, s in enumerate(shares):  # rows of one small training batch
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.float32)
    return out


class SFT(LoRAMethod):
    """Fine-tune on answers sampled from the group's context distributions, then answer zero-shot."""

    def row(self, group, ctx_q, shares, targets):
        self.reset()
        rng = np.random.default_rng(group)
        n = self.llm.cfg.samples_per_question
        sampled = [rng.multinomial(n, distribution(shares[q])) / n for q in ctx_q]
        texts = [self.question_prompt(q) for q in ctx_q]
        n_opt = [len(self.data.options[q]) for q in ctx_q]
        target = padded_shares(sampled, max(n_opt), self.llm.model.device)
        if ctx_q:
            self.fit(lambda: soft_cross_entropy(self.letter_probs(texts, n_opt), target), self.llm.cfg.lora_steps, seed=group)
        return self.score([self.question_prompt(q) for q in targets], targets)


class Reward(LoRAMethod):
    """A value head on the last hidden state of "question + option letter", regressing its share."""

    def __init__(self, llm, data):
        super().__init__(llm, data)
        hidden = llm.model.config.get_text_config().hidden_size
        self.head = torch.nn.Linear(hidden, 1).to(llm.model.device)
        self.head_initial = {k: v.clone() for k, v in self.head.state_dict().items()}

    def values(self, pairs: list[tuple[int, int]]) -> torch.Tensor:
        from gpo.prompts import letter

        tok = self.llm.tokenizer
        tok.padding_side = "left"
        texts = [f"{self.question_prompt(q)} {letter(o)}" for q, o in pairs]
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.llm.cfg.max_tokens).to(self.llm.model.device)
        hidden = self.llm.model(**enc, output_hidden_states=True).hidden_states[-1][:, -1]
        return self.head(hidden.float()).squeeze(-1)

    def row(self, group, ctx_q, shares, targets):
        self.reset()
        self.head.load_state_dict(self.head_initial)
        pairs = [(q, o) for q in ctx_q for o in range(len(self.data.options[q]))]
        y = torch.tensor([float(shares[q][o]) for q, o in pairs], device=self.llm.model.device)
        if pairs:
            self.fit(lambda: ((self.values(pairs) - y) ** 2).mean(), self.llm.cfg.lora_steps, self.head.parameters(), seed=group)
        out = {}
        with torch.no_grad():
            for q in targets:
                v = self.values([(q, o) for o in range(len(self.data.options[q]))]).clamp_min(1e-4).cpu().numpy()
                out[q] = v / v.sum()
        return out


class InContextFineTuned(LoRAMethod, FewShot):
    """LoRA meta-trained over the training groups (the basis) on few-shot prompts, then used few-shot."""

    def __init__(self, llm, data, points: Points, basis: Basis, k: int):
        super().__init__(llm, data)
        generator = torch.Generator().manual_seed(0)
        y = basis.y.cpu().numpy()  # (J, P) the training groups' shares
        qp = points.question_points.cpu().numpy()
        available = basis.answered[:, qp[:, 0]].cpu()  # (J, Q)

        def loss():
            g = int(torch.randint(basis.size, (1,), generator=generator))
            order = [int(q) for q in torch.randperm(available.shape[1], generator=generator) if available[g, q]]
            ctx, targets = order[:k], order[k:k + self.llm.cfg.batch_size]
            context = [(data.questions[q], data.options[q], y[g, qp[q, : len(data.options[q])]]) for q in ctx]
            texts = [prompts.few_shot(context, data.questions[q], data.options[q]) for q in targets]
            n_opt = [len(data.options[q]) for q in targets]
            target = padded_shares([y[g, qp[q, :n]] for q, n in zip(targets, n_opt)], max(n_opt), self.llm.model.device)
            return soft_cross_entropy(self.letter_probs(texts, n_opt), target)

        with self.using():
            self.fit(loss, self.llm.cfg.icft_steps)


class LLM:
    """A causal LM and its tokenizer, loaded once and shared by the LLM baselines."""

    def __init__(self, cfg, device: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gpo.embed.models import locate

        self.cfg = cfg
        where = locate(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(where.path, **where.kwargs)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(where.path, dtype=getattr(torch, cfg.dtype), **where.kwargs).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def add_adapter(self, name: str) -> None:
        from peft import LoraConfig, PeftModel, get_peft_model

        config = LoraConfig(r=self.cfg.lora_r, lora_alpha=self.cfg.lora_alpha, target_modules="all-linear", lora_dropout=0.0)
        if isinstance(self.model, PeftModel):
            self.model.add_adapter(name, config)
        else:
            self.model = get_peft_model(self.model, config, adapter_name=name)
        self.model.eval()


def make(name: str, llm: LLM, data: SurveyText, points: Points, basis: Basis, k: int):
    if name == "zero_shot":
        return ZeroShot(llm, data)
    if name == "steered":
        return Steered(llm, data)
    if name == "few_shot":
        return FewShot(llm, data)
    if name == "sft":
        return SFT(llm, data)
    if name == "reward":
        return Reward(llm, data)
    if name == "icft":
        return InContextFineTuned(llm, data, points, basis, k)
    raise ValueError(f"unknown LLM baseline {name!r}; one of {LLM_BASELINES}")
