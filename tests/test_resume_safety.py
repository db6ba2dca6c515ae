"""Ray Train resume state is read with weights_only: a tampered file is refused, a real one loads."""

from __future__ import annotations

import pickle

import pytest
import torch

from deepgen.errors import DeepgenError
from deepgen.train.loop import load_resume_state


class _Payload:
    def __reduce__(self):
        return (print, ("tampered checkpoint ran code",))


def test_tampered_resume_state_is_refused(tmp_path, capsys):
    good = tmp_path / "state.pt"
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2,
                "history": [{"epoch": 0, "val_mean_auc": 0.5}], "ema_updates": 7}, good)
    state = load_resume_state(str(good))
    assert state["epoch"] == 2 and torch.equal(state["model"]["weight"], model.state_dict()["weight"])

    bad = tmp_path / "tampered.pt"
    bad.write_bytes(pickle.dumps({"model": {}, "epoch": _Payload()}))
    with pytest.raises(DeepgenError, match="resume state .*tampered.pt holds more than tensors .* refusing"):
        load_resume_state(str(bad))
    assert "ran code" not in capsys.readouterr().out
