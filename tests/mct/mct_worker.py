"""One MCT run that records the selection: ``[mpiexec -n N] python mct_worker.py SOLVER
LAYOUT OUT.npz [M_p's .solverstate to resume from]``.

Every call of the trainer's ``select`` (one per calibration iteration) is kept;
under MPI the ranks must agree on every mask, and world rank 0 writes them all
to OUT.npz as ``mask_a`` and ``mask_p`` (iterations x global batch).
"""
import sys

import numpy as np

from pycaffe_mct.mct.trainer import MCTTrainer
from pycaffe_mct.parallel import world_if_launched


def main(solver, layout, out, resume=None):
    world = world_if_launched()
    trainer = MCTTrainer(solver, world, layout=layout)
    recorded = []
    select = trainer.select

    def recording_select(gathered):
        masks = select(gathered)
        recorded.append(masks)
        return masks

    trainer.select = recording_select
    trainer.train(resume)
    masks = np.array(recorded, np.float32)
    if world is not None:
        everyone = world.allgather(masks.tobytes())
        assert all(theirs == everyone[0] for theirs in everyone), "ranks selected differently"
    if world is None or world.Get_rank() == 0:
        np.savez(out, mask_a=masks[:, 0], mask_p=masks[:, 1])


if __name__ == "__main__":
    main(*sys.argv[1:])
