"""A seeded synthetic survey world with a known latent structure, for the offline demo and tests.

Each question belongs to a topic; each group has a latent opinion vector z_g, each topic a
loading vector a_t. A group's logit for an option is the question's base logit plus
`strength * <a_q, z_g> * c_o`, where c_o runs from -1 to 1 along the ordinal scale. So a
group's answers on any question follow from z_g (learnable from a few context answers)
and the question's topic (visible in its text and in `features`): a model that infers
z_g in context beats the population mean, which cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpo.data.schema import make_row

TOPICS = [
    ("gun laws", "stricter gun laws would reduce crime"),
    ("climate", "climate change needs urgent government action"),
    ("immigration", "immigrants strengthen the country"),
    ("taxes", "taxes on high incomes should be raised"),
    ("technology", "automation will mostly help workers"),
    ("religion", "religion should play a bigger role in public life"),
    ("health care", "the government should guarantee health insurance"),
    ("trade", "free trade agreements benefit the country"),
]
ASPECTS = ["in the next ten years", "for people like you", "in your community", "for the economy",
           "for young people", "for families", "in the long run", "for the nation as a whole"]
SCALES = {
    2: ["Agree", "Disagree"],
    3: ["Agree", "Neither agree nor disagree", "Disagree"],
    4: ["Strongly agree", "Somewhat agree", "Somewhat disagree", "Strongly disagree"],
    5: ["Strongly agree", "Somewhat agree", "Neither agree nor disagree", "Somewhat disagree", "Strongly disagree"],
}


@dataclass(frozen=True)
class SyntheticWorld:
    n_questions: int = 160
    n_groups: int = 24
    n_topics: int = 8
    latent_dim: int = 3
    strength: float = 2.0
    respondents: int = 500  # multinomial sampling noise per (group, question); 0 = exact
    feature_dim: int = 32
    seed: int = 0

    def build(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The survey table and a known feature map (P, feature_dim) in the table's point order."""
        rng = np.random.default_rng(self.seed)
        topic_loadings = rng.normal(size=(self.n_topics, self.latent_dim))
        group_latents = rng.normal(size=(self.n_groups, self.latent_dim))
        topic_features = rng.normal(size=(self.n_topics + 3, self.feature_dim)) / np.sqrt(self.n_topics)
        rows, features = [], []
        for q in range(self.n_questions):
            topic = q % self.n_topics
            name, claim = TOPICS[topic % len(TOPICS)]
            n_opt = int(rng.integers(2, 6))
            options = SCALES[n_opt]
            position = np.linspace(-1.0, 1.0, n_opt)
            loading = topic_loadings[topic] + 0.2 * rng.normal(size=self.latent_dim)
            base = rng.normal(size=n_opt)
            logits = base + self.strength * (group_latents @ loading)[:, None] * position  # (G, O)
            shares = np.exp(logits - logits.max(1, keepdims=True))
            shares /= shares.sum(1, keepdims=True)
            if self.respondents:
                shares = np.stack([rng.multinomial(self.respondents, s) for s in shares]) / self.respondents
            text = f"[{name}] Do you agree that {claim} {ASPECTS[q % len(ASPECTS)]}? (survey item {q})"
            for g in range(self.n_groups):
                rows.append(make_row("synthetic", f"SYN{q:04d}", text, options, list(range(1, n_opt + 1)),
                                     "LATENT", f"group{g:02d}", shares[g], self.respondents or None))
            onehot = np.zeros((n_opt, self.n_topics + 3))
            onehot[:, topic] = 1.0
            onehot[:, self.n_topics:] = np.stack([position, position**2, np.full(n_opt, 1.0)], 1)
            features.append(onehot @ topic_features + 0.05 * rng.normal(size=(n_opt, self.feature_dim)))
        return pd.DataFrame(rows), np.concatenate(features).astype(np.float32)


@dataclass(frozen=True)
class SyntheticRespondents:
    """A seeded population of respondents with a known latent structure: each belongs to one of
    `n_classes` classes, each class has its own answer distribution on every question (the
    population mixes them), and an attribute names the class for a share `attribute_signal` of
    the respondents (random otherwise). Two survey forms each ask a respondent a random
    `asked` share of the questions. Context answers reveal a person's class, so methods that
    find similar respondents (nearest respondents, a low-rank model) beat the population."""

    n_respondents: int = 2000
    n_questions: int = 60
    n_options: int = 4
    n_classes: int = 3
    sharpness: float = 2.0  # logit scale of a class's preference for its options
    asked: float = 0.8
    attribute_signal: float = 0.5
    feature_dim: int = 16
    seed: int = 0

    def build(self):
        """The respondents' answers as gpo/data/responses.py `Responses`, a random feature per
        point (P, feature_dim) in question-then-option order, and each respondent's class (R,)."""
        from gpo.data.responses import Responses

        rng = np.random.default_rng(self.seed)
        R, Q, O = self.n_respondents, self.n_questions, self.n_options
        logits = self.sharpness * rng.normal(size=(self.n_classes, Q, O))
        shares = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # (C, Q, O)
        cls = rng.integers(self.n_classes, size=R)
        cumulative = shares.cumsum(-1)[cls]  # (R, Q, O)
        answers = (rng.random((R, Q, 1)) > cumulative).sum(-1).clip(max=O - 1).astype(np.int16)
        form = rng.integers(2, size=R)
        questions_of = rng.random((2, Q)) < self.asked
        asked = questions_of[form]
        answers = np.where(asked, answers, -1).astype(np.int16)
        told = rng.random(R) < self.attribute_signal
        label = np.where(told, cls, rng.integers(self.n_classes, size=R))
        attributes = pd.DataFrame({"CLASS": pd.Categorical([f"c{c}" for c in label])})
        scale = SCALES[O] if O in SCALES else [f"option {o + 1}" for o in range(O)]
        return Responses(
            dataset="synthetic-respondents", qids=[f"SYN{q:04d}" for q in range(Q)],
            questions=[f"Do you agree with statement {q}?" for q in range(Q)], options=[list(scale)] * Q,
            ordinal=[[float(o + 1) for o in range(O)]] * Q, respondents=[f"r{r}" for r in range(R)],
            answers=answers, asked=asked, weights=np.ones(R), attributes=attributes, rows=np.arange(1, R + 1),
            files=["synthetic"], file_index=np.zeros(R, np.int16), problems=[]), \
            rng.normal(size=(Q * O, self.feature_dim)).astype(np.float32), cls
