"""``picks aggregate`` with its per-tomogram stages on SLURM workers (dask-jobqueue).

Run it where SLURM commands work (a login node, or a small job of its own): it is the driver,
the only process that opens the store. It asks SLURM for worker jobs, runs the aggregate, and
releases the jobs. The tomograms and picker files must be at the same paths on the compute
nodes (a shared filesystem); the store need not be.

    pip install 'picks[dask]' dask-jobqueue
    python aggregate_slurm.py /shared/project/inputs.toml --jobs 8

Edit QUEUE, ACCOUNT, the cores and the memory for your site. Each job runs ``--processes``
single-threaded worker processes; 8 jobs × 8 processes = 64 workers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

QUEUE = "cpu"  # your partition
ACCOUNT = None  # your account, if your site wants one
CORES_PER_JOB = 8
MEMORY_PER_JOB = "32GB"  # the largest tomogram's picks × a few, per worker process
WALLTIME = "02:00:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, help="inputs.toml ([[picker]], [tomograms], [output])")
    parser.add_argument("--jobs", type=int, default=8, help="SLURM worker jobs")
    parser.add_argument("--processes", type=int, default=CORES_PER_JOB, help="workers per job")
    parser.add_argument("--db", type=Path, default=Path("picks.db"))
    args = parser.parse_args()

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from picks.cli.logs import log_progress, setup_logging
    from picks.core.inputs_file import read_inputs_file
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate
    from picks.workflows.inputs import InputSpec
    from picks.workflows.parallel import DaskExecutor, partial_dir

    setup_logging()
    job = read_inputs_file(args.inputs)
    out = job.out or args.inputs.parent / "consensus"
    inputs = [
        InputSpec(p.path, p.label, p.input_options(), given=f"{p.label}={p.path}")
        for p in job.pickers
    ]
    cluster = SLURMCluster(
        queue=QUEUE,
        account=ACCOUNT,
        cores=CORES_PER_JOB,
        processes=args.processes,  # one thread per worker process
        memory=MEMORY_PER_JOB,
        walltime=WALLTIME,
    )
    cluster.scale(jobs=args.jobs)
    with cluster, Client(cluster) as client:
        # Start as soon as a quarter of the workers are up: the others join as SLURM starts them.
        client.wait_for_workers(max(1, args.jobs * args.processes // 4), timeout=1800)
        executor = DaskExecutor(client, progress=log_progress, cache_dir=partial_dir(out))
        with Store(args.db) as store:
            result = aggregate(
                store,
                inputs,
                out=out,
                tomograms=job.tomograms,
                formats=job.formats or ("relion5", "box"),
                method=job.method or "auto",
                seed=job.seed or 0,
                voxel_size=job.voxel_size,
                progress=log_progress,
                executor=executor,
            )
    print(
        f"run {result.run_id}: {result.n_consensus} consensus picks, {result.n_accepted} accepted"
    )
    for row in result.outputs:
        print(f"wrote {row['path']}")


if __name__ == "__main__":
    main()
