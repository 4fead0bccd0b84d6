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
