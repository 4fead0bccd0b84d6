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
    ``load_pretrained``, and ValueError for a tokenizer without a chat template."""
    torch_dtype = DTYPES[dtype] if dtype in DTYPES else dtype
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"model {str(path)!r}: its tokenizer has no chat template; the prompts are chat turns, "
                         f"so use a chat (SFT/instruct) model or add a chat_template to its tokenizer_config.json")
    model = load_pretrained(AutoModelForCausalLM, path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
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


def prompt_ids(tokenizer, prompt: str | Sequence[Mapping[str, str]], max_length: int | None = None) -> list[int]:
    """Token ids of a prompt (a user message, or chat turns) under the chat template, ending where
    the assistant's answer begins; cut from the left to ``max_length`` (the question's end and the
    assistant header are what the answer depends on most)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    return ids[-max_length:] if max_length else ids


def response_ids(tokenizer, response: str) -> list[int]:
    """Token ids of a response, closed by EOS (the token that ends the assistant turn)."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode(tokenizer, prompt: str | Sequence[Mapping[str, str]], response: str, *,
           max_length: int | None = None, max_prompt_length: int | None = None) -> dict:
    """``{"ids": prompt + response token ids, "response_start": index of the first response token}``.

    The prompt is cut from the left to ``max_prompt_length`` and the response from the right so
    that the whole fits in ``max_length`` (the paper's 1000 and 2048). Every stage that scores the
    same pair must cut it the same way, or log pi_ref(y) and log pi(y) are of different tokens.
    """
    p = prompt_ids(tokenizer, prompt, max_prompt_length)
    r = response_ids(tokenizer, response)
    if max_length:
        if len(p) >= max_length:
            raise ValueError(f"max_length={max_length} leaves no room for the response after a {len(p)}-token prompt; "
                             f"set max_prompt_length below max_length")
        r = r[: max_length - len(p)]
    return {"ids": p + r, "response_start": len(p)}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
