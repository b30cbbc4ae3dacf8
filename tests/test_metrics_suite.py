"""MultiTaskMetrics against independent references: sklearn, scipy, numpy and krippendorff.

The references follow the same documented rules for undefined values as fer_lightning.metrics
(see its module docstring), applied here with the references' own tools, never our code.
"""

import math
import socket
import warnings
from datetime import timedelta
from pathlib import Path

import krippendorff
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    classification_report,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize
from torch import Tensor

from fer_lightning.metrics.classification import per_class_report
from fer_lightning.metrics.epoch import EpochMean, EpochSum
from fer_lightning.metrics.expression import probabilities
from fer_lightning.metrics.regression import AffectDimensionMetrics
from fer_lightning.metrics.suite import MultiTaskMetrics
from tests.conftest import CONTRACT_METRICS
from tests.test_metrics_calibration import ece_reference
from tests.test_metrics_regression import icc_3_1_anova

pytestmark = pytest.mark.filterwarnings("error")

C = 8
PER_CLASS = [f"{name}_{k}" for name in ("precision", "recall", "f1") for k in range(C)]

Batch = tuple[Tensor, Tensor, Tensor, Tensor]


def make_batch(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Batch:
    """Logits that agree with the label more often than chance, and correlated valence/arousal."""
    g = torch.Generator().manual_seed(seed)
    expression = torch.randint(0, C, (n,), generator=g)
    logits = torch.randn(n, C, generator=g, dtype=torch.float64)
    logits[torch.arange(n), expression] += 1.0
    va_target = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    va_pred = (0.6 * va_target + 0.4 * torch.randn(n, 2, generator=g, dtype=torch.float64)).clamp(
        -1, 1
    )
    return logits.to(dtype), va_pred.to(dtype), expression, va_target.to(dtype)


def reference(logits: Tensor, va_pred: Tensor, expression: Tensor, va_target: Tensor) -> dict:
    """The suite from sklearn, scipy, numpy and krippendorff on float64 copies of the inputs."""
    y = expression.numpy()
    p = logits.double().numpy().argmax(axis=1)
    probs = scipy.special.softmax(logits.double().numpy(), axis=1)
    values = np.unique(np.concatenate([y, p]))
    with warnings.catch_warnings():  # sklearn warns when it applies replace_undefined_by
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(y, p, labels=list(range(C)), replace_undefined_by=0.0)
    with warnings.catch_warnings():  # it leaves out classes only predicted, and warns
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found")
        balanced = balanced_accuracy_score(y, p)
    out = {
        "acc": accuracy_score(y, p),
        "balanced_acc": balanced,
        "f1_macro": f1_score(y, p, average="macro", zero_division=0),
        "f1_weighted": f1_score(y, p, average="weighted", zero_division=0),
        "kappa": kappa,
        "krippendorff_alpha": 0.0
        if values.size < 2
        else krippendorff.alpha(reliability_data=np.stack([y, p]), level_of_measurement="nominal"),
    }
    aurocs = [roc_auc_score(y == k, probs[:, k]) for k in range(C) if 0 < (y == k).sum() < len(y)]
    out["auroc"] = np.mean(aurocs) if aurocs else 0.5
    out["auprc"] = np.mean(
        [average_precision_score(y == k, probs[:, k]) for k in range(C) if (y == k).any()]
    )
    out["ece"] = ece_reference(probs, y, p)
    for d, dimension in enumerate(("valence", "arousal")):
        t, q = va_target[:, d].double().numpy(), va_pred[:, d].double().numpy()
        constant = np.ptp(t) == 0 or np.ptp(q) == 0
        cov = np.mean((t - t.mean()) * (q - q.mean()))
        den = t.var() + q.var() + (t.mean() - q.mean()) ** 2
        out[f"{dimension}_rmse"] = np.sqrt(np.mean((t - q) ** 2))
        out[f"{dimension}_mae"] = mean_absolute_error(t, q)
        out[f"{dimension}_icc"] = 0.0 if constant else icc_3_1_anova(np.stack([t, q], axis=1))
        out[f"{dimension}_pcc"] = 0.0 if constant else scipy.stats.pearsonr(t, q).statistic
        out[f"{dimension}_sagr"] = np.mean(np.sign(t) == np.sign(q))
        out[f"{dimension}_ccc"] = 2 * cov / den if den > 0 else 0.0
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=list(range(C)), zero_division=0)
    for k in range(C):
        out[f"precision_{k}"], out[f"recall_{k}"], out[f"f1_{k}"] = prec[k], rec[k], f1[k]
    return out


