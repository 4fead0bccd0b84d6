import os

# Tests never reach a model hub; everything they load is built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from openai_server import server  # noqa: E402,F401 -- the local OpenAI-compatible server fixture

