"""White-box FGSM/PGD on a tiny trained conv net: budget 0 changes nothing, larger budgets hurt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from deepgen.errors import DeepgenError
from deepgen.evaluation.robustness import (
    as_image_tensor,
    fgsm,
    model_logits,
    pgd,
    predict_logits,
    robustness_table,
)

MEAN = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
STD = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 noise images; fakes carry a faint checkerboard (a stand-in for an upsampling trace)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 + 0.12 * torch.randn(n, 3, 16, 16, generator=g)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float() * 2 - 1
    x = x + 0.06 * y.view(n, 1, 1, 1) * checker
    return x.clamp(0, 1), y


class TinyNet(nn.Module):
    def __init__(self, out: str = "flat") -> None:
        super().__init__()
        self.out = out
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(8, 1),
        )

    def forward(self, x):
        z = self.body(x)
        if self.out == "dict":
            return {"logit": z[:, 0], "features": z}
        return z if self.out == "column" else z[:, 0]


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny work: one thread is fastest on a shared machine
    torch.manual_seed(0)
    model = TinyNet()
    x, y = synthetic(256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(120):
        idx = torch.arange(step * 32, step * 32 + 32) % 256
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(normalize(x[idx])), y[idx].float()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, yt = synthetic(128, seed=2)
    yield model, xt, yt
    torch.set_num_threads(threads)


def test_tiny_model_learned_the_task(trained):
    model, x, y = trained
    assert roc_auc_score(y.numpy(), predict_logits(model, x, normalize)) > 0.95


def test_budget_zero_leaves_predictions_unchanged_exactly(trained):
    model, x, y = trained
    clean = predict_logits(model, x, normalize)
    for attack in (
        lambda: pgd(model, x, y, 0.0, steps=5, preprocess=normalize),
        lambda: pgd(model, x, y, 0.0, steps=5, random_start=False, preprocess=normalize),
        lambda: fgsm(model, x, y, 0.0, preprocess=normalize),
    ):
        adv = attack()
        assert torch.equal(adv, x)
        np.testing.assert_array_equal(predict_logits(model, adv, normalize), clean)


def test_pgd_stays_in_budget_and_lowers_auc(trained):
    model, x, y = trained
    eps = 8 / 255
    adv = pgd(
        model, x, y, eps, steps=10, preprocess=normalize, generator=torch.Generator().manual_seed(0)
    )
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    table = robustness_table(
        model, x, y, budgets=[0.0, 2 / 255, eps], preprocess=normalize, steps=10
    )
    assert list(table.columns) == [
        "attack",
        "budget",
        "budget_255",
        "steps",
        "n",
        "auc_clean",
        "auc",
        "auc_drop",
        "flip_rate",
    ]
    assert table.loc[0, "auc"] == table.loc[0, "auc_clean"] and table.loc[0, "flip_rate"] == 0
    assert table.loc[2, "auc"] < table.loc[2, "auc_clean"] - 0.3
    assert table["auc"].is_monotonic_decreasing
    fg = robustness_table(model, x, y, budgets=[eps], attack="fgsm", preprocess=normalize)
    assert fg.loc[0, "auc"] < fg.loc[0, "auc_clean"] - 0.2
    assert fg.loc[0, "auc"] >= table.loc[2, "auc"] - 0.05  # PGD is at least about as strong


def test_attack_leaves_model_state_alone(trained):
    model, x, y = trained
    model.train()
    for p in model.parameters():
        p.grad = None
    pgd(model, x[:8], y[:8], 4 / 255, steps=2, preprocess=normalize)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_model_output_shapes_and_inputs(trained):
    model, x, y = trained
    ref = model_logits(model.eval(), x[:4], normalize)
    for out in ("column", "dict"):
        other = TinyNet(out)
        other.load_state_dict(model.state_dict())
        torch.testing.assert_close(model_logits(other.eval(), x[:4], normalize), ref)
    u8 = (x[:4].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    assert as_image_tensor(u8).shape == (4, 3, 16, 16)
    with pytest.raises(DeepgenError, match="pixel units"):
        pgd(model, x, y, 4.0)
    with pytest.raises(DeepgenError, match="in \\[0, 1\\]"):
        pgd(model, x * 255, y, 4 / 255)
    with pytest.raises(DeepgenError, match="both classes"):
        robustness_table(model, x, torch.zeros(len(x)), budgets=[1 / 255])