def compute(*batches: Batch) -> dict[str, float]:
    metrics = MultiTaskMetrics(C)
    for batch in batches:
        metrics.update(*batch)
    return {k: float(v) for k, v in metrics.compute().items()}


def assert_matches(result: dict[str, float], expected: dict, tol: float) -> None:
    assert list(result) == CONTRACT_METRICS + PER_CLASS
    mismatched = {
        k: (result[k], float(expected[k]))
        for k in result
        if not math.isclose(result[k], expected[k], rel_tol=0, abs_tol=tol)
    }
    assert not mismatched


@pytest.mark.parametrize(("n", "seed"), [(1000, 0), (37, 1)])
def test_matches_references_float64(n: int, seed: int) -> None:
    batch = make_batch(n, seed)
    assert_matches(compute(batch), reference(*batch), tol=1e-6)


def test_matches_references_float32() -> None:
    batch = make_batch(500, 2, torch.float32)
    assert_matches(compute(batch), reference(*batch), tol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probabilities_are_the_softmax_and_equal_for_equal_logits_anywhere_in_a_row(dtype):
    """torch's softmax can differ in the last bit between rows that are permutations of each
    other (its vector lanes sum in position order); ties must stay ties for AUROC and AUPRC."""
    levels = torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5], dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    rows = torch.stack([levels[torch.randperm(C, generator=generator)] for _ in range(64)])
    probs = probabilities(rows)
    torch.testing.assert_close(probs, rows.softmax(dim=1), rtol=0, atol=4 * torch.finfo(dtype).eps)
    for level in levels.unique():
        assert probs[rows == level].unique().numel() == 1


def test_tied_scores_match_the_references() -> None:
    """Logits of two levels, so each class's scores tie across many samples, as quantised or
    saturated outputs do: AUROC counts a tie as half, AUPRC steps once per distinct score."""
    logits, va_pred, expression, va_target = make_batch(400, 5)
    tied = 2.0 * torch.nn.functional.one_hot(logits.argmax(dim=1), C).double()
    assert_matches(
        compute((tied, va_pred, expression, va_target)),
        reference(tied, va_pred, expression, va_target),
        tol=1e-9,
    )


def test_compute_returns_scalar_tensors() -> None:
    metrics = MultiTaskMetrics(C)
    metrics.update(*make_batch(20, 3))
    assert all(v.ndim == 0 and v.is_floating_point() for v in metrics.compute().values())


def test_one_vs_rest_equals_sklearn_multiclass_when_all_classes_present() -> None:
    """Our per-class averaging rule is exactly sklearn's macro when every curve is defined."""
    logits, va_pred, expression, va_target = make_batch(400, 4)
    y, probs = expression.numpy(), scipy.special.softmax(logits.numpy(), axis=1)
    result = compute((logits, va_pred, expression, va_target))
    assert set(y) == set(range(C))
    sk_auroc = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    sk_auprc = average_precision_score(label_binarize(y, classes=range(C)), probs, average="macro")
    assert result["auroc"] == pytest.approx(sk_auroc, abs=1e-9)
    assert result["auprc"] == pytest.approx(sk_auprc, abs=1e-9)


def test_krippendorff_alpha_equals_closed_form() -> None:
    """Nominal alpha for two coders from the coincidence matrix; catches coders/units transposed."""
    logits, va_pred, expression, va_target = make_batch(300, 5)
    y, p = expression.numpy(), logits.numpy().argmax(axis=1)
    cm = np.zeros((C, C))
    np.add.at(cm, (y, p), 1)
    coincidence = cm + cm.T
    n_c, n = coincidence.sum(axis=1), 2 * len(y)
    disagree = coincidence.sum() - np.trace(coincidence)
    expected = 1 - (n - 1) * disagree / (n_c.sum() ** 2 - (n_c**2).sum())
    result = compute((logits, va_pred, expression, va_target))
    assert result["krippendorff_alpha"] == pytest.approx(expected, abs=1e-9)


def test_class_absent_from_labels_and_predictions() -> None:
    logits, va_pred, expression, va_target = make_batch(200, 6)
    expression = torch.where(expression == 7, 0, expression)
    logits[:, 7] = -50.0
    result = compute((logits, va_pred, expression, va_target))
    assert_matches(result, reference(logits, va_pred, expression, va_target), tol=1e-6)
    assert result["precision_7"] == result["recall_7"] == result["f1_7"] == 0.0
    # Macro F1 leaves the unseen class out (sklearn's label set), rather than counting it as 0.
    assert result["f1_macro"] == pytest.approx(np.mean([result[f"f1_{k}"] for k in range(7)]))


