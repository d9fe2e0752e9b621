"""Generation metrics during training: a fixed sample of held-out rows is generated at every evaluation and
scored, so the metrics sit beside the losses (and `train.best_metric` can pick a checkpoint by them).

    scorer = GenerationScorer(tokenizer, conversations, ["rougeL"], Decoding(max_new_tokens=64))
    scorer(model)   # {"rougeL": 31.2}
"""

from __future__ import annotations

from tuneforge.data.encode import ChatEncoder
from tuneforge.data.shapes import Message
from tuneforge.eval.metrics import compute_metrics, default_metrics
from tuneforge.infer.generate import Decoding, generate_ids
from tuneforge.run.processes import gather_shares, my_share


class GenerationScorer:
    def __init__(
        self, tokenizer, conversations: list[list[Message]], metrics: list[str] | None, decoding: Decoding
    ):
        scored = [c for c in conversations if c and c[-1]["role"] == "assistant" and c[-1]["content"].strip()]
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.prompts = [self.encoder.prompt_ids(c[:-1]) for c in scored]
        self.references = [[c[-1]["content"]] for c in scored]
        self.metrics = metrics or default_metrics(self.references)
        self.decoding = decoding

    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:  # under several processes each generates its share of the prompts
            ids = generate_ids(
                model,
                my_share(self.prompts),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                decoding=self.decoding,
            )
        finally:
            model.train(was_training)
        texts = [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
        texts = gather_shares(texts, len(self.prompts))
        return compute_metrics(self.metrics, texts, self.references)
