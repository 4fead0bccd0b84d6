import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inpo.batching import balanced_rows, packing_mode, token_budget_batches
from inpo.attention import SEGMENT_ATTENTION, segment_starts
from inpo.logprobs import (PackingError, attention_implementation, check_packing, collate_sequences, pack_sequences,
                           pad_sequences, sequence_logps, set_up_packing)

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
        got = sequence_logps(model, batch, chunk_size=chunk_size)
        want = torch.stack([naive_logps(model, s, st) for s, st in zip(seqs, starts)])
    assert got.shape == (3,)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_gradients_match_naive(model):
    seqs, starts = examples()
    batch = pad_sequences(seqs, starts, pad_id=0, side="left")
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    model.zero_grad()
    (sequence_logps(model, batch, chunk_size=3).double() * weights).sum().backward()
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
        assert torch.all(sequence_logps(model, part) > sequence_logps(model, full))


def test_shape_mismatch_is_rejected(model):
    batch = pad_sequences(*examples(), pad_id=0)
    with pytest.raises(ValueError, match="same shape"):
        sequence_logps(model, {**batch, "attention_mask": batch["attention_mask"][:, :-1]})


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
            sequence_logps(model, batch, chunk_size=4)
    finally:
        hook.remove()
    n_response_tokens = sum(len(s) - st for s, st in zip(seqs, starts))
    assert max(rows) <= 4 and sum(rows) == n_response_tokens


def many_examples(lengths=(9, 5, 13, 2, 7, 11, 3, 6), seed=2):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in lengths]
    return seqs, [max(1, n // 2) for n in lengths]


@pytest.mark.parametrize("layout", ["rows", "single_row", "segments"])
@pytest.mark.parametrize("chunk_size", [3, 1024])
def test_packed_log_probs_equal_padded_and_naive(model, layout, chunk_size):
    seqs, starts = many_examples()
    packed = collate_sequences(seqs, starts, pad_id=0, layout=layout)
    assert packed["input_ids"].shape[0] == (5 if layout == "rows" else 1)  # 13 | 11 | 9+2 | 7+3 | 6+5: five rows of 10-13 tokens
    with torch.no_grad():
        with attention_implementation(model, SEGMENT_ATTENTION if layout == "segments" else None):
            got = sequence_logps(model, packed, chunk_size=chunk_size)
        for side in ("left", "right"):
            torch.testing.assert_close(got, sequence_logps(model, pad_sequences(seqs, starts, 0, side=side)), atol=1e-6, rtol=0)
        want = torch.stack([naive_logps(model, s, st) for s, st in zip(seqs, starts)])
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["rows", "single_row", "segments"])
def test_packed_gradients_equal_padded(model, layout):
    seqs, starts = many_examples()
    weights = torch.linspace(-1.5, 2.0, len(seqs), dtype=torch.float64)
    grads = {}
    for name, batch in (("packed", collate_sequences(seqs, starts, 0, layout)), ("padded", pad_sequences(seqs, starts, 0))):
        model.zero_grad()
        with attention_implementation(model, SEGMENT_ATTENTION if name == "packed" and layout == "segments" else None):
            (sequence_logps(model, batch, chunk_size=5).double() * weights).sum().backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    for g, w in zip(grads["packed"], grads["padded"]):
        torch.testing.assert_close(g, w, atol=1e-8, rtol=1e-6)


def test_pack_sequences_layout():
    batch = pack_sequences([[5, 6, 7], [8, 9], [1, 2, 3, 4]], [1, 1, 2], pad_id=0, rows=[[2], [0, 1]])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch["sequence_ids"].tolist() == [[2, 2, 2, 2, -1], [0, 0, 0, 1, 1]]
    assert batch["response_mask"].tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 0, 1]]


def test_balanced_rows_and_token_budget_batches():
    assert balanced_rows([4, 1, 3, 2], None) == [[0, 2, 3, 1]]
    assert balanced_rows([4, 1, 3, 2], 5) == [[0, 1], [2, 3]]
    assert balanced_rows([7, 2, 3], 5) == [[0], [2, 1]]  # rows hold at least the longest item
    assert balanced_rows([5, 5, 4, 3, 3], 10) == [[0, 2], [1, 3, 4]]  # ceil(20 / 10) = 2 rows of 9 and 11 tokens
    assert token_budget_batches([3, 3, 3, 9, 1], 6) == [[0, 1], [2], [3], [4]]
    assert token_budget_batches([1] * 5, None, max_items=2) == [[0, 1], [2, 3], [4]]
    assert token_budget_batches([], 4) == []
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        token_budget_batches([1], 0)


def test_packing_mode():
    assert packing_mode("auto", "sdpa") == "segments" == packing_mode("auto", "eager", 64)
    assert packing_mode("auto", "sdpa", 63) == "rows" and packing_mode("auto", "flash_attention_2", 10) == "single_row"
    assert packing_mode("rows", "sdpa") == "rows"
    assert packing_mode("auto", "flash_attention_2") == "single_row"
    assert packing_mode("padded", "flash_attention_2") == "padded"
    with pytest.raises(ValueError, match="packing must be one of"):
        packing_mode("packed", "sdpa")


def test_check_packing_passes_for_llama_and_catches_a_model_that_ignores_positions(model):
    seqs, starts = many_examples()
    for layout in ("rows", "single_row", "segments"):
        assert check_packing(model, seqs, starts, 0, layout) < 1e-6
    assert model.config._attn_implementation == "sdpa"  # segments only inside the check

    class IgnoresPositions(torch.nn.Module):
        """A model whose forward builds its own positions, as an architecture without packed support."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            return self.inner(input_ids=input_ids, attention_mask=mask, **kwargs)

        def get_decoder(self):
            return self.inner.get_decoder()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

    with pytest.raises(PackingError, match="set packing=padded"):
        check_packing(IgnoresPositions(model), seqs, starts, 0, "rows")


def test_set_up_packing_switches_to_segment_attention_and_the_saved_model_does_not_keep_it(model, tmp_path):
    seqs, starts = many_examples()
    torch.manual_seed(0)
    fresh = LlamaForCausalLM(model.config)
    assert set_up_packing(fresh, "segments", seqs, starts, 0) == "segments"
    assert fresh.config._attn_implementation == SEGMENT_ATTENTION
    fresh.save_pretrained(tmp_path)
    assert LlamaForCausalLM.from_pretrained(tmp_path).config._attn_implementation != SEGMENT_ATTENTION
    with pytest.raises(ValueError, match="packed rows only"):
        sequence_logps(fresh, pad_sequences(seqs, starts, 0))  # a padded batch is refused, not mis-scored


def test_segment_starts():
    assert segment_starts(torch.tensor([[0, 1, 2, 0, 1, 0]])) == [0, 3, 5, 6]
    with pytest.raises(ValueError, match="one packed row"):
        segment_starts(torch.tensor([[0, 1], [0, 1]]))
