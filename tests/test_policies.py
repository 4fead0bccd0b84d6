"""Policies as Hugging Face models: chat turns, truncation, LoRA, sharded sampling, backends."""

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM

from inpo import logps, prompts, sample, train
from inpo.config import load_config
from inpo.judges import make_judge
from inpo.modeling import ModelLoadError, build_llama, build_word_tokenizer, conversation, load_policy, prompt_ids, save_policy
from inpo.records import RecordError, read_jsonl, write_jsonl
from inpo.sampling import make_sampler
from inpo.shards import merge, shard_bounds
from inpo.task import VOCABULARY, make_prompts, render_response

ARCHITECTURE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 64, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A tiny random policy folder, and a prompt set of the embedded task."""
    root = tmp_path_factory.mktemp("policy")
    tokenizer = build_word_tokenizer(VOCABULARY)
    save_policy(build_llama(tokenizer, ARCHITECTURE, seed=0), tokenizer, root / "model")
    write_jsonl(root / "prompts.jsonl", make_prompts(10, seed=1, split="train1", min_items=2, max_items=4))
    return root


def test_a_record_with_chat_turns_is_prompted_with_all_of_them(policy):
    _, tokenizer = load_policy(policy / "model")
    turns = [{"role": "user", "content": "sort 2 1"}, {"role": "assistant", "content": "( 1 2 )"},
             {"role": "user", "content": "sort 3 1"}]
    assert conversation({"id": "a", "prompt": "sort 3 1"}) == [{"role": "user", "content": "sort 3 1"}]
    assert conversation({"id": "a", "prompt": "sort 3 1", "messages": turns}) == turns
    ids = prompt_ids(tokenizer, turns)
    assert tokenizer.decode(ids).count("<user>") == 2 and len(ids) > len(prompt_ids(tokenizer, "sort 3 1"))


def test_a_model_without_a_chat_template_is_refused_by_name(policy, tmp_path):
    model, tokenizer = load_policy(policy / "model")
    tokenizer.chat_template = None
    save_policy(model, tokenizer, tmp_path / "base")
    with pytest.raises(ValueError, match="no chat template"):
        load_policy(tmp_path / "base")


def broken_copy(policy, folder, name, content: bytes):
    """A copy of the policy folder whose file ``name`` holds ``content``."""
    shutil.copytree(policy / "model", folder)
    (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_a_corrupted_weights_file_is_named_with_its_folder(policy, tmp_path, damage):
    data = (policy / "model" / "model.safetensors").read_bytes()
    content = {"truncated": data[: len(data) // 2], "random bytes": random.Random(0).randbytes(len(data)), "empty": b""}
    folder = broken_copy(policy, tmp_path / "model", "model.safetensors", content[damage])
    with pytest.raises(ModelLoadError) as error:
        load_policy(folder)
    prefix = f"model '{folder}' could not be loaded: {folder}/model.safetensors is not a valid safetensors file ("
    assert re.fullmatch(re.escape(prefix) + r"Error while deserializing header: [^()]+\)", str(error.value))
    assert isinstance(error.value.__cause__, SafetensorError)  # the original kept


@pytest.mark.parametrize("name, content, problem", [
    ("tokenizer.json", b"", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ("config.json", b'{"vocab_size": ', "not valid JSON (Expecting value: line 1 column 16 (char 15))"),
    ("chat_template.jinja", b"\xff", "not UTF-8 ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)"),
])
def test_a_corrupted_model_file_is_named_with_its_folder(policy, tmp_path, name, content, problem):
    folder = broken_copy(policy, tmp_path / "model", name, content)
    with pytest.raises(ModelLoadError) as error:
        load_policy(folder)
    assert str(error.value) == f"model '{folder}' could not be loaded: {folder}/{name} is {problem}"


def test_a_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"model '{tmp_path}/nope' could not be loaded: not a model folder")):
        load_policy(tmp_path / "nope")


def test_a_model_whose_checkpoint_lacks_weights_is_refused_not_filled_at_random(policy):
    """A causal LM folder named as a reward model has no score head; transformers would draw one."""
    with pytest.raises(ModelLoadError) as error:
        make_judge(kind="reward_model", model=str(policy / "model"))
    assert str(error.value) == (f"model '{policy}/model' could not be loaded as AutoModelForSequenceClassification: its "
                                f"checkpoint lacks 1 weights (score.weight), which would be random; is it a model of "
                                f"another kind?")


def test_a_saved_policy_follows_the_umask(policy, tmp_path):
    model, tokenizer = load_policy(policy / "model")
    old = os.umask(0o002)
    try:
        save_policy(model, tokenizer, tmp_path / "saved")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "saved").iterdir()}
    assert "model.safetensors" in modes and modes == dict.fromkeys(modes, oct(0o664))


def scored_pairs(policy, root, records=None, **truncation):
    records = records or read_jsonl(policy / "prompts.jsonl")
    pairs = [{"id": r["id"], "prompt": r["prompt"], "chosen": render_response(sorted(r["items"]), 0, 1),
              "rejected": render_response(r["items"], 2, 0)} for r in records]
    write_jsonl(root / "pairs.jsonl", pairs)
    overrides = [f"{k}={v}" for k, v in truncation.items()]
    logps.run(load_config("logps", [f"pairs={root}/pairs.jsonl", f"ref_policy={policy}/model", f"policy={policy}/model",
                                    f"output={root}/scored.jsonl", *overrides]))
    return root / "scored.jsonl"


def test_lora_trains_adapters_only_and_saves_a_merged_plain_policy(policy, tmp_path):
    pairs = scored_pairs(policy, tmp_path)
    summary = train.run(load_config("train", [f"pairs={pairs}", f"policy={policy}/model", f"output={tmp_path}/policy",
                                              f"work_dir={tmp_path}/work", "lora.enabled=true", "lora.r=4", "gradient_checkpointing=true",
                                              "optim.learning_rate=1e-2", "optim.epochs=2", "optim.batch_size=4"]))
    assert summary["steps"] == 6
    with safe_open(str(tmp_path / "policy" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora" in k]
    before = load_policy(policy / "model")[0].state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").state_dict()
    # the adapters sit on the linear layers (all-linear): those move, the embeddings and norms do not
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])


def test_train_refuses_log_probs_of_differently_truncated_pairs(policy, tmp_path):
    pairs = scored_pairs(policy, tmp_path, max_length=40, max_prompt_length=20)
    assert read_jsonl(pairs)[0]["max_length"] == 40
    with pytest.raises(ValueError, match="max_length=40, but train has max_length=None"):
        train.run(load_config("train", [f"pairs={pairs}", f"policy={policy}/model", f"output={tmp_path}/p",
                                        f"work_dir={tmp_path}/w"]))


def test_shards_split_evenly_and_merge_back_in_order(policy, tmp_path):
    assert [shard_bounds(10, k, 3) for k in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [shard_bounds(2, k, 3) for k in range(3)] == [(0, 1), (1, 2), (2, 2)]
    with pytest.raises(ValueError, match="shard=3, n_shards=3"):
        shard_bounds(10, 3, 3)
    shards = []
    for k in range(3):
        shards.append(tmp_path / f"shard{k}.jsonl")
        sample.run(load_config("sample", [f"policy={policy}/model", f"prompts={policy}/prompts.jsonl",
                                          f"output={shards[-1]}", "n_samples=2", f"shard={k}", "n_shards=3",
                                          "sampler.max_new_tokens=4"]))
    done = subprocess.run([sys.executable, "-m", "inpo.shards", "merge", str(tmp_path / "all.jsonl"), *map(str, shards)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    merged = read_jsonl(tmp_path / "all.jsonl")
    assert [r["id"] for r in merged] == [r["id"] for r in read_jsonl(policy / "prompts.jsonl")]
    assert all(len(r["responses"]) == 2 for r in merged)
    with pytest.raises(RecordError, match="shards overlap"):
        merge(str(tmp_path / "bad.jsonl"), [str(shards[0]), str(shards[0])])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_the_vllm_backend_says_how_to_install_it(policy):
    with pytest.raises(ImportError, match=r"pip install 'inpo\[vllm\]'"):
        make_sampler(str(policy / "model"), load_config("sample", ["sampler=vllm", "policy=x", "prompts=x", "output=x"]).sampler)


def test_prompt_sets_come_from_a_dataset_file_with_chat_turns(tmp_path):
    rows = [{"context_messages": [{"role": "user", "content": "Write a haiku."}]},
            {"context_messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]}]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    records = prompts.run(load_config("prompts", [f"output={tmp_path}/p.jsonl", f"dataset.path={tmp_path}/rows.jsonl",
                                                  "n_prompts=null", "iteration=2"]))
    assert records == [{"id": "train2-000000", "prompt": "Write a haiku."},
                       {"id": "train2-000001", "prompt": "Name a fruit.", "messages": rows[1]["context_messages"]}]
    write_jsonl(tmp_path / "bad.jsonl", [{"context_messages": [{"role": "assistant", "content": "hi"}]}])
    with pytest.raises(RecordError, match=r"row 0: 'context_messages' must be a list of chat turns ending with a user turn"):
        prompts.run(load_config("prompts", [f"output={tmp_path}/q.jsonl", f"dataset.path={tmp_path}/bad.jsonl"]))
    with pytest.raises(FileNotFoundError, match="dataset.path="):
        prompts.run(load_config("prompts", [f"output={tmp_path}/q.jsonl", f"dataset.path={tmp_path}/missing.jsonl"]))


@pytest.mark.slow
def test_two_processes_train_like_one_with_twice_the_batch(policy, tmp_path):
    """DDP (torch.distributed over gloo on the CPU, as accelerate runs it under torchrun): 2 processes
    x 4 pairs per step give the weights of 1 process x 8 pairs, so gradients are averaged across
    processes and the data is split, not repeated. (16 pairs: with a count that does not divide,
    accelerate evens out the last step by repeating pairs, and the two runs differ there.)"""
    pairs = scored_pairs(policy, tmp_path, make_prompts(16, seed=2, split="train1", min_items=2, max_items=4))
    common = [f"pairs={pairs}", f"policy={policy}/model", "optim.epochs=1", "optim.learning_rate=1e-2"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "inpo.train", *common, f"output={tmp_path}/two/policy", f"work_dir={tmp_path}/two",
                          f"hydra.run.dir={tmp_path}/two", "optim.batch_size=4"],
                         capture_output=True, text=True, env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    train.run(load_config("train", [*common, f"output={tmp_path}/one/policy", f"work_dir={tmp_path}/one", "optim.batch_size=8"]))
    assert json.loads((tmp_path / "two/train_summary.json").read_text())["steps"] == 16 // 8
    start = load_policy(policy / "model")[0].state_dict()
    one = AutoModelForCausalLM.from_pretrained(tmp_path / "one/policy").state_dict()
    both = AutoModelForCausalLM.from_pretrained(tmp_path / "two/policy").state_dict()
    assert max((both[k] - one[k]).abs().max().item() for k in one) < 1e-5
    assert max((one[k] - start[k]).abs().max().item() for k in one) > 1e-3
