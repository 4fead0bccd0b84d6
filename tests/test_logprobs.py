import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inpo.logprobs import pad_sequences, sequence_logps

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).double().eval()


def naive_logps(model, seq, start):
    """Independent reference: full-vocabulary log-softmax of one unpadded sequence."""
    ids = torch.tensor([seq])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return sum(logp[t - 1, seq[t]] for t in range(start, len(seq)))


def examples():
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (9, 5, 13)]
    return seqs, [4, 2, 7]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("chunk_size", [1, 5, 1024])
def test_matches_naive_log_softmax(model, side, chunk_size):
    seqs, starts = examples()
    batch = pad_sequences(seqs, starts, pad_id=0, side=side)
    with torch.no_grad():
        got = sequence_logps(model, **batch, chunk_size=chunk_size)
        want = torch.stack([naive_logps(model, s, st) for s, st in zip(seqs, starts)])
    assert got.shape == (3,)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_gradients_match_naive(model):
    seqs, starts = examples()
    batch = pad_sequences(seqs, starts, pad_id=0, side="left")
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    model.zero_grad()
    (sequence_logps(model, **batch, chunk_size=3).double() * weights).sum().backward()
    got = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    sum(w * naive_logps(model, s, st) for w, s, st in zip(weights, seqs, starts)).backward()
    want = [p.grad.clone() for p in model.parameters()]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_prompt_and_padding_tokens_do_not_count(model):
    seqs, starts = examples()
    full = pad_sequences(seqs, [1, 1, 1], pad_id=0)
    part = pad_sequences(seqs, starts, pad_id=0)
    with torch.no_grad():
        assert torch.all(sequence_logps(model, **part) > sequence_logps(model, **full))


def test_shape_mismatch_is_rejected(model):
    batch = pad_sequences(*examples(), pad_id=0)
    with pytest.raises(ValueError, match="same shape"):
        sequence_logps(model, batch["input_ids"], batch["attention_mask"][:, :-1], batch["response_mask"])


def test_bad_padding_side():
    with pytest.raises(ValueError, match="padding side"):
        pad_sequences([[1, 2]], [1], pad_id=0, side="middle")


def test_lm_head_sees_at_most_chunk_size_response_tokens(model):
    seqs, starts = examples()
    batch = pad_sequences(seqs, starts, pad_id=0)
    rows = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: rows.append(i[0].numel() // i[0].shape[-1]))
    try:
        with torch.no_grad():
            sequence_logps(model, **batch, chunk_size=4)
    finally:
        hook.remove()
    n_response_tokens = sum(len(s) - st for s, st in zip(seqs, starts))
    assert max(rows) <= 4 and sum(rows) == n_response_tokens
