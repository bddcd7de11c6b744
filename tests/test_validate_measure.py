"""The saved-tensor recorder: storages de-duplicated (views count once), parameters excluded, attribution to
the innermost module, and storage identity on the meta device (where data_ptr is 0)."""

import pytest


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_saved_bytes_dedup_params_and_modules(device):
    import torch

    from soraplan.validation.measure import record_saved

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 16, device=device)
            self.act = torch.nn.GELU()

        def forward(self, x):
            y = self.fc(x)                 # saves x (the input)
            a, b = y.chunk(2, dim=-1)      # views of y's storage
            return self.act(a) * b          # GELU saves a (view of y); mul saves gelu(a) and b (view of y)

    net = Net()
    x = torch.randn(4, 8, device=device, requires_grad=True)
    with record_saved(net) as rec:
        net(x)
    by_module = {r.module: r.nbytes for r in rec.records if r.module}
    assert rec.total == 4 * 8 * 4 + 4 * 16 * 4 + 4 * 8 * 4     # x, y (once, whole storage), gelu(a)
    assert rec.under("fc") == 4 * 8 * 4
    assert by_module["act"] == 4 * 16 * 4
    assert rec.excluded_param_saves >= 1                          # fc.weight is saved by addmm, not counted


def test_flash_on_meta_saves_what_flash_saves():
    import torch
    import torch.nn.functional as F

    from soraplan.validation.measure import flash_on_meta, record_saved

    q = torch.randn(1, 2, 64, 16, device="meta", requires_grad=True)
    m = torch.nn.Identity()
    with flash_on_meta(), record_saved(m) as rec:
        F.scaled_dot_product_attention(q, q, q)
    # q (k, v are the same storage), out [1,2,64,16] and logsumexp [1,2,64] fp32
    assert rec.total == 64 * 32 * 4 + 64 * 32 * 4 + 2 * 64 * 4