def test_class_absent_from_labels_but_predicted() -> None:
    logits, va_pred, expression, va_target = make_batch(200, 7)
    expression = torch.where(expression == 5, 1, expression)
    logits[:10, 5] = 50.0
    result = compute((logits, va_pred, expression, va_target))
    assert_matches(result, reference(logits, va_pred, expression, va_target), tol=1e-6)
    assert result["f1_5"] == 0.0


def test_single_sample_per_class() -> None:
    logits, va_pred, _, va_target = make_batch(C, 8)
    expression = torch.arange(C)
    result = compute((logits, va_pred, expression, va_target))
    assert_matches(result, reference(logits, va_pred, expression, va_target), tol=1e-6)


def test_all_predictions_one_class() -> None:
    logits, va_pred, expression, va_target = make_batch(100, 9)
    logits[:, 2] = 50.0
    va_pred[:] = torch.tensor([0.3, -0.1], dtype=torch.float64)
    result = compute((logits, va_pred, expression, va_target))
    assert_matches(result, reference(logits, va_pred, expression, va_target), tol=1e-6)
    assert result["kappa"] == 0.0
    assert result["valence_pcc"] == result["valence_ccc"] == 0.0


def test_labels_and_predictions_all_one_identical_class() -> None:
    logits, _, _, _ = make_batch(10, 10)
    logits[:, 3] = 50.0
    expression = torch.full((10,), 3)
    va = torch.full((10, 2), 0.1, dtype=torch.float64)
    result = compute((logits, va, expression, va))
    assert_matches(result, reference(logits, va, expression, va), tol=1e-9)
    assert (result["acc"], result["kappa"], result["krippendorff_alpha"]) == (1.0, 0.0, 0.0)
    assert (result["auroc"], result["auprc"]) == (0.5, 1.0)
    assert (result["valence_rmse"], result["valence_pcc"], result["valence_ccc"]) == (0, 0, 0)


def test_single_sample_total() -> None:
    batch = make_batch(1, 11)
    result = compute(batch)
    assert all(math.isfinite(v) for v in result.values())
    assert_matches(result, reference(*batch), tol=1e-9)


def test_constant_predictions_give_zero_correlation_exactly() -> None:
    """0.1 summed n times is not 0.1 * n, so naive variances are tiny but not zero."""
    _, _, expression, va_target = make_batch(3, 12)
    logits = torch.zeros(3, C, dtype=torch.float64)
    va_pred = torch.full((3, 2), 0.1, dtype=torch.float64)
    result = compute((logits, va_pred, expression, va_target))
    assert result["valence_pcc"] == result["arousal_pcc"] == 0.0
    assert result["valence_ccc"] == result["arousal_ccc"] == 0.0


def test_sagr_is_sign_agreement_not_absolute_error() -> None:
    y = torch.tensor([0.5, -0.5, 0.2, 0.0, 0.0])
    p = torch.tensor([0.1, 0.4, 0.9, 0.0, 0.1])
    # Valence signs agree, disagree, agree, 0 == 0 agrees, 0 vs + disagrees: 3/5, where 1 - MAE
    # would be 0.58; arousal (p negated) agrees on the second and fourth only: 2/5.
    va_target, va_pred = torch.stack([y, y], dim=1), torch.stack([p, -p], dim=1)
    result = compute((torch.zeros(5, C), va_pred, torch.zeros(5, dtype=torch.long), va_target))
    assert result["valence_sagr"] == pytest.approx(0.6)
    assert result["arousal_sagr"] == pytest.approx(0.4)


def test_two_updates_equal_one() -> None:
    logits, va_pred, expression, va_target = make_batch(100, 13)
    whole = compute((logits, va_pred, expression, va_target))
    # Unequal halves, so averaging per-batch values would not reproduce the whole.
    halves = compute(
        (logits[:13], va_pred[:13], expression[:13], va_target[:13]),
        (logits[13:], va_pred[13:], expression[13:], va_target[13:]),
    )
    assert_matches(halves, whole, tol=1e-12)


