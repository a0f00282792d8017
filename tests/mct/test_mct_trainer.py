"""The MCT trainer: bad configurations stop before training; a tiny run end to end."""
import os
import re
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.commands.mct_train import mct_train_main
from pycaffe_mct.mct.noise_rate import rate_from_agreement
from pycaffe_mct.mct.trainer import MCTTrainer
from pycaffe_mct.net import Net
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto
from pycaffe_mct.tools.parse_log import parse_log

BODY = """
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 16 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "logits"
        inner_product_param { num_output: %(classes)d weight_filler { type: "xavier" } } }
"""
TEST_PART = """
layer { name: "digits" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { scale: 0.00390625 }
        data_param { source: "%(data)s/test_lmdb" batch_size: %(test_batch)d backend: LMDB } }
"""
ACCURACY = """
layer { name: "accuracy" type: "Accuracy" bottom: "logits" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""


def _input(name, shape, stage=None):
    rule = "phase: TRAIN" + (f' stage: "{stage}"' if stage else "")
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" include {{ {rule} }} '
            f'input_param {{ shape {{ {dims} }} }} }}\n')


def _aux_net(data, classes, test_batch=60):
    return (_input("data", [8, 1, 28, 28]) + _input("label", [8]) + _input("sample_weight", [8])
            + TEST_PART % {"data": data, "test_batch": test_batch} + BODY % {"classes": classes} + ACCURACY
            + 'layer { name: "loss" type: "SoftmaxWithLoss" include { phase: TRAIN } '
              'bottom: "logits" bottom: "label" bottom: "sample_weight" top: "loss" }\n')


def _primary_net(data, classes, test_batch=60):
    return (_input("data", [8, 1, 28, 28]) + _input("label", [8])
            + _input("mask", [8], "mct_calibrate") + _input("aux_logits", [8, classes],
                                                             "mct_calibrate")
            + TEST_PART % {"data": data, "test_batch": test_batch} + BODY % {"classes": classes} + ACCURACY
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" '
              'top: "loss" include { phase: TRAIN stage: "mct_pretrain" } }\n'
              'layer { name: "distill" type: "SoftTargetLoss" top: "loss" bottom: "logits" '
              'bottom: "aux_logits" bottom: "label" bottom: "mask" '
              'include { phase: TRAIN stage: "mct_calibrate" } }\n')


def _solver(net_file, **overrides):
    settings = dict(net=f'"{net_file}"', base_lr=0.05, momentum=0.9, lr_policy='"fixed"',
                    max_iter=12, display=0, snapshot=4, test_iter=1, test_interval=6,
                    random_seed=3)
    settings.update(overrides)
    return "".join(f"{key}: {value}\n" for key, value in settings.items())


def write_job(tmp_path, data, noise_rate="0.4", aux_classes=10, clean_source=None,
              noisy_batch=8, clean_batch=4, pretrain_iter=4, test_batch=60, lists=True,
              validation=None, **solver_overrides):
    """A complete MCT job under tmp_path; returns the MCT solver file."""
    (tmp_path / "aux.prototxt").write_text(_aux_net(data, aux_classes, test_batch))
    (tmp_path / "primary.prototxt").write_text(_primary_net(data, 10, test_batch))
    (tmp_path / "aux_solver.prototxt").write_text(_solver(tmp_path / "aux.prototxt",
                                                          **solver_overrides))
    (tmp_path / "primary_solver.prototxt").write_text(_solver(tmp_path / "primary.prototxt",
                                                              **solver_overrides))
    selection = f"selection {{ noise_rate: {noise_rate} }}" if noise_rate else ""
    if lists:
        selection += (f'\n  noisy_label_list: "{data}/noisy.txt"'
                      f'\n  clean_label_list: "{data}/noisy_true.txt"')
    if validation:
        selection += (f'\n  clean_validation {{ name: "val" type: "Data" top: "data" '
                      f'top: "label" transform_param {{ scale: 0.00390625 }} data_param '
                      f'{{ source: "{validation}" batch_size: 60 }} }} estimate_batches: 3')
    solver = tmp_path / "mct.prototxt"
    solver.write_text(f"""random_seed: 5
