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
