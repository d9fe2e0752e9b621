"""Cross-entropy computed only where a label is trained, without ever building the full logits.

A causal LM's head turns every position's hidden state into vocabulary logits, but positions whose
(shifted) label is -100 (the prompt, the padding) contribute nothing to the loss and, with a frozen head,
nothing to any gradient. This path runs the decoder, gathers the hidden states of trained positions only,
and applies the head and the cross-entropy to them in chunks, so no `[tokens, vocab]` tensor outlives its
chunk. With a frozen head (LoRA) each chunk's gradient for the hidden states is computed in the same pass
(FrozenHeadCrossEntropy), so logits are neither kept nor recomputed. With a trainable head
(`modules_to_save: [lm_head]`, full fine-tuning) each chunk is checkpointed and recomputed in the backward
pass, so the head's own gradient flows too.

The sum is divided exactly as transformers' `ForCausalLMLoss` divides it (by the Trainer's
`num_items_in_batch`, else the number of trained positions), so the loss and every gradient equal the
reference path's; tests/test_selective_loss.py checks both within 1e-5.

Under DDP the decoder runs through DDP's forward (its gradient all-reduce needs that); with weights sharded
(FSDP, DeepSpeed) the head is not whole outside the model's forward, so those keep the reference path.

Architectures whose head is not a plain linear layer (logit soft-capping, logit scaling) keep the
reference path: only the families in tuneforge.model.head are known to have a plain head after their
decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from tuneforge.model.head import HEAD_CHUNK_TOKENS, has_plain_head


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper (compiled after DDP)
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return model.get_base_model() if isinstance(model, PeftModel) else model


def final_hidden_states(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The decoder's output (after its final norm), without the full logits."""
    if isinstance(getattr(model, "_orig_mod", model), DistributedDataParallel):
        # Through DDP's own forward, which arms the gradient all-reduce; the model's head then runs on
        # one position per row only, and the last hidden state is the decoder's output.
        return model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
    return causal_lm(model).get_decoder()(**inputs).last_hidden_state


def supports_selective_loss(model: torch.nn.Module) -> bool:
    return has_plain_head(getattr(causal_lm(model), "config", None))


def selective_loss(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_tokens: int = HEAD_CHUNK_TOKENS,
) -> torch.Tensor:
    """Mean cross-entropy over trained positions (or sum / num_items_in_batch), as the model's loss is."""
    losses, _ = trained_token_losses(model, inputs, labels, chunk_tokens)
    divisor = num_items_in_batch if num_items_in_batch is not None else max(int(losses.shape[0]), 1)
    if torch.is_tensor(divisor):
        divisor = divisor.to(losses.device)
    return losses.sum() / divisor


def trained_token_losses(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    chunk_tokens: int = HEAD_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy (float32) of each trained position, and the batch row it belongs to."""
    lm = causal_lm(model)
    hidden = final_hidden_states(model, inputs)
    next_labels = F.pad(labels, (0, 1), value=-100)[..., 1:]  # position t predicts token t + 1
    trained = next_labels != -100
    states, targets = hidden[trained], next_labels[trained]
    rows = trained.nonzero()[:, 0]
    head = lm.get_output_embeddings()
    if frozen_linear(head) and torch.is_grad_enabled() and targets.shape[0]:
        return FrozenHeadCrossEntropy.apply(states, head.weight, head.bias, targets, chunk_tokens), rows

    def chunk_losses(chunk_states: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(chunk_states).float(), chunk_targets, reduction="none")

    pieces = [
        hidden.new_zeros((0,), dtype=torch.float32) + 0.0 * hidden.sum()
    ]  # the graph, when nothing trains
    for start in range(0, targets.shape[0], chunk_tokens):
        piece = (states[start : start + chunk_tokens], targets[start : start + chunk_tokens])
        if torch.is_grad_enabled():
            pieces.append(checkpoint(chunk_losses, *piece, use_reentrant=False))
        else:
            pieces.append(chunk_losses(*piece))
    return torch.cat(pieces), rows


def frozen_linear(head: torch.nn.Module) -> bool:
    """A plain linear head that trains nothing (LoRA without lm_head in modules_to_save or targets)."""
    if type(head) is not torch.nn.Linear:
        return False
    return not head.weight.requires_grad and (head.bias is None or not head.bias.requires_grad)


class FrozenHeadCrossEntropy(torch.autograd.Function):
    """Cross-entropy of each position through a frozen linear head, chunk by chunk, with the gradient for
    the hidden states computed in the same pass (softmax minus one-hot, times the head's weight): backward
    then only scales each position's row, so no chunk's logits are kept or recomputed (the idea of Liger's
    fused linear cross-entropy, in plain torch ops for every device)."""

    @staticmethod
    def forward(ctx, states, weight, bias, targets, chunk_tokens):
        losses = states.new_empty((targets.shape[0],), dtype=torch.float32)
        grad_states = torch.empty_like(states)
        for start in range(0, targets.shape[0], chunk_tokens):
            rows = slice(start, start + chunk_tokens)
            logits = torch.nn.functional.linear(states[rows], weight, bias).float()
            target = targets[rows]
            # One pass over the logits, in place: shift by the max, exp, normalise. The same tensor then
            # holds the softmax, and the gradient of each position's loss for its logits (softmax - one-hot).
            logits.sub_(logits.amax(dim=-1, keepdim=True))
            target_logit = logits.gather(1, target[:, None]).squeeze(1)
            logits.exp_()
            norm = logits.sum(dim=-1)
            losses[rows] = norm.log() - target_logit
            probabilities = logits.div_(norm[:, None])
            probabilities[torch.arange(target.shape[0], device=target.device), target] -= 1
            grad_states[rows] = probabilities.to(weight.dtype) @ weight
        ctx.save_for_backward(grad_states)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        (grad_states,) = ctx.saved_tensors
        return grad_states * grad_losses[:, None].to(grad_states.dtype), None, None, None, None
