import os

# Tests never reach a model hub; everything they load is built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from openai_server import server  # noqa: E402,F401 -- the local OpenAI-compatible server fixture



import pytest  # noqa: E402

from workflow_helpers import copy_workflow  # noqa: E402


@pytest.fixture
def workflow_copy(tmp_path):
    """The workflow's files in a fresh folder, so that a test may edit its configs."""
    return copy_workflow(tmp_path)


@pytest.fixture(scope="module")
def two_stop_policy(tmp_path_factory):
    """A tiny random policy whose generation_config lists two stop ids, [<eos>, <system>] (as
    Llama-3-Instruct's lists [<|end_of_text|>, <|eot_id|>]); its folder."""
    import json

    from inpo.config import load_config
    from inpo.modeling import load_policy
    from inpo.tiny_models import run as build_tiny_model

    folder = tmp_path_factory.mktemp("policy") / "model"
    build_tiny_model(load_config("tiny_models", ["kind=policy", f"output={folder}"]))
    _, tok = load_policy(folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = [tok.eos_token_id, tok.convert_tokens_to_ids("<system>")]
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder
