"""The shipped tiny models load by `bundled:NAME` and by transformers, with the recorded weights."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from mambapoc.models.registry import load, resolve

PROMPT = "2024-03-04 10:12:01,337 ERROR [http-nio-8080-exec-3] com.shop.checkout.PaymentClient: request"
# Last-position logits of the first five vocabulary entries, recorded when the models were trained;
# any change to the weights, the tokenizer or the loaders moves them.
RECORDED = {
    "mamba-tiny": [11.2571, 0.0267, -0.6936, -0.6711, 6.5536],
    "transformer-tiny": [12.0321, -10.0264, 5.386, -6.8681, -3.9575],
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_bundled_model_logits(name):
    lm = load(f"bundled:{name}")
    ids = lm.tokenizer.encode(PROMPT, add_special_tokens=False)
    with torch.inference_mode():
        ours = lm.model(torch.tensor([ids])).logits[0, -1, :5]
        hf = AutoModelForCausalLM.from_pretrained(str(resolve(f"bundled:{name}"))).eval()
        theirs = hf(torch.tensor([ids])).logits[0, -1, :5]
    expected = torch.tensor(RECORDED[name])
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(theirs, expected, rtol=1e-4, atol=2e-4)


def test_bundled_pair_is_matched():
    a, b = (load(f"bundled:{n}") for n in RECORDED)
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
    assert abs(a.info.params - b.info.params) / max(a.info.params, b.info.params) < 0.10
    assert a.info.trained_length == b.info.trained_length == 512
