"""Generation metrics during training: a fixed sample of held-out rows is generated at every evaluation and
scored, so the metrics sit beside the losses (and `train.best_metric` can pick a checkpoint by them).

    scorer = GenerationScorer(tokenizer, conversations, ["rougeL"], Decoding(max_new_tokens=64), batch_size=8)
    scorer(model)   # {"rougeL": 31.2}
"""

from __future__ import annotations

from tuneforge.data.encode import ChatEncoder
from tuneforge.data.shapes import Message
from tuneforge.data.tool_format import reference_text, split_answer
from tuneforge.eval.metrics import compute_metrics, default_metrics
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import engine_for_model
from tuneforge.run.processes import gather_shares, my_share


class GenerationScorer:
    def __init__(
        self,
        tokenizer,
        conversations: list[list[Message]],
        metrics: list[str] | None,
        decoding: Decoding,
        batch_size: int | None = None,
    ):
        scored = [c for c in conversations if c and c[-1]["role"] == "assistant" and reference_text(c[-1])]
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.prompts = [self.encoder.prompt_ids(c[:-1]) for c in scored]
        self.references = [[reference_text(c[-1])] for c in scored]
        self.metrics = metrics or default_metrics(self.references)
        self.decoding = decoding
        # train/sft.py's transitional Decoding (tuneforge.infer.generate) still carries the batch size.
        self.batch_size = batch_size or 8

    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:  # under several processes each generates its share of the prompts
            ids = engine_for_model(model, self.tokenizer).generate(
                my_share(self.prompts), decoding=self.decoding, batch_size=self.batch_size
            )
        finally:
            model.train(was_training)
        texts = [split_answer(self.tokenizer.decode(row, skip_special_tokens=True)).scored for row in ids]
        texts = gather_shares(texts, len(self.prompts))
        return compute_metrics(self.metrics, texts, self.references)
