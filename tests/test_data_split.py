"""Splits are seeded, stratified, written once, identical across processes and never leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from fer_lightning.data import split as split_module
from fer_lightning.data.datamodule import AffectNetDataModule, balanced_class_weights
from fer_lightning.data.split import SplitLeakError, assert_disjoint, stratified_holdout
from fer_lightning.errors import ConfigError
from tests.data_fixtures import make_dataset, write_annotations, write_image

REPO = Path(__file__).resolve().parent.parent
AFFECTNET_COUNTS = [74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750]
ORIGINAL_WEIGHTS = [0.480225, 0.267503, 1.41232, 2.55191, 5.63756, 9.45474, 1.44508, 9.58837]

# Only the index and split modules: a fresh interpreter without torch starts in a second.
SPLIT_SCRIPT = """
import json, sys
from pathlib import Path
from fer_lightning.data.index import load_or_build_index
from fer_lightning.data.split import load_or_make_split
root, cache = Path(sys.argv[1]), Path(sys.argv[2])
index, _ = load_or_build_index(root, cache, quiet=True)
rows = load_or_make_split(cache, index, sys.argv[3], 8, 7, 0.2)
print(json.dumps({part: index.paths(r) for part, r in rows.items()}))
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("split") / "ds", train=80, val=16)