def test_merged_states_equal_one_object() -> None:
    logits, va_pred, expression, va_target = make_batch(100, 14)
    whole = compute((logits, va_pred, expression, va_target))
    first, second = MultiTaskMetrics(C), MultiTaskMetrics(C)
    first.update(logits[:71], va_pred[:71], expression[:71], va_target[:71])
    second.update(logits[71:], va_pred[71:], expression[71:], va_target[71:])
    for name in ("expression", "valence", "arousal"):
        getattr(first, name).merge_state(getattr(second, name))
    merged = {k: float(v) for k, v in first.compute().items()}
    assert_matches(merged, whole, tol=1e-12)


def test_reset_forgets_samples_and_states_stay_out_of_checkpoints() -> None:
    metrics = MultiTaskMetrics(C)
    metrics.update(*make_batch(50, 15))
    assert metrics.state_dict() == {}
    metrics.reset()
    batch = make_batch(30, 16)
    metrics.update(*batch)
    assert_matches({k: float(v) for k, v in metrics.compute().items()}, compute(batch), 1e-12)


def test_states_stay_float64_when_the_module_is_cast_to_bfloat16() -> None:
    """Lightning's "bf16-true" precision calls module.to(bfloat16), which reaches metric states."""
    metrics = MultiTaskMetrics(C).to(torch.bfloat16)
    batch = make_batch(301, 21)
    metrics.update(*(t[:150] for t in batch))
    metrics.update(*(t[150:] for t in batch))
    assert_matches({k: float(v) for k, v in metrics.compute().items()}, compute(batch), 1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"expression": torch.tensor([0, 1, 9, 2])},
            "expression codes must lie in 0..7; filter out AffectNet's codes 8-10 (None, "
            "Uncertain, No-Face) before evaluating",
        ),
        ({"expression": torch.tensor([0, 1, C, 2])}, "expression codes must lie in 0..7;"),
        ({"expression": torch.tensor([0, 1, -1, 2])}, "expression codes must lie in 0..7;"),
        ({"expression": torch.tensor([0, 1, 2])}, "expression must be [4], got [3]"),
        ({"logits": torch.zeros(4, 7)}, "logits must be [N, 8], got [4, 7]"),
        (
            {"va_pred": torch.zeros(3, 2)},
            "va_pred must be [4, 2] (valence, arousal), not [3, 2]",
        ),
        (
            {"va_target": torch.zeros(4, 3)},
            "va_target must be [4, 2] (valence, arousal), not [4, 3]",
        ),
    ],
)
def test_invalid_inputs_raise_saying_what_was_wrong(change: dict, message: str) -> None:
    logits, va_pred, expression, va_target = make_batch(4, 17)
    batch = {"logits": logits, "va_pred": va_pred, "expression": expression, "va_target": va_target}
    with pytest.raises(ValueError) as raised:
        MultiTaskMetrics(C).update(**{**batch, **change})
    assert str(raised.value).startswith(message)


def test_a_dimension_refuses_predictions_that_are_not_one_value_per_label() -> None:
    dimension = AffectDimensionMetrics()
    with pytest.raises(ValueError) as raised:
        dimension.update(torch.zeros(3, 2), torch.zeros(3, 2))
    assert str(raised.value) == "pred and target must be 1-D of equal length, got [3, 2] and [3, 2]"
    with pytest.raises(ValueError, match=r"got \[3\] and \[4\]$"):
        dimension.update(torch.zeros(3), torch.zeros(4))


def test_per_class_report_matches_sklearn() -> None:
    logits, _, expression, _ = make_batch(300, 18)
    pred = logits.argmax(dim=1)
    names = [f"class{k}" for k in range(C)]
    rows = per_class_report(expression, pred, names)
    sk = classification_report(expression, pred, target_names=names, output_dict=True)
    assert [row["class"] for row in rows] == [*names, "macro avg", "weighted avg"]
    for row in rows:
        expected = sk[row["class"]]
        assert row["support"] == expected["support"]
        for key in ("precision", "recall"):
            assert row[key] == pytest.approx(expected[key], abs=1e-12)
        assert row["f1"] == pytest.approx(expected["f1-score"], abs=1e-12)


def test_per_class_report_agrees_with_compute_on_absent_class() -> None:
    logits, va_pred, expression, va_target = make_batch(100, 19)
    expression = torch.where(expression == 4, 0, expression)
    logits[:, 4] = -50.0
    rows = per_class_report(expression, logits.argmax(dim=1), [str(k) for k in range(C)])
    result = compute((logits, va_pred, expression, va_target))
    assert rows[C]["f1"] == pytest.approx(result["f1_macro"], abs=1e-12)
    assert rows[C + 1]["f1"] == pytest.approx(result["f1_weighted"], abs=1e-12)


