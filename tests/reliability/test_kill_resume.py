"""Kill at any moment: SIGKILL training again and again, resume from the newest snapshot,
and end with the very bytes of an uninterrupted run.

Kills come two ways: the parent SIGKILLs the child a random few milliseconds
after it wrote a new snapshot (so they land anywhere in an iteration or a write),
and every third run the child SIGKILLs itself at a random one of its atomic
writes, before the temporary file is synced or before it is renamed
(kill_hook.py): the moments a snapshot is most exposed.  Every restart must
remove the temporary file such a kill leaves.  The children write to a "slow
disk" (20 ms per fsync), so snapshots take the same time on any machine and
each kill costs only a snapshot or two of progress.  The nets and data are
tiny, so a run is mostly process start-up.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from pycaffe_mct.data.datum import image_to_datum, key_for
from pycaffe_mct.data.lmdb_io import LMDBWriter
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import TEMP_MARK, read_prototxt

HOOK = Path(__file__).with_name("kill_hook.py")
REPO = Path(__file__).resolve().parents[2]
RUN_SECONDS = 120
SLOW_DISK = {"SLOW_DISK": "0.02"}     # seconds per fsync: see kill_hook.py

LENET = REPO / "models" / "lenet" / "lenet_train_test.prototxt"
NARROWER = {"conv1": 2, "conv2": 3, "ip1": 8}      # LeNet's widths: 20, 50, 500


def tiny_lenet():
    """models/lenet with narrow layers, reading 16x16 images from "db" in batches of 4."""
    net = read_prototxt(LENET, caffe_pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source, layer.data_param.batch_size = "db", 4
        if layer.type == "Convolution":
            layer.convolution_param.num_output = NARROWER[layer.name]
        elif layer.name in NARROWER:
            layer.inner_product_param.num_output = NARROWER[layer.name]
    return text_format.MessageToString(net)


SOLVER = ('net: "net.prototxt"\nbase_lr: 0.05\nmomentum: 0.9\nlr_policy: "step"\n'
          'stepsize: 10\ngamma: 0.5\nmax_iter: {max_iter}\nsnapshot: 2\n'
          'snapshot_prefix: "snap"\ndisplay: 0\nrandom_seed: 7\n')


def write_images_lmdb(path, count=48, seed=0):
    rng = np.random.default_rng(seed)
    with LMDBWriter(str(path)) as writer:
        for i in range(count):
            image = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)
            writer.put(key_for(i, f"{i}.png"), image_to_datum(image, i % 10).SerializeToString())


def write_lenet_job(directory, max_iter):
    directory.mkdir()
    write_images_lmdb(directory / "db")
    (directory / "net.prototxt").write_text(tiny_lenet())
    (directory / "solver.prototxt").write_text(SOLVER.format(max_iter=max_iter))
    return directory


def environment(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "KILL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


def start(argv, directory, env=None, ranks=1):
    launcher = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    return subprocess.Popen([*launcher, sys.executable, str(HOOK), *map(str, argv)],
                            cwd=directory, env=environment({**SLOW_DISK, **(env or {})}),
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=RUN_SECONDS):
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(process.args)} still running after {timeout} s")
    return process.returncode, err


def snapshot_iterations(directory, prefix="snap", partner=None):
    """Iterations N with a complete ``prefix_iter_N.solverstate`` (and ``partner``'s)."""
    found = set()
    for path in directory.glob(f"{prefix}_iter_*.solverstate"):
        match = re.fullmatch(rf"{prefix}_iter_(\d+)\.solverstate", path.name)
        if match and (partner is None or
                      (directory / f"{partner}_iter_{match[1]}.solverstate").is_file()):
            found.add(int(match[1]))
    return found


def kill_after_next_snapshot(process, directory, rng, kill, prefix="snap"):
    """SIGKILL (``kill(process)``) a few ms after a snapshot newer than any so far appears."""
    seen = max(snapshot_iterations(directory, prefix), default=-1)
    deadline = time.monotonic() + RUN_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        if max(snapshot_iterations(directory, prefix), default=-1) > seen:
            time.sleep(rng.uniform(0, 0.03))
            kill(process)
            return
        time.sleep(0.005)


def kill_group(process):
    os.killpg(process.pid, signal.SIGKILL)


def train_with_kills(directory, command, resume_args, kills, seed, prefix="snap", partner=None):
    """Run ``command`` (resuming by ``resume_args(N)``) until it ends after ``kills`` kills.

    Returns how many temporary files the kills left for a restart to remove.
    """
    rng = random.Random(seed)
    done = left_behind = 0
    for attempt in range(3 * kills + 2):
        iterations = snapshot_iterations(directory, prefix, partner)
        argv = command + (resume_args(max(iterations)) if iterations else [])
        if done < kills and done % 3 == 0:
            spec = f"{rng.randint(2, 5)}:{rng.choice(['fsync', 'replace'])}"
            process = start(argv, directory, {"KILL_AT_WRITE": spec})
        else:
            process = start(argv, directory)
            if done < kills:
                kill_after_next_snapshot(process, directory, rng, kill_group, prefix)
        code, err = finish(process)
        if code == -signal.SIGKILL:
            done += 1
            left_behind += sum(TEMP_MARK in p.name for p in directory.iterdir())
            continue
        assert code == 0, err[-3000:]
        assert done >= kills, f"the run ended after only {done} kills; make it longer"
        assert not [p for p in directory.iterdir() if TEMP_MARK in p.name]
        return left_behind
    pytest.fail(f"no complete run after {3 * kills + 2} attempts")


def run_in(directory, command):
    """The uninterrupted run, in this process (one process start fewer)."""
    from kill_hook import COMMANDS
    from pycaffe_mct.solvers.log import GlogWriter, set_default_writer
    previous_directory, previous_log = os.getcwd(), set_default_writer(GlogWriter(enabled=False))
    os.chdir(directory)
    try:
        assert COMMANDS[command[0]](command[1:]) == 0
    finally:
        os.chdir(previous_directory)
        set_default_writer(previous_log)


def same_bytes(first, second, names):
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.slow
def test_train_killed_ten_times_ends_with_the_bytes_of_an_uninterrupted_run(tmp_path):
    max_iter = 80
    straight = write_lenet_job(tmp_path / "straight", max_iter)
    killed = write_lenet_job(tmp_path / "killed", max_iter)
    command = ["pycaffe_mct", "train", "--solver", "solver.prototxt"]
    run_in(straight, command)
    left_behind = train_with_kills(
        killed, command, lambda n: ["--snapshot", f"snap_iter_{n}.solverstate"], 10, seed=1)
    assert left_behind >= 1           # some kill did hit a write, and the restart cleaned up
    same_bytes(straight, killed, [f"snap_iter_{max_iter}.caffemodel",
                                  f"snap_iter_{max_iter}.solverstate"])


def _inputs(*blobs):
    return "".join(f'layer {{ name: "{name}" type: "Input" top: "{name}" include {{ {rule} }} '
                   f'input_param {{ shape {{ {" ".join(f"dim: {d}" for d in shape)} }} }} }}\n'
                   for name, shape, rule in blobs)


MCT_BODY = """layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 12 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "logits"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
"""
TRAIN, CALIBRATE = "phase: TRAIN", 'phase: TRAIN stage: "mct_calibrate"'
AUX_NET = (_inputs(("data", [8, 1, 16, 16], TRAIN), ("label", [8], TRAIN),
                   ("sample_weight", [8], TRAIN)) + MCT_BODY
           + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" '
             'bottom: "sample_weight" top: "loss" }\n')
PRIMARY_NET = (_inputs(("data", [8, 1, 16, 16], TRAIN), ("label", [8], TRAIN),
                       ("mask", [8], CALIBRATE), ("aux_logits", [8, 10], CALIBRATE)) + MCT_BODY
               + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" '
                 'top: "loss" include { phase: TRAIN stage: "mct_pretrain" } }\n'
                 'layer { name: "distill" type: "SoftTargetLoss" top: "loss" bottom: "logits" '
                 'bottom: "aux_logits" bottom: "label" bottom: "mask" '
                 'include { phase: TRAIN stage: "mct_calibrate" } }\n')
MCT_SOLVER = """random_seed: 5
mct_param {{
  aux_solver_param {{ net: "aux.prototxt" {model} }}
  primary_solver_param {{ net: "primary.prototxt" {model} }}
  clean_data {{ name: "clean" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }} data_param {{ source: "clean" batch_size: 4 }} }}
  noisy_data {{ name: "noisy" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }} data_param {{ source: "db" batch_size: 8 }} }}
  pretrain_iter: {pretrain}
  pretrain_lr: 0.1
  selection {{ noise_rate: 0.4 }}
  distillation {{ temperature: 2 soft_weight: 0.5 }}
  aux_snapshot_prefix: "aux"
  primary_snapshot_prefix: "primary"
}}
"""


def write_mct_job(directory, max_iter, pretrain):
    directory.mkdir()
    write_images_lmdb(directory / "db")
    write_images_lmdb(directory / "clean", count=16, seed=1)
    (directory / "aux.prototxt").write_text(AUX_NET)
    (directory / "primary.prototxt").write_text(PRIMARY_NET)
    model = (f"base_lr: 0.05 momentum: 0.9 lr_policy: \"fixed\" max_iter: {max_iter} "
             f"snapshot: 2 display: 0 random_seed: 3")
    (directory / "mct.prototxt").write_text(MCT_SOLVER.format(model=model, pretrain=pretrain))
    return directory


@pytest.mark.slow
def test_mct_train_killed_ten_times_ends_with_both_models_bytes(tmp_path):
    max_iter = 80
    straight = write_mct_job(tmp_path / "straight", max_iter, pretrain=30)
    killed = write_mct_job(tmp_path / "killed", max_iter, pretrain=30)
    command = ["mct_train", "--solver", "mct.prototxt"]
    run_in(straight, command)
    train_with_kills(killed, command, lambda n: ["--snapshot", f"primary_iter_{n}.solverstate"],
                     10, seed=2, prefix="primary", partner="aux")
    same_bytes(straight, killed, [f"{model}_iter_{max_iter}.{ext}" for model in ("aux", "primary")
                                  for ext in ("caffemodel", "solverstate")])


def rank_pids(directory, ranks):
    """The process ids the ranks of a job left (see kill_hook), once all are there."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        files = [directory / f"{rank}.pid" for rank in range(ranks)]
        if all(f.is_file() and f.read_text() for f in files):
            return [int(f.read_text()) for f in files]
        time.sleep(0.01)
    pytest.fail("the ranks did not start")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(not shutil.which("mpiexec"), reason="mpiexec not installed")
def test_killing_one_rank_ends_the_job_and_it_resumes_to_the_same_bytes(tmp_path):
    max_iter = 40
    straight = write_lenet_job(tmp_path / "straight", max_iter)
    killed = write_lenet_job(tmp_path / "killed", max_iter)
    command = ["pycaffe_mct", "train", "--solver", "solver.prototxt"]
    code, err = finish(start(command, straight, ranks=2))
    assert code == 0, err[-3000:]
    pids = tmp_path / "pids"
    pids.mkdir()
    job = start(command, killed, {"KILL_HOOK_PIDS": str(pids)}, ranks=2)
    rank_pids(pids, 2)
    kill_after_next_snapshot(job, killed, random.Random(3),
                             lambda _: os.kill(rank_pids(pids, 2)[1], signal.SIGKILL))
    code, err = finish(job, timeout=60)           # the launcher ends the whole job
    assert code != 0, err[-3000:]
    assert not [pid for pid in rank_pids(pids, 2) if alive(pid)]
    newest = max(snapshot_iterations(killed))
    assert newest < max_iter
    code, err = finish(start(command + ["--snapshot", f"snap_iter_{newest}.solverstate"],
                             killed, ranks=2))
    assert code == 0, err[-3000:]
    same_bytes(straight, killed, [f"snap_iter_{max_iter}.caffemodel",
                                  f"snap_iter_{max_iter}.solverstate"])