def prepared(root, tmp_path, **kwargs):
    args = {"root": str(root), "image_size": 32, "num_workers": 0, "cache_dir": str(tmp_path)}
    dm = AffectNetDataModule(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def keys(dm, part):
    return {Path(p).parent.parent.name + "/" + Path(p).stem for p in dm.sample_paths(part)}


def test_same_seed_same_split_in_separate_processes(dataset, tmp_path):
    runs = []
    for k in range(2):  # separate caches: each process draws the split itself
        out = subprocess.run(
            [sys.executable, "-c", SPLIT_SCRIPT, str(dataset), str(tmp_path / f"c{k}"), "holdout"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    here = prepared(dataset, tmp_path / "here", seed=7)
    assert {p: here.sample_paths(p) for p in ("train", "val", "test")} == runs[0]
    other_seed = prepared(dataset, tmp_path / "other", seed=8)
    assert keys(other_seed, "test") != keys(here, "test")


@pytest.mark.parametrize("protocol", ["holdout", "official"])
def test_protocols_are_disjoint_stratified_and_use_val_set_as_documented(
    dataset, tmp_path, protocol
):
    dm = prepared(dataset, tmp_path, protocol=protocol)
    train, val, test = (keys(dm, p) for p in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    val_set = {f"val_set/{i}" for i in range(80, 96)}
    if protocol == "holdout":
        assert val == val_set and len(test) == 16  # 20% of 80, 2 per class
        assert np.bincount(dm.datasets["test"].expression).tolist() == [2] * 8
    else:
        assert test == val_set and len(val) == 4  # 5% of 80
    assert len(train | val | test) == 96


def test_predefined_on_affectnet_is_holdout_and_records_its_test_fraction(dataset, tmp_path):
    # AffectNet has no test part, so predefined draws it from train_set as holdout does.
    holdout = prepared(dataset, tmp_path / "h", protocol="holdout", seed=3)
    predefined = prepared(dataset, tmp_path / "p", protocol="predefined", seed=3)
    for part in ("train", "val", "test"):
        assert predefined.sample_paths(part) == holdout.sample_paths(part)
    saved = json.loads(next((tmp_path / "p").glob("split-predefined-*-test0.2.json")).read_text())
    assert saved["test_fraction"] == 0.2 and saved["fraction"] == 0.05


def test_seven_classes_drop_contempt_everywhere(dataset, tmp_path):
    dm = prepared(dataset, tmp_path, classes=7)
    for part in ("train", "val", "test"):
        assert dm.datasets[part].expression.max() == 6
    assert dm.num_classes == 7 and dm.class_names[-1] == "Anger"
    assert dm.class_weights().shape == (7,)
    assert sum(dm.split_sizes.values()) == 96 - 96 // 8


def test_split_file_is_written_once_and_reused(dataset, tmp_path, monkeypatch):
    first = prepared(dataset, tmp_path)
    files = list(tmp_path.glob("split-holdout-8classes-seed0-*.json"))
    assert [f.name for f in files] == ["split-holdout-8classes-seed0-fraction0.2.json"]
    content = json.loads(files[0].read_text())
    assert {k: content[k] for k in ("protocol", "classes", "seed", "fraction")} == {
        "protocol": "holdout",
        "classes": 8,
        "seed": 0,
        "fraction": 0.2,
    }
    assert content["sizes"] == {p: len(first.sample_paths(p)) for p in ("train", "val", "test")}
    assert sorted(content["test"]) == sorted(keys(first, "test"))
    assert len(content["index_digest"]) > 0
    monkeypatch.setattr(split_module, "make_split", lambda *a: pytest.fail("split redrawn"))
    again = prepared(dataset, tmp_path)
    assert keys(again, "test") == keys(first, "test")


def test_a_leaking_split_file_raises(dataset, tmp_path):
    prepared(dataset, tmp_path)
    path = next(tmp_path.glob("split-holdout-*.json"))
    content = json.loads(path.read_text())
    content["test"].append(content["train"][0])
    path.write_text(json.dumps(content))
    with pytest.raises(SplitLeakError, match="both train and test"):
        prepared(dataset, tmp_path)


def test_a_leak_names_the_sample_its_two_parts_and_the_fix():
    assert_disjoint({"train": ["a"], "val": ["b"], "test": ["c"]})
    with pytest.raises(SplitLeakError) as raised:
        assert_disjoint({"train": ["a", "b"], "val": ["c"], "test": ["b"]})
    assert str(raised.value) == (
        "b is in both train and test: the split leaks; delete the split file to redraw it"
    )


def test_stratified_holdout_keeps_class_proportions():
    labels = np.repeat(np.arange(8), AFFECTNET_COUNTS)
    held = stratified_holdout(labels, 0.2, seed=0)
    assert abs(held.sum() - 0.2 * len(labels)) <= 1
    assert np.allclose(
        np.bincount(labels[held]) / held.sum(), np.bincount(labels) / len(labels), atol=1e-4
    )
    assert np.array_equal(held, stratified_holdout(labels, 0.2, seed=0))


@pytest.mark.parametrize(
    ("counts", "fraction", "held"),
    [
        # remainders 0, .5, .5: one row left to place, the tie goes to class 1
        ([4, 6, 10], 0.25, [1, 2, 2]),
        # thirteen classes tie at .5 for seven rows: classes 1, 2, 5, 6, 7, 8 and 10 get them
        (
            [4, 3, 3, 2, 2, 1, 1, 1, 1, 4, 3, 4, 3, 3, 4, 3, 3, 3, 3, 4],
            0.5,
            [2, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 2, 1, 1, 1, 1, 2],
        ),
    ],
)
def test_rounding_goes_to_the_largest_remainders_ties_to_the_lower_code(counts, fraction, held):
    labels = np.repeat(np.arange(len(counts)), counts)
    mask = stratified_holdout(labels, fraction, seed=0)
    assert np.bincount(labels[mask], minlength=len(counts)).tolist() == held


def test_balanced_class_weights_reproduce_the_original_numbers():
    assert np.allclose(balanced_class_weights(AFFECTNET_COUNTS), ORIGINAL_WEIGHTS, atol=1e-4)
    labels = np.repeat(np.arange(8), [5, 9, 1, 3, 3, 7, 2, 4])
    sklearn = compute_class_weight("balanced", classes=np.arange(8), y=labels)
    assert np.allclose(balanced_class_weights(np.bincount(labels)), sklearn)


def test_datamodule_class_weights_come_from_the_training_split(dataset, tmp_path):
    dm = prepared(dataset, tmp_path)
    weights = dm.class_weights()
    counts = np.bincount(dm.datasets["train"].expression, minlength=8)
    assert weights.dtype.is_floating_point and weights.shape == (8,)
    assert np.allclose(weights.numpy(), counts.sum() / (8 * counts))
    assert not dm.uses_balanced_sampler
    assert prepared(dataset, tmp_path, sampler="balanced").uses_balanced_sampler


def test_a_changed_dataset_gets_a_new_split_with_a_warning(tmp_path, caplog):
    root = make_dataset(tmp_path / "ds", train=40, val=8)
    first = prepared(root, tmp_path / "cache")
    assert "drawing a new split" not in caplog.text  # a first split is no change
    write_image(root / "train_set" / "images" / "extra.jpg", np.random.default_rng(3))
    write_annotations(root / "train_set" / "annotations", "extra", 2, 0.1, 0.1, as_string=True)
    again = prepared(root, tmp_path / "cache")
    path = next((tmp_path / "cache").glob("split-holdout-*.json"))
    assert f"the dataset changed since {path} was written: drawing a new split" in caplog.messages
    assert sum(again.split_sizes.values()) == sum(first.split_sizes.values()) + 1


def test_a_run_records_its_split_and_follows_the_record_after_the_dataset_changed(tmp_path):
    root = make_dataset(tmp_path / "ds", train=40, val=8)
    record = tmp_path / "run" / "split.json"
    first = prepared(root, tmp_path / "cache", split_file=record)
    written = json.loads(record.read_text())
    assert set(written) == {"train", "val", "test"}
    assert {part: set(ids) for part, ids in written.items()} == {
        part: keys(first, part) for part in ("train", "val", "test")
    }
    for k in range(6):  # new samples: the cache's split is drawn anew, the run's record is not
        write_image(root / "train_set" / "images" / f"extra{k}.jpg", np.random.default_rng(k))
        write_annotations(root / "train_set" / "annotations", f"extra{k}", k, 0.1, 0.1, True)
    again = prepared(root, tmp_path / "cache", split_file=record)
    assert json.loads(record.read_text()) == written
    assert {part: keys(again, part) for part in written} == {
        part: set(ids) for part, ids in written.items()
    }
    fresh = prepared(root, tmp_path / "cache")
    assert sum(fresh.split_sizes.values()) == sum(again.split_sizes.values()) + 6


def test_a_recorded_sample_that_is_gone_or_invalid_is_one_line(tmp_path):
    root = make_dataset(tmp_path / "ds", train=40, val=8)
    record = tmp_path / "split.json"
    prepared(root, tmp_path / "cache", split_file=record)
    test_id = json.loads(record.read_text())["test"][0].split("/")[1]
    (root / "train_set" / "images" / f"{test_id}.jpg").unlink()
    with pytest.raises(ConfigError, match=f"train_set/{test_id}") as error:
        prepared(root, tmp_path / "cache", split_file=record)
    assert "\n" not in str(error.value) and "resume=false" in str(error.value)


@pytest.mark.parametrize(
    "content", ['{"train": [', "[1, 2]", '{"train": ["train_set/1"], "val": []}', ""]
)
def test_an_unreadable_split_record_is_one_line(dataset, tmp_path, content):
    record = tmp_path / "split.json"
    record.write_text(content)
    with pytest.raises(ConfigError, match="split") as error:
        prepared(dataset, tmp_path / "cache", split_file=record)
    assert "\n" not in str(error.value)
