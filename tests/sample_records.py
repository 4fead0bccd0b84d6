"""Sample records written by hand in tests, with the fields the sample stage gives every record."""


def finished(responses: list[str], stop_token: str = "<eos>") -> dict:
    """A sample record's answer fields for ``responses`` that all ended at ``stop_token``, from an
    uncut prompt."""
    return {"responses": responses, "finish_reasons": ["stop"] * len(responses),
            "stop_tokens": [stop_token] * len(responses), "prompt_truncated": False}
