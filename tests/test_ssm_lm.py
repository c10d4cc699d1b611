"""What every state-space LM of ours does alike (models/ssm.py): logits for the last positions only, and a
state that a call never modifies, so a clone branches a sequence."""

import pytest
import torch

from mambapoc.models.mamba import MambaConfig, MambaLM
from mambapoc.models.mamba2 import Mamba2Config, Mamba2LM

VOCAB = 64
MODELS = {
    "mamba": lambda: MambaLM(MambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2)),
    "mamba2": lambda: Mamba2LM(Mamba2Config(vocab_size=VOCAB, hidden_size=32, num_heads=4, head_dim=16,
                                            state_size=8, n_groups=2, num_hidden_layers=2, chunk_size=16)),
}


@pytest.fixture(params=list(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_logits_to_keep(model):
    ids = torch.randint(0, VOCAB, (1, 50), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(ids).logits
        last = model(ids, logits_to_keep=3, chunk_size=16).logits
    assert last.shape == (1, 3, VOCAB) and last.dtype == torch.float32
    torch.testing.assert_close(last, full[:, -3:], rtol=1e-4, atol=1e-4)


def test_state_is_not_modified_and_clone_branches(model):
    g = torch.Generator().manual_seed(6)
    prefix, a, b = (torch.randint(0, VOCAB, (1, n), generator=g) for n in (40, 5, 1))
    with torch.no_grad():
        state = model(prefix).state
        before = state.clone()
        branch_a = model(a, state=state).logits
        branch_b = model(b, state=state.clone()).logits
        direct_a = model(torch.cat([prefix, a], 1)).logits[:, -5:]
        direct_b = model(torch.cat([prefix, b], 1)).logits[:, -1:]
    assert type(before) is type(state)
    for x, y in zip(state.ssm + state.conv, before.ssm + before.conv, strict=True):
        assert torch.equal(x, y)
    torch.testing.assert_close(branch_a, direct_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(branch_b, direct_b, rtol=1e-4, atol=1e-4)


def test_empty_input_is_an_error(model):
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
