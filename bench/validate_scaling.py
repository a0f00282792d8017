"""The scaling model against this machine: measured vs predicted, point by point.

``python bench/validate_scaling.py [--json] [--plots DIR] [--repeats N]``

1. **Our ring allreduce, measured** at 2 and 4 ranks (``mpiexec`` on
   localhost), buffers of 64 KB to 256 MB: the median of ``--repeats``
   timings, each the slowest rank's.
2. **This machine's alpha, beta, gamma, fitted** by least squares on log
   time over the FIT sizes only, through ``scaling.model.ring_allreduce_seconds``
   (the pipelined ring ``pycaffe_mct scale`` uses).  All ranks sit on one
   machine, where MPI's transfers are copies and additions made by the
   ranks' own cores: past the core count the ranks share the cores, so each
   rank's latency, link and adder slow by ranks / cores (the model's
   ``processes_per_node`` sharing, applied to all three).  The HELD-OUT
   sizes are then predicted.
3. **Data-parallel training**: LeNet (global batch 64) and CIFAR10-quick
   (global batch 100) on 2 and 4 ranks.  Predicted: one process's measured
   seconds per iteration at the per-rank batch with the threads a rank gets
   (cores / ranks, at least 1), times ranks / cores where the ranks outnumber
   the cores, plus the fitted allreduce of the parameters (no credit for the
   overlap with backward).  Measured: the same net trained under ``mpiexec``.
   Each timing is the median of 5 windows of 10 iterations (slowest rank).

Every row: {"what", "ranks", "bytes", "measured_s", "predicted_s"}.  The
nets read DummyData, so no data set is needed; their deploy prototxts come
from ``models/``.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

KB, MB = 1 << 10, 1 << 20
FIT_BYTES = (64 * KB, 1 * MB, 16 * MB, 256 * MB)
HELD_OUT_BYTES = (256 * KB, 4 * MB, 64 * MB)
RANKS = (2, 4)
NETS = {"LeNet": ("models/lenet/lenet_deploy.prototxt", 64),
        "CIFAR10-quick": ("models/cifar10_quick/deploy.prototxt", 100)}
WARMUP_ITERATIONS, WINDOWS, WINDOW_ITERATIONS = 3, 5, 10
GOAL = (0.75, 1.33)


# ---- rank programs (run under mpiexec, or alone for the one-rank profile) ------------

def ring_worker(repeats):
    """Every rank: time the ring on each size; rank 0 prints one JSON line per size."""
    from pycaffe_mct.parallel.comm import get_world, mpi_module
    from pycaffe_mct.parallel.ring import make_allreduce
    world = get_world()
    ring = make_allreduce(world, "ring")
    for n_bytes in sorted(FIT_BYTES + HELD_OUT_BYTES):
        buffer = np.ones(n_bytes // 4, dtype=np.float32)
        ring.allreduce(buffer)                        # page faults, connections
        times = []
        for _ in range(repeats):
            world.Barrier()
            begin = time.perf_counter()
            ring.allreduce(buffer)
            times.append(world.allreduce(time.perf_counter() - begin, op=mpi_module().MAX))
        if world.Get_rank() == 0:
            print(json.dumps({"ranks": world.Get_size(), "bytes": n_bytes,
                              "seconds": statistics.median(times)}), flush=True)


def training_net(deploy, batch):
    """The deploy net with DummyData for its input and a SoftmaxWithLoss on its logits."""
    from pycaffe_mct.proto import caffe_pb2
    from pycaffe_mct.scaling.compute import deploy_param
    param = deploy_param(os.path.join(REPO, deploy), batch)
    param.force_backward = False
    net = caffe_pb2.NetParameter(name=param.name)
    for layer in param.layer:
        if layer.type == "Input":
            data = net.layer.add(name=layer.name, type="DummyData", top=[layer.top[0], "label"])
            data.dummy_data_param.shape.add().CopyFrom(layer.input_param.shape[0])
            data.dummy_data_param.shape.add(dim=[batch])
            data.dummy_data_param.data_filler.add(type="gaussian", std=1.0)
            data.dummy_data_param.data_filler.add(type="constant", value=0)
        elif layer.type == "Softmax":
            net.layer.add(name="loss", type="SoftmaxWithLoss",
                          bottom=[layer.bottom[0], "label"], top=["loss"])
        else:
            net.layer.add().CopyFrom(layer)
    return net


def train_worker(deploy, global_batch):
    """Every rank: train its share of the global batch; rank 0 prints seconds/iteration."""
    from pycaffe_mct.parallel import attach_data_parallel, launched_by_mpi, mpi_world_size
    from pycaffe_mct.proto import caffe_pb2
    from pycaffe_mct.solvers.solver import get_solver
    ranks = mpi_world_size()
    param = caffe_pb2.SolverParameter(base_lr=0.001, momentum=0.9, lr_policy="fixed",
                                      max_iter=10 ** 6, display=0, random_seed=1)
    param.net_param.CopyFrom(training_net(deploy, global_batch // ranks))
    solver = get_solver(param)
    comm = None
    if launched_by_mpi():
        from pycaffe_mct.parallel.comm import get_world
        comm = get_world()
        attach_data_parallel(solver, comm)
    solver.step(WARMUP_ITERATIONS)
    windows = []
    for _ in range(WINDOWS):             # the median window: a busy moment counts once
        if comm is not None:
            comm.Barrier()
        begin = time.perf_counter()
        solver.step(WINDOW_ITERATIONS)
        seconds = (time.perf_counter() - begin) / WINDOW_ITERATIONS
        if comm is not None:
            from pycaffe_mct.parallel.comm import mpi_module
            seconds = comm.allreduce(seconds, op=mpi_module().MAX)
        windows.append(seconds)
    seconds = statistics.median(windows)
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps({"seconds": seconds}), flush=True)


# ---- the driver ---------------------------------------------------------------------

def mpiexec():
    """The launcher beside this interpreter (the mpich wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if not found:
        sys.exit("validate_scaling needs mpiexec: pip install -e '.[mpi]'")
    return found


def run(arguments, ranks, threads):
    """Run this script with ``arguments`` on ``ranks`` processes; its JSON lines."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, os.path.abspath(__file__), *arguments]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks), *command]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def local_network(alpha, beta, gamma, ranks):
    """The model's network for ``ranks`` processes sharing this machine's cores."""
    from pycaffe_mct.scaling.model import NetworkSpec
    sharing = max(1.0, ranks / os.cpu_count())
    return NetworkSpec(latency_s=alpha * sharing, node_bytes_per_s=1 / beta,
                       processes_per_node=sharing, reduce_bytes_per_s=1 / (gamma * sharing))


def predict_allreduce(params, n_bytes, ranks):
    from pycaffe_mct.scaling.model import ring_allreduce_seconds
    return ring_allreduce_seconds(n_bytes, ranks, local_network(*params, ranks))


def fit(points):
    """alpha, beta, gamma minimising the squared log error over ``points``."""
    from scipy.optimize import least_squares

    def residuals(logs):
        params = np.exp(logs)
        return [np.log(predict_allreduce(params, p["bytes"], p["ranks"]) / p["seconds"])
                for p in points]

    start = np.log([20e-6, 1 / 5e9, 1 / 5e9])
    return tuple(np.exp(least_squares(residuals, start).x))


def measure_rings(repeats):
    points = []
    for ranks in RANKS:
        points += run(["--ring-worker", "--repeats", str(repeats)], ranks, 1)
    return points


def training_rows(params):
    """Measured vs predicted seconds per iteration of data-parallel training."""
    from pycaffe_mct.scaling.compute import param_bytes
    from pycaffe_mct.net import Net
    from pycaffe_mct.layer import TEST
    cores = os.cpu_count()
    rows = []
    for name, (deploy, batch) in NETS.items():
        n_bytes = param_bytes(Net(training_net(deploy, 1), TEST))
        for ranks in RANKS:
            threads = max(1, cores // ranks)
            alone = run(["--train-worker", deploy, str(batch // ranks)], 1, threads)[0]
            together = run(["--train-worker", deploy, str(batch)], ranks, threads)[0]
            predicted = (alone["seconds"] * max(1.0, ranks / cores)
                         + predict_allreduce(params, n_bytes, ranks))
            rows.append({"what": f"{name} train step (batch {batch})", "ranks": ranks,
                         "bytes": n_bytes, "measured_s": together["seconds"],
                         "predicted_s": predicted})
    return rows


def allreduce_rows(points, params):
    rows = []
    for point in points:
        held_out = point["bytes"] in HELD_OUT_BYTES
        rows.append({"what": "ring allreduce " + ("(held out)" if held_out else "(fit)"),
                     "ranks": point["ranks"], "bytes": point["bytes"],
                     "measured_s": point["seconds"],
                     "predicted_s": predict_allreduce(params, point["bytes"], point["ranks"])})
    return rows


def print_table(rows, params):
    alpha, beta, gamma = params
    print(f"fitted on {len(FIT_BYTES)} sizes x {len(RANKS)} rank counts: alpha "
          f"{alpha * 1e6:.1f} us, 1/beta {1 / beta / 1e9:.2f} GB/s, 1/gamma "
          f"{1 / gamma / 1e9:.2f} GB/s ({os.cpu_count()} cores; ranks beyond them share)")
    print(f"{'what':<40} {'ranks':>5} {'bytes':>11} {'measured s':>11} {'predicted s':>11} "
          f"{'pred/meas':>9}")
    for row in rows:
        ratio = row["predicted_s"] / row["measured_s"]
        mark = "" if GOAL[0] <= ratio <= GOAL[1] else "  outside [0.75, 1.33]"
        print(f"{row['what']:<40} {row['ranks']:>5} {row['bytes']:>11} "
              f"{row['measured_s']:>11.5f} {row['predicted_s']:>11.5f} {ratio:>9.2f}{mark}")


def plot(rows, directory):
    """Measured against predicted seconds, log-log, with the goal's band."""
    from pycaffe_mct.plots import pyplot, save_png
    from pycaffe_mct.scaling.report import plot_paths
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for label, keep in (("allreduce, fit", lambda r: "(fit)" in r["what"]),
                        ("allreduce, held out", lambda r: "held out" in r["what"]),
                        ("training step", lambda r: "train" in r["what"])):
        chosen = [r for r in rows if keep(r)]
        axes.loglog([r["measured_s"] for r in chosen], [r["predicted_s"] for r in chosen],
                    "o", label=label)
    span = [min(r["measured_s"] for r in rows) / 2, max(r["measured_s"] for r in rows) * 2]
    axes.loglog(span, span, "k-", linewidth=0.8, label="predicted = measured")
    for factor in GOAL:
        axes.loglog(span, [s * factor for s in span], "k:", linewidth=0.8)
    axes.set_xlabel("measured seconds")
    axes.set_ylabel("predicted seconds")
    axes.set_title("the scaling model on this machine")
    axes.legend()
    (path,) = plot_paths(directory, "measured_vs_predicted.png")
    save_png(figure, path, dpi=110, bbox_inches="tight")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timings per buffer size")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write measured_vs_predicted.png here")
    parser.add_argument("--rings", metavar="FILE",
                        help="reuse the ring timings saved in FILE (by --save-rings) instead "
                             "of measuring them again")
    parser.add_argument("--save-rings", metavar="FILE", help="save the ring timings to FILE")
    parser.add_argument("--ring-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-worker", nargs=2, metavar=("DEPLOY", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ring_worker:
        return ring_worker(args.repeats)
    if args.train_worker:
        return train_worker(args.train_worker[0], int(args.train_worker[1]))
    began = time.time()
    if args.rings:
        with open(args.rings) as handle:
            points = json.load(handle)
    else:
        points = measure_rings(args.repeats)
    if args.save_rings:
        with open(args.save_rings, "w") as handle:
            json.dump(points, handle)
    params = fit([p for p in points if p["bytes"] in FIT_BYTES])
    rows = allreduce_rows(points, params) + training_rows(params)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(rows, params)
        print(f"{time.time() - began:.0f} s wall; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
    if args.plots:
        print(f"wrote {plot(rows, args.plots)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