mct_param {{
  aux_solver: "{tmp_path}/aux_solver.prototxt"
  primary_solver: "{tmp_path}/primary_solver.prototxt"
  clean_data {{ name: "clean" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }}
    data_param {{ source: "{clean_source or data + '/clean_lmdb'}" batch_size: {clean_batch} }} }}
  noisy_data {{ name: "noisy" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }}
    data_param {{ source: "{data}/noisy_lmdb" batch_size: {noisy_batch} }} }}
  pretrain_iter: {pretrain_iter}
  pretrain_lr: 0.1
  {selection}
  distillation {{ temperature: 2 soft_weight: 0.5 }}
  aux_snapshot_prefix: "{tmp_path}/snap/aux"
  primary_snapshot_prefix: "{tmp_path}/snap/primary"
}}
""")
    return solver


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from pycaffe_mct.tools.make_digits_dataset import make_digits_dataset
    out = tmp_path_factory.mktemp("digits")
    make_digits_dataset(str(out))
    return str(out)


class FakeWorld:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


@pytest.mark.parametrize("rate", ["1.0", "-0.2"])
def test_noise_rate_outside_unit_interval_is_refused(tmp_path, digits, rate):
    solver = write_job(tmp_path, digits, noise_rate=rate)
    with pytest.raises(CaffeError, match=r"mct.prototxt: mct_param.selection.noise_rate: "
                                         r"P_noise must be in \[0, 1\)"):
        MCTTrainer(str(solver))


def test_noise_rate_is_estimated_from_label_lists(tmp_path, digits):
    solver = write_job(tmp_path, digits, noise_rate=None)
    noisy = dict(line.split() for line in open(f"{digits}/noisy.txt"))
    true = dict(line.split() for line in open(f"{digits}/noisy_true.txt"))
    expected = np.mean([noisy[k] != true[k] for k in noisy])
    assert MCTTrainer(str(solver)).config.noise_rate == pytest.approx(expected)


def test_without_rate_lists_or_validation_data_the_rate_cannot_be_had(tmp_path, digits):
    solver = write_job(tmp_path, digits, noise_rate=None, lists=False)
    with pytest.raises(CaffeError, match="mct_param needs selection.noise_rate, "
                                         "noisy_label_list and clean_label_list, or "
                                         "clean_validation"):
        MCTTrainer(str(solver))


def test_estimate_batches_must_be_positive(tmp_path, digits):
    solver = write_job(tmp_path, digits, noise_rate=None, lists=False,
                       validation=f"{digits}/test_lmdb")
    solver.write_text(solver.read_text().replace("estimate_batches: 3", "estimate_batches: 0"))
    with pytest.raises(CaffeError, match="mct_param.estimate_batches must be at least 1"):
        MCTTrainer(str(solver))


def test_noise_rate_is_estimated_from_m_a_when_calibration_starts(tmp_path, digits, capfd):
    solver = write_job(tmp_path, digits, noise_rate=None, lists=False, pretrain_iter=10,
                       clean_batch=16, validation=f"{digits}/test_lmdb", snapshot=0,
                       test_interval=100)
    trainer = MCTTrainer(str(solver))
    assert trainer.config.noise_rate is None
    trainer.train()
    logged = [line for line in capfd.readouterr().err.splitlines()
              if "P_noise estimated from M_a" in line]
    assert len(logged) == 1
    found = re.search(r"M_a: ([\d.]+) \(accuracy ([\d.]+) on 180 clean validation samples, "
                      r"agreement ([\d.]+) with the labels of 24 noisy samples", logged[0])
    rate, accuracy, agreement = map(float, found.groups())
    assert accuracy > 0.3                     # M_a learnt something from its clean batches
    assert rate == pytest.approx(trainer.config.noise_rate, abs=5e-5)
    assert rate == pytest.approx(rate_from_agreement(agreement, accuracy, 10), abs=1e-3)


def test_class_counts_that_differ_are_refused(tmp_path, digits):
    solver = write_job(tmp_path, digits, aux_classes=9)
    with pytest.raises(CaffeError, match="mct.prototxt: the models' class counts differ: "
                                         "M_a scores 9 classes, M_p 10"):
        MCTTrainer(str(solver)).train()


def test_empty_clean_source_is_refused(tmp_path, digits):
    empty = tmp_path / "empty_lmdb"
    lmdb.open(str(empty)).close()
    solver = write_job(tmp_path, digits, clean_source=str(empty))
    with pytest.raises(CaffeError, match=r"mct_param.clean_data: .*empty_lmdb' holds no records"):
        MCTTrainer(str(solver)).train()


@pytest.mark.parametrize("layout, noisy_batch, message", [
    ("replicated", 2, "noisy_data batch_size 2 cannot be split evenly over all 4 ranks"),
    # grouped: pretraining finds 3+1, but calibration's 2+2 cannot split 3
    ("grouped", 3, "4 ranks cannot be divided between M_p and M_a for calibrate: .*"
                   "noisy_data batch_size 3 cannot be split evenly over M_p's 2 ranks"),
])
def test_batch_that_does_not_split_over_a_group_is_refused(tmp_path, digits, layout,
                                                           noisy_batch, message):
    solver = write_job(tmp_path, digits, noisy_batch=noisy_batch)
    with pytest.raises(CaffeError, match=message):
        MCTTrainer(str(solver), world=FakeWorld(0, 4), layout=layout).train()


def test_unknown_layout_is_refused(tmp_path, digits):
    with pytest.raises(CaffeError, match="unknown MCT layout 'split'; choose one of "
                                         "grouped, replicated"):
        MCTTrainer(str(write_job(tmp_path, digits)), layout="split")


def test_max_iter_must_agree(tmp_path, digits):
    solver = write_job(tmp_path, digits)
    text = (tmp_path / "aux_solver.prototxt").read_text().replace("max_iter: 12", "max_iter: 9")
    (tmp_path / "aux_solver.prototxt").write_text(text)
    with pytest.raises(CaffeError, match="same max_iter"):
        MCTTrainer(str(solver))


def _weights(path):
    net = read_binary_proto(path, caffe_pb2.NetParameter())
    return {layer.name: [np.array(b.data) for b in layer.blobs] for layer in net.layer}


@pytest.mark.slow
def test_tiny_run_end_to_end_deploys_and_resumes_bitwise(tmp_path, digits):
    solver = write_job(tmp_path, digits)
    assert mct_train_main(["--solver", str(solver)]) == 0
    snap = tmp_path / "snap"
    for prefix in ("aux", "primary"):
        for iteration in (4, 8, 12):
            assert (snap / f"{prefix}_iter_{iteration}.solverstate").is_file()
        _, test_rows = parse_log(snap / f"{prefix}.log")      # one Caffe log per model
        assert [row["NumIters"] for row in test_rows] == [0, 6, 12]
        assert all(0 <= row["accuracy"] <= 1 for row in test_rows)
    deploy = Net(str(snap / "primary_deploy.prototxt"), caffe_pb2.TEST,
                 weights=str(snap / "primary_deploy.caffemodel"))
    deploy.blobs["data"].data[...] = 0.5
    prob = deploy.forward()["prob"]
    assert prob.shape == (1, 10) and prob.sum() == pytest.approx(1, abs=1e-5)
    uninterrupted = _weights(snap / "primary_iter_12.caffemodel")
    for resume_at in (4, 8):        # at the stage switch, and within calibration
        os.remove(snap / "primary_iter_12.caffemodel")
        os.remove(snap / "primary_iter_12.solverstate")
        assert mct_train_main(["--solver", str(solver), "--snapshot",
                               str(snap / f"primary_iter_{resume_at}.solverstate")]) == 0
        resumed = _weights(snap / "primary_iter_12.caffemodel")
        for name, blobs in uninterrupted.items():
            for mine, theirs in zip(resumed[name], blobs):
                assert np.array_equal(mine, theirs), (resume_at, name)


def test_single_process_mct_never_imports_mpi4py():
    code = ("import sys, pycaffe_mct.commands.mct_train, pycaffe_mct.mct.trainer, "
            "pycaffe_mct.layers.mct; print('mpi4py' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.stdout.strip() == "False", done.stderr


# Kernels held by the process (compiled or loaded from numba's cache) when M_p's and M_a's
# calibration nets are entered, and after the first calibration step.
PHASE_CHANGE_PROBE = """
import sys
from numba.core.dispatcher import Dispatcher
from pycaffe_mct.mct import trainer

