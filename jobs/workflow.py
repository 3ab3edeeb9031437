"""Ray job entrypoint: `hicatalog workflow` for `ray job submit`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/workflow.py --config configs/workflow.toml

The job's driver runs on the cluster head; `hicatalog.runtime.init_ray()` attaches to the
cluster through RAY_ADDRESS, which the job server sets. Every flag of `hicatalog workflow --help`
is accepted here too, and `--config FILE` takes the same TOML keys.
"""

import sys

from hicatalog.cli import main

if __name__ == "__main__":
    sys.exit(main(["workflow", *sys.argv[1:]]))
