"""LoRA adapters (peft) for training a policy on a small GPU.

Only the adapter weights train; the saved policy is merged (W + (alpha / r) B A), so every later
stage and vLLM load a plain Hugging Face folder. The frozen pi_ref and pi_t never need the
adapter switched off: their log-probs are computed once, by the ``logps`` stage.
"""

from __future__ import annotations

from typing import Any, Mapping


def apply_lora(model, options: Mapping[str, Any]):
    """``model`` wrapped with trainable LoRA adapters: ``options`` has r, alpha, dropout, target_modules.

    peft draws each adapter's initial A from torch's global RNG (B starts at 0): the caller seeds
    it first (``inpo.train`` does, from its seed). ``dropout`` is off while ``train.disable_dropout``.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("lora.enabled=true needs peft: pip install 'inpo[lora]'") from None
    if not options["r"] > 0 or not options["alpha"] > 0 or not 0 <= options["dropout"] < 1:
        raise ValueError(f"lora needs r > 0, alpha > 0 and 0 <= dropout < 1, got {dict(options)}")
    target = options["target_modules"]
    config = LoraConfig(r=int(options["r"]), lora_alpha=float(options["alpha"]), lora_dropout=float(options["dropout"]),
                        target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM")
    return get_peft_model(model, config)

