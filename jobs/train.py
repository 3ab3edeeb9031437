"""Ray job entrypoint: `hicatalog train` for `ray job submit`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train.py --config configs/train.toml

The job's driver runs on the cluster head; `hicatalog.runtime.init_ray()` attaches to the
cluster through RAY_ADDRESS, which the job server sets. Every flag of `hicatalog train --help`
is accepted here too, and `--config FILE` takes the same TOML keys.
"""

import sys

from hicatalog.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
