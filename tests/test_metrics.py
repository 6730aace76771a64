"""Tests of swinlab.training.metrics on hand-made data."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from swinlab.inference.reports import save_per_class_csv
from swinlab.plots import plot_confusion_matrix
from swinlab.training.evaluation import evaluate_model
from swinlab.training.metrics import (
    MetricAccumulator,
    topk_accuracy,
)

# 4 samples, 3 classes. Ranking of classes per row (best first):
#   row 0: 2, 0, 1   target 2 -> top1 hit
#   row 1: 0, 1, 2   target 1 -> top1 miss, top2 hit
#   row 2: 1, 2, 0   target 0 -> miss until top3
#   row 3: 0, 2, 1   target 0 -> top1 hit
LOGITS = torch.tensor(
    [
        [1.0, 0.0, 3.0],
        [5.0, 2.0, -1.0],
        [0.0, 4.0, 1.0],
        [2.0, -3.0, 0.5],
    ]
)
TARGETS = torch.tensor([2, 1, 0, 0])


def test_topk_accuracy_hand_made():
    acc = topk_accuracy(LOGITS, TARGETS, ks=(1, 2, 3))
    # top1: rows 0 and 3 -> 2/4; top2: + row 1 -> 3/4; top3: all.
    assert acc == {1: 50.0, 2: 75.0, 3: 100.0}


def test_topk_k_larger_than_classes_is_clipped():
    acc = topk_accuracy(LOGITS, TARGETS, ks=(1, 5))
    assert acc[5] == 100.0  # 3 classes: every target is within the "top 5"
    assert acc[1] == 50.0
    # a k clip must not turn a miss into a hit with 1 class fewer than k
    two_class = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert topk_accuracy(two_class, torch.tensor([0, 0]), ks=(1, 10)) == {1: 50.0, 10: 100.0}


@pytest.mark.parametrize(
    "logits,targets,ks,match",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), (1,), "logits must be"),
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), (1,), "targets must be"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), (1,), r"targets must lie in \[0, 1\]"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), (0,), "k must be >= 1"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), (1,), "empty batch"),
    ],
)
def test_topk_bad_input(logits, targets, ks, match):
    with pytest.raises(ValueError, match=match):
        topk_accuracy(logits, targets, ks)


def test_accumulator_confusion_and_per_class():
    acc = MetricAccumulator(3, ks=(1, 5))
    acc.update(LOGITS[:2], TARGETS[:2])
    acc.update(LOGITS[2:], TARGETS[2:])
    res = acc.compute()
    # predictions (argmax): 2, 0, 1, 0 ; targets 2, 1, 0, 0
    expected = torch.zeros(3, 3, dtype=torch.int64)
    for t, p in [(2, 2), (1, 0), (0, 1), (0, 0)]:
        expected[t, p] += 1
    assert torch.equal(res["confusion"], expected)
    assert res["num_images"] == 4
    assert res["per_class_count"] == [2, 1, 1]
    # class 0: 1 of 2, class 1: 0 of 1, class 2: 1 of 1
    assert res["per_class_acc"] == [50.0, 0.0, 100.0]
    assert res["top1"] == 50.0 and res["top5"] == 100.0
    ce = torch.nn.functional.cross_entropy(LOGITS, TARGETS).item()
    assert res["loss"] == pytest.approx(ce, rel=1e-6)


def test_accumulator_unseen_class_is_nan_and_empty_raises():
    acc = MetricAccumulator(4)
    with pytest.raises(ValueError, match="no samples"):
        acc.compute()
    acc.update(LOGITS.new_zeros(1, 4) + torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([1]))
    per = acc.compute()["per_class_acc"]
    assert per[1] == 100.0 and math.isnan(per[0]) and math.isnan(per[3])
    with pytest.raises(ValueError, match="3 classes, the accumulator 4"):
        acc.update(LOGITS, TARGETS)


class _Lookup(nn.Module):
    """Returns fixed logits chosen by the first pixel value (sample id)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0, 0, 0].long()]


def test_evaluate_model_with_lookup_model_and_transform():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(4, dtype=torch.uint8)
    loader = [(images[:3], TARGETS[:3]), (images[3:], TARGETS[3:])]
    seen = []

    def transform(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.dtype)
        return x.float()

    model = _Lookup(LOGITS)
    model.train()
    res = evaluate_model(model, loader, transform, progress=False)
    assert seen == [torch.uint8, torch.uint8]
    assert model.training  # mode restored
    assert res["top1"] == 50.0 and res["num_images"] == 4
    res1 = evaluate_model(model, loader, transform, max_batches=1, progress=False)
    # first batch = rows 0..2: only row 0 is a top-1 hit
    assert res1["num_images"] == 3 and res1["top1"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="holds no images"):
        evaluate_model(model, [], transform, progress=False)


def test_evaluate_model_tiny_swin_synthetic():
    from swinlab import create_model

    torch.manual_seed(0)
    model = create_model("swin_micro_patch4_window4_64", num_classes=3, img_size=32)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    loader = [(images[:4], targets[:4]), (images[4:], targets[4:])]
    res = evaluate_model(model, loader, lambda x: x.float() / 255.0, progress=False)
    assert res["num_images"] == 6
    assert res["confusion"].sum().item() == 6
    assert res["confusion"].shape == (3, 3)
    with torch.no_grad():
        logits = model.eval()(images.float() / 255.0)
    expected_top1 = 100.0 * (logits.argmax(1) == targets).float().mean().item()
    assert res["top1"] == pytest.approx(expected_top1)
    assert res["top5"] == 100.0
    assert res["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-4)


def test_save_per_class_csv_and_plot(tmp_path):
    path = save_per_class_csv(tmp_path / "pc.csv", ["a", "b", "c"], [50.0, float("nan"), 100.0], [2, 0, 1])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["index", "class_name", "accuracy", "count"]
    assert rows[1] == ["0", "a", "50.0000", "2"]
    assert rows[2] == ["1", "b", "", "0"]
    with pytest.raises(ValueError, match="same length"):
        save_per_class_csv(tmp_path / "x.csv", ["a"], [1.0, 2.0], [1])

    conf = torch.tensor([[2, 0], [1, 3]])
    png = plot_confusion_matrix(tmp_path / "cm.png", conf, ["a", "b"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    big = plot_confusion_matrix(tmp_path / "big.png", torch.eye(60, dtype=torch.int64), [str(i) for i in range(60)])
    assert big.stat().st_size > 0
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(tmp_path / "bad.png", torch.zeros(2, 3))
