"""Ray job entrypoint: `hicatalog build-catalog` for `ray job submit`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/build_catalog.py --config configs/build_catalog.toml

The job's driver runs on the cluster head; `hicatalog.runtime.init_ray()` attaches to the
cluster through RAY_ADDRESS, which the job server sets. Every flag of `hicatalog build-catalog --help`
is accepted here too, and `--config FILE` takes the same TOML keys.
"""

import sys

from hicatalog.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-catalog", *sys.argv[1:]]))