def _ddp_worker(rank: int, port: int, out: Path, batch: Batch) -> None:
    torch.set_num_threads(1)
    # torchmetrics' own notice to the idle rank; the filter "error" is inherited through fork.
    warnings.filterwarnings("ignore", message=".*called before the ``update`` method")
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=60),  # a mismatched collective fails the test instead of hanging
    )
    try:
        metrics = MultiTaskMetrics(C)
        # 101 samples split 51 / 50, then all on rank 0 with rank 1 idle (it never updates).
        for scenario, part in (("odd", [slice(0, 51), slice(51, None)]), ("idle", [slice(None)])):
            if rank < len(part):
                metrics.update(*(t[part[rank]] for t in batch))
            results = {k: float(v) for k, v in metrics.compute().items()}
            torch.save(results, out / f"{scenario}{rank}.pt")
            metrics.reset()
        mean, total = EpochMean(), EpochSum()  # the module's epoch losses and label counts
        mean.update(torch.tensor(rank + 1.0), rank + 2)
        total.update(torch.tensor(rank + 3.0))
        torch.save((float(mean.compute()), float(total.compute())), out / f"epoch{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_gather_equals_single_process(tmp_path: Path) -> None:
    """Two gloo ranks: every sample is counted once, with uneven shares and with an idle rank."""
    batch = make_batch(101, 20)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork, not spawn: a spawned child re-imports torch, sklearn and scipy, which costs ~20 s here.
    mp.start_processes(_ddp_worker, args=(port, tmp_path, batch), nprocs=2, start_method="fork")
    whole = compute(batch)
    for name in ("odd0", "odd1", "idle0", "idle1"):
        assert_matches(torch.load(tmp_path / f"{name}.pt"), whole, tol=1e-12)
    for rank in (0, 1):  # weighted over both ranks: (1 x 2 + 2 x 3) / 5; 3 + 4
        assert torch.load(tmp_path / f"epoch{rank}.pt") == (pytest.approx(8 / 5), 7.0)


def test_va_metrics_use_the_labelled_samples_and_are_absent_without_any() -> None:
    logits, va_pred, expression, va_target = make_batch(200, seed=3)
    unlabelled = torch.arange(200) % 4 == 0
    masked = va_target.clone()
    masked[unlabelled] = math.nan
    mixed, subset = MultiTaskMetrics(), MultiTaskMetrics()
    mixed.update(logits, va_pred, expression, masked)
    keep = ~unlabelled
    subset.update(logits[keep], va_pred[keep], expression[keep], va_target[keep])
    got, expected = mixed.compute(), subset.compute()
    for dimension in ("valence", "arousal"):
        for key in ("rmse", "mae", "pcc", "sagr", "ccc", "icc"):
            name = f"{dimension}_{key}"
            assert got[name].item() == pytest.approx(expected[name].item(), abs=1e-12), name

    # A constant labelled side stays constant beside the unlabelled rows (its PCC is 0).
    constant = masked.clone()
    constant[keep] = 0.3  # not a binary fraction: its moments would leave rounding residue
    mixed, subset = MultiTaskMetrics(), MultiTaskMetrics()
    mixed.update(logits, va_pred, expression, constant)
    subset.update(logits[keep], va_pred[keep], expression[keep], constant[keep])
    got, expected = mixed.compute(), subset.compute()
    assert got["valence_pcc"].item() == expected["valence_pcc"].item() == 0.0
    assert got["arousal_ccc"].item() == pytest.approx(expected["arousal_ccc"].item(), abs=1e-12)

    none = MultiTaskMetrics()
    none.update(logits, va_pred, expression, torch.full_like(va_target, math.nan))
    metrics = none.compute()
    assert "acc" in metrics and not [k for k in metrics if k.startswith(("valence", "arousal"))]


def test_before_any_sample_every_expression_metric_is_nan() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*called before the ``update`` method")
        result = MultiTaskMetrics(C).compute()
    assert set(result) == set(CONTRACT_METRICS) - {
        name for name in CONTRACT_METRICS if name.startswith(("valence", "arousal"))
    } | set(PER_CLASS)
    assert all(value.dtype == torch.float64 and torch.isnan(value) for value in result.values())
