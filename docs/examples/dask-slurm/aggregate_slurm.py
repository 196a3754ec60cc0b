"""``picks aggregate`` with its per-tomogram stages on SLURM worker jobs (dask-jobqueue).

This script is the driver. It starts a Dask scheduler in this process, asks SLURM for worker
jobs (dask-jobqueue's ``SLURMCluster``), waits for the first workers, then runs the ordinary
``picks aggregate ... --scheduler tcp://THIS-HOST:PORT`` with every argument after ``--``, and
cancels the jobs when it ends. Only the driver opens the store; the workers read the tomograms
(and, with the CNN, the model under the output folder) by path, so those must be at the same
paths on the compute nodes: a shared filesystem. The worker jobs start in the folder you ran
this from, so relative paths work when that folder is shared too.

    pip install 'picks[dask]' dask-jobqueue           # on the driver's Python; the workers
                                                      # run the same Python (--python)
    python aggregate_slurm.py --jobs 4 --cores 8 --memory 32GB --queue cpu \\
        -- --inputs /shared/project/inputs.toml --db picks.db
    python aggregate_slurm.py --cores 8 --memory 32GB --job-script   # print it, submit nothing

Run it where ``sbatch`` works (a login node, or a small job of its own that lasts the run).
Each worker job runs ``--processes`` single-threaded worker processes (default: one per core)
and gets ``--memory`` in all. Set the defaults below for your site. Run on one node with
SLURM 22.05: see docs/dask.md, "SLURM through dask-jobqueue".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

# Your site's defaults (each has an option below).
QUEUE: str | None = None  # the partition (sbatch -p); None: the cluster's default
ACCOUNT: str | None = None  # sbatch -A, if your site wants one
CORES_PER_JOB = 8
MEMORY_PER_JOB = "32GB"  # in all, for the job's processes: a few × the largest tomogram's picks
WALLTIME = "02:00:00"  # the whole run must fit: a worker whose job ends is not replaced
WAIT_TIMEOUT_S = 1800  # for the first workers to start (the queue may be busy)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """This script's options before ``--``; ``picks aggregate``'s arguments after it
    (``.aggregate``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s [options] -- PICKS-AGGREGATE-ARGUMENTS...",
    )
    parser.add_argument("--jobs", type=int, default=2, help="SLURM worker jobs (default: 2)")
    parser.add_argument("--cores", type=int, default=CORES_PER_JOB, help="cores per job")
    parser.add_argument(
        "--processes", type=int, help="worker processes per job (default: one per core)"
    )
    parser.add_argument("--memory", default=MEMORY_PER_JOB, help="memory per job, e.g. 32GB")
    parser.add_argument("--walltime", default=WALLTIME, help="per job, HH:MM:SS")
    parser.add_argument("--queue", default=QUEUE, help="SLURM partition")
    parser.add_argument("--account", default=ACCOUNT, help="SLURM account")
    parser.add_argument(
        "--interface",
        help="network interface for the scheduler and workers (e.g. ib0), when the nodes "
        "do not reach the driver's default address",
    )
    parser.add_argument(
        "--local-directory",
        help="workers' scratch folder on the compute node (e.g. $TMPDIR; default: /tmp)",
    )
    parser.add_argument(
        "--log-directory", help="folder for the jobs' output (default: slurm-JOBID.out here)"
    )
    parser.add_argument(
        "--python", help="the workers' Python (default: this one, at the same path)"
    )
    parser.add_argument(
        "--prologue",
        action="append",
        default=[],
        metavar="LINE",
        help="shell line run in the job before the worker, e.g. 'module load python' or "
        "'source /shared/venv/bin/activate' (repeatable)",
    )
    parser.add_argument(
        "--extra-sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="an extra #SBATCH option, e.g. --qos=short (repeatable)",
    )
    parser.add_argument(
        "--min-workers",
        type=int,
        help="start once this many workers are up (default: a quarter of them; the others "
        "join as SLURM starts them)",
    )
    parser.add_argument(
        "--job-script", action="store_true", help="print the worker job script and exit"
    )
    if "--" in argv:
        cut = argv.index("--")
        own, aggregate = argv[:cut], argv[cut + 1 :]
    else:
        own, aggregate = argv, []
    args = parser.parse_args(own)
    args.processes = args.processes or args.cores
    if min(args.jobs, args.cores, args.processes) < 1 or args.cores % args.processes:
        parser.error(
            "--jobs, --cores, --processes: whole numbers ≥ 1, cores a multiple of processes"
        )
    if not aggregate and not args.job_script:
        parser.error("give picks aggregate's arguments after --, e.g. -- --inputs inputs.toml")
    if any(a.split("=")[0] in ("--scheduler", "--workers") for a in aggregate):
        parser.error("--scheduler/--workers: this script gives picks aggregate its scheduler")
    args.aggregate = aggregate
    args.min_workers = args.min_workers or max(1, args.jobs * args.processes // 4)
    return args


def cluster_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``SLURMCluster`` arguments: one single-threaded process per core unless told."""
    kwargs: dict[str, Any] = {
        "cores": args.cores,
        "processes": args.processes,  # threads per process = cores / processes
        "memory": args.memory,
        "walltime": args.walltime,
        "job_name": "picks-worker",
        # the scheduler's dashboard: any free port (8787 is often taken on a login node)
        "scheduler_options": {"dashboard_address": ":0"},
    }
    optional = {
        "queue": args.queue,
        "account": args.account,
        "interface": args.interface,
        "local_directory": args.local_directory,
        "log_directory": args.log_directory,
        "python": args.python,
        "job_script_prologue": args.prologue or None,
        "job_extra_directives": args.extra_sbatch or None,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def aggregate_command(aggregate: list[str], address: str) -> list[str]:
    """``picks aggregate ARGS --scheduler ADDRESS`` with this Python (picks installed in it)."""
    return [
        sys.executable,
        "-c",
        "from picks.cli import main; main()",
        "aggregate",
        *aggregate,
        "--scheduler",
        address,
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    with SLURMCluster(**cluster_kwargs(args)) as cluster:
        if args.job_script:
            print(cluster.job_script())
            return 0
        print(cluster.job_script(), file=sys.stderr, flush=True)
        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            print(
                f"driver: scheduler {cluster.scheduler_address}; waiting for {args.min_workers}"
                f" of {args.jobs * args.processes} worker(s) (squeue shows the jobs)",
                file=sys.stderr,
                flush=True,
            )
            client.wait_for_workers(args.min_workers, timeout=WAIT_TIMEOUT_S)
            done = subprocess.run(aggregate_command(args.aggregate, cluster.scheduler_address))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