def kernels_held():
    return sum(len(value.overloads) for name, module in list(sys.modules.items())
               if name.startswith("pycaffe_mct.cg.ops")
               for value in vars(module).values() if isinstance(value, Dispatcher))

held = []
enter, step = trainer.MCTTrainer._enter, trainer.MCTTrainer._calibration_step

def recording_enter(self, stage, iteration):
    if stage == trainer.CALIBRATE:
        held.append(kernels_held())
    enter(self, stage, iteration)

def recording_step(self):
    step(self)
    held.append(kernels_held())

trainer.MCTTrainer._enter, trainer.MCTTrainer._calibration_step = recording_enter, recording_step
trainer.MCTTrainer(sys.argv[1]).train()
print(held[0], held[1])
"""


@pytest.mark.slow
def test_no_kernel_is_compiled_or_loaded_at_the_phase_change(tmp_path, digits):
    """In a new process (numba's cache warm from the tests) the calibration stage's kernels
    are in place before the first iteration, so a cold start never compiles mid-training."""
    solver = write_job(tmp_path, digits, pretrain_iter=1, max_iter=2, test_interval=100)
    done = subprocess.run([sys.executable, "-c", PHASE_CHANGE_PROBE, str(solver)],
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = map(int, done.stdout.split()[-2:])
    assert before > 0 and after == before
