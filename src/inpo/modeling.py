"""Policies as Hugging Face model folders: build the embedded default's tokenizer and tiny Llama,
load any causal LM by name or path, and encode prompts/responses with the chat template."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .records import follow_umask

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
ROLE_TOKENS = ["<system>", "<user>", "<assistant>"]
# Roles as words, each turn ended by a space; an assistant turn closes with the EOS token so the
# model learns to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<' + message['role'] + '> ' + message['content'] + ' ' }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token + ' ' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
)


def build_word_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``vocabulary``, with special tokens and a chat template."""
    words = list(SPECIAL_TOKENS.values()) + ROLE_TOKENS + [w for w in dict.fromkeys(vocabulary)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_llama(tokenizer: PreTrainedTokenizerFast, architecture: Mapping[str, Any], seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by ``architecture`` (LlamaConfig fields) for ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **architecture,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """A model's dtype for inference: ``auto`` is bfloat16 on CUDA and float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


class ModelLoadError(ValueError):
    """A model folder or hub name whose files transformers cannot use; the message names it."""


def _file_problem(file: Path) -> str | None:
    """Why a model folder's file cannot be read ("not valid JSON (...)"), or None if it can (or
    is of a kind not checked)."""
    try:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt"):  # reads the header, checks it against the size
                pass
        elif file.suffix == ".json":
            json.loads(file.read_bytes().decode("utf-8"))
        elif file.suffix == ".jinja":
            file.read_bytes().decode("utf-8")
    except SafetensorError as err:
        return f"not a valid safetensors file ({err})"
    except UnicodeDecodeError as err:
        return f"not UTF-8 ({err})"
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err})"
    return None


def _broken_file(folder: str | os.PathLike, pattern: str = "*") -> tuple[Path, str] | None:
    """The first file of ``folder`` matching ``pattern`` that cannot be read, and why; None if
    none is (or no such folder)."""
    files = sorted(f for f in Path(folder).glob(pattern) if f.is_file())
    return next(((f, problem) for f in files if (problem := _file_problem(f))), None)


def load_pretrained(auto_class, path: str | os.PathLike, **kwargs):
    """``auto_class.from_pretrained(path, **kwargs)`` (a model or tokenizer class; a folder or hub
    name), with one error that names ``path`` when it cannot be loaded (the original chained).

    Raises ModelLoadError naming the file when a file of the folder is broken (a truncated
    safetensors file, a JSON file cut short, ...), or with transformers' reason when the folder
    is of another kind (e.g. an unknown model class); FileNotFoundError when ``path`` is neither
    a model folder nor a hub name this machine can reach.
    """
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError, SafetensorError) as err:  # JSON and UTF-8 decode errors are ValueErrors
        where = f"model {str(path)!r} could not be loaded"
        # transformers' errors do not say which file is broken
        broken = _broken_file(path, "*.safetensors" if isinstance(err, SafetensorError) else "*")
        if broken:
            raise ModelLoadError(f"{where}: {broken[0]} is {broken[1]}") from err
        if isinstance(err, OSError):
            raise FileNotFoundError(f"{where}: not a model folder, or not reachable ({err})") from err
        raise ModelLoadError(f"{where}: {err}") from err


def load_model_weights(auto_class, path: str | os.PathLike, **kwargs):
    """``load_pretrained`` of a model class, refusing a checkpoint that lacks weights the class has:
    transformers would draw them at random, unseeded (e.g. the score head of a causal LM folder
    loaded as a reward model), and every number computed with them would be noise.
    Raises ModelLoadError naming the folder and the missing weights, or as ``load_pretrained``."""
    model, info = load_pretrained(auto_class, path, output_loading_info=True, **kwargs)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ModelLoadError(f"model {str(path)!r} could not be loaded as {auto_class.__name__}: its checkpoint lacks "
                             f"{len(missing)} weights ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}), "
                             f"which would be random; is it a model of another kind?")
    return model


def load_tokenizer(path: str | os.PathLike, *, trust_remote_code: bool = False):
    """A model's tokenizer; one without a pad token pads with EOS (padding is masked, so any id does).
    Raises as ``load_pretrained``."""
    tokenizer = load_pretrained(AutoTokenizer, path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(path: str | os.PathLike, *, dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu",
                trust_remote_code: bool = False):
    """Load a causal LM and its tokenizer from a Hugging Face folder or hub name; returns (model, tokenizer).
    ``dtype``: a torch dtype, a name in ``DTYPES``, or ``auto`` (the checkpoint's own). Raises as
    ``load_model_weights``, and ValueError for a tokenizer without a chat template."""
    torch_dtype = DTYPES[dtype] if dtype in DTYPES else dtype
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"model {str(path)!r}: its tokenizer has no chat template; the prompts are chat turns, "
                         f"so use a chat (SFT/instruct) model or add a chat_template to its tokenizer_config.json")
    model = load_model_weights(AutoModelForCausalLM, path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model.to(device), tokenizer


def save_policy(model, tokenizer, path: str | os.PathLike, *, state_dict=None, save_function=torch.save,
                is_main_process: bool = True) -> None:
    """Save a Hugging Face folder atomically: written beside ``path``, then renamed into place.

    Under accelerate every process calls this with ``state_dict=accelerator.get_state_dict(model)``
    (the collective that gathers ZeRO-3/FSDP shards) and its ``is_main_process``; only the main one
    writes (another one touching the temporary folder could find it already renamed).
    """
    if not is_main_process:
        return
    if hasattr(model, "merge_and_unload"):
        # a LoRA policy is saved merged (inpo.lora): a plain folder for every later stage
        model, state_dict = model.merge_and_unload(), None
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, state_dict=state_dict, save_function=save_function, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    follow_umask(tmp.glob("*.safetensors"))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def conversation(record: Mapping[str, Any]) -> list[dict]:
    """The chat turns a record's response answers: its ``messages`` (multi-turn prompt sets such
    as RLHFlow's ``context_messages``) if it has them, else one user turn with its ``prompt``."""
    return list(record.get("messages") or [{"role": "user", "content": record["prompt"]}])


def as_messages(prompt: str | Sequence[Mapping[str, str]]) -> list[dict]:
    """A prompt as chat turns: a string is one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def _render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def prompt_ids(tokenizer, prompt: str | Sequence[Mapping[str, str]], max_length: int | None = None) -> list[int]:
    """Token ids of a prompt under the chat template, ending where the assistant's answer begins,
    cut to ``max_length`` as ``encode_prompt`` cuts it."""
    return encode_prompt(tokenizer, prompt, max_length)[0]


def encode_prompt(tokenizer, prompt: str | Sequence[Mapping[str, str]], max_length: int | None = None) -> tuple[list[int], bool]:
    """(token ids of a prompt under the chat template, ending where the assistant's answer begins;
    whether it was cut to fit ``max_length``).

    A prompt too long is cut inside its content, so the template's structure (BOS, the turn
    headers, the generation prompt) stays whole: first the oldest turns go (system turns are kept;
    an assistant turn left first goes too, so the conversation still opens with the user), then
    the start of the oldest kept turn's content, at a token boundary. The last turn, the question
    being answered, is the last to lose anything. (TRL's DPO tokenization keeps BOS for the same
    reason, huggingface/trl#1679.) Every stage that encodes prompts calls this: the samplers,
    ``logps`` and ``train`` see the same tokens.

    Raises ValueError when the template, the system turns and the last turn's header alone
    exceed ``max_length``.
    """
    messages = as_messages(prompt)
    ids = _render_prompt(tokenizer, messages)
    if not max_length or len(ids) <= max_length:
        return ids, False

    def turns() -> list[int]:
        return [i for i, m in enumerate(messages) if m["role"] != "system"]

    while len(ids) > max_length and len(turns()) > 1:
        del messages[turns()[0]]
        while len(turns()) > 1 and messages[turns()[0]]["role"] == "assistant":
            del messages[turns()[0]]
        ids = _render_prompt(tokenizer, messages)
    first = turns()[0] if turns() else 0
    content = messages[first]["content"]
    offsets = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    drop = 0
    while len(ids) > max_length:
        drop += len(ids) - max_length  # re-tokenizing the joined text may differ by a token: go again
        if drop >= len(offsets):
            raise ValueError(f"max_prompt_length={max_length} leaves no room for the question: the chat template and "
                             f"the system turns alone take more tokens; raise max_prompt_length")
        messages[first] = {**messages[first], "content": content[offsets[drop][0]:]}
        ids = _render_prompt(tokenizer, messages)
    return ids, True


def end_of_turn_token(tokenizer) -> str:
    """The token the chat template writes right after an assistant's content: how a finished
    answer ends in the format the model was trained on (Llama 3's ``<|eot_id|>``, ChatML's
    ``<|im_end|>``, the embedded default's ``<eos>``); the tokenizer's EOS for a template that
    writes nothing there."""
    sentinel = "INPO-END-OF-ANSWER"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": sentinel}],
                                         tokenize=False)
    after = text[text.rindex(sentinel) + len(sentinel):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    return tokenizer.convert_ids_to_tokens(ids[0]) if ids else tokenizer.eos_token


def token_id(tokenizer, token: str) -> int:
    """The id of the vocabulary entry ``token`` (a stop token's text as samples record it).
    Raises ValueError when the tokenizer has no such single token."""
    index = tokenizer.convert_tokens_to_ids(token)
    if index is None or (index == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"{token!r} is not a token of this tokenizer; the samples' stop tokens must come from "
                         f"the policy's own tokenizer")
    return index


FINISH_REASONS = ("stop", "length")  # vLLM's and OpenAI's names: ended at a stop token / cut at the limit


def answer_ending(record: Mapping[str, Any], side: str, end_of_turn: str) -> str | None:
    """The token that closed a pair's ``side`` ("chosen" or "rejected") answer when it was
    generated, or None for an answer cut at the length limit, which the policy never ended.

    Annotated pairs record it (``<side>_finish_reason``, ``<side>_stop_token``). A pair without a
    finish reason, e.g. a preference dataset in TRL's format, holds finished answers, closed by
    the chat template's end-of-turn token ``end_of_turn`` (``end_of_turn_token``).
    Raises ValueError for an unknown finish reason or a finished answer without its stop token.
    """
    reason = record.get(f"{side}_finish_reason")
    if reason is None:
        return end_of_turn
    if reason not in FINISH_REASONS:
        raise ValueError(f"pair {record.get('id')!r}: {side}_finish_reason must be one of {FINISH_REASONS}, got {reason!r}")
    stop = record.get(f"{side}_stop_token")
    if reason == "stop" and not isinstance(stop, str):
        raise ValueError(f"pair {record.get('id')!r}: {side}_finish_reason is 'stop' but {side}_stop_token is {stop!r}")
    return stop if reason == "stop" else None


def response_ids(tokenizer, response: str, stop_token: str | None) -> list[int]:
    """Token ids of a response, closed by ``stop_token`` when the policy ended it there (None: an
    answer cut at the length limit gets no end token: the policy never chose to stop)."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids if stop_token is None else ids + [token_id(tokenizer, stop_token)]


END_OF_TURN = "end_of_turn"  # encode's default stop_token: a finished answer, closed as the chat template closes it


def encode(tokenizer, prompt: str | Sequence[Mapping[str, str]], response: str, *, stop_token: str | None = END_OF_TURN,
           max_length: int | None = None, max_prompt_length: int | None = None) -> dict:
    """``{"ids": prompt + response token ids, "response_start": index of the first response token,
    "prompt_truncated": bool, "response_truncated": bool}``.

    ``stop_token`` is the token that ended the answer (``answer_ending``): by default the chat
    template's end of turn (``end_of_turn_token``: a finished answer, as in a preference dataset
    in TRL's format); None for an answer cut at the length limit, which gets no end token. The
    prompt is cut to ``max_prompt_length`` inside its content (``encode_prompt``) and the response
    from the right so that the whole fits in ``max_length`` (the paper's 1000 and 2048). Every
    stage that scores the same pair must cut it the same way, or log pi_ref(y) and log pi(y) are
    of different tokens.
    """
    if stop_token == END_OF_TURN:
        stop_token = end_of_turn_token(tokenizer)
    p, prompt_truncated = encode_prompt(tokenizer, prompt, max_prompt_length)
    r = response_ids(tokenizer, response, stop_token)
    response_truncated = False
    if max_length:
        if len(p) >= max_length:
            raise ValueError(f"max_length={max_length} leaves no room for the response after a {len(p)}-token prompt; "
                             f"set max_prompt_length below max_length")
        response_truncated = len(p) + len(r) > max_length
        r = r[: max_length - len(p)]
    return {"ids": p + r, "response_start": len(p), "prompt_truncated": prompt_truncated,
            "response_truncated": response_truncated}


def encode_pairs(tokenizer, pairs: Sequence[Mapping[str, Any]], *, max_length: int | None = None,
                 max_prompt_length: int | None = None) -> tuple[list[dict[str, dict]], dict[str, int]]:
    """Each pair's chosen and rejected sequences (``{"chosen": encode(...), "rejected": ...}``),
    each answer closed as it ended (``answer_ending``), and the counts a stage reports:
    ``prompts_truncated`` (pairs whose prompt was cut to ``max_prompt_length``),
    ``answers_without_end_token`` (answers cut at the sampler's limit, scored without an end
    token) and ``responses_truncated`` (answers cut here to fit ``max_length``). ``logps`` and
    ``train`` both call it, so the stored and the trained log-probs are of the same tokens."""
    end_of_turn = end_of_turn_token(tokenizer)
    encoded, counts = [], {"prompts_truncated": 0, "answers_without_end_token": 0, "responses_truncated": 0}
    for pair in pairs:
        sides = {}
        for side in ("chosen", "rejected"):
            stop = answer_ending(pair, side, end_of_turn)
            sides[side] = encode(tokenizer, conversation(pair), pair[side], stop_token=stop, max_length=max_length,
                                 max_prompt_length=max_prompt_length)
            counts["answers_without_end_token"] += stop is None
            counts["responses_truncated"] += sides[side]["response_truncated"]
        counts["prompts_truncated"] += sides["chosen"]["prompt_truncated"]
        encoded.append(sides)
    return encoded, counts


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
