"""Cluster-shaped runs (#11 items 3-4): a real multi-node Ray cluster on this machine, jobs
submitted with ``ray job submit``, every input and output in a bucket of the tests' S3 server,
and a worker node SIGKILLed in the middle of a catalog build and of a two-worker training run.

The cluster (``tests/raycluster.py``) is a ``ray start --head`` and ``ray start --address``
per worker node, each in its own process group, temp dir and model cache, with 2 CPUs each
(the machine has 2 real cores: the counts are what Ray schedules with). Nothing runs in this
process's Ray: where work ran is read from Ray's state API (``ray list``), what was written
from the bucket.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
import s3server  # tests/s3server.py
from builders import galaxies, tiny_model, write_cutouts
from raycluster import (
    PREDICTOR_ACTOR,
    ClusterError,
    LocalRayCluster,
    catalog_rows,
    compare_catalogs,
    shards_done,
    submit_build,
    wait_for_actor_on,
)

from hicatalog import storage
from hicatalog.models import load_model
from hicatalog.models.artifact import load_card

#: Catalog inputs: 12 shards of 20 rows, predicted in batches of 8 by 2 actors.
N_ROWS, ROWS_PER_SHARD = 240, 20
#: Seconds a job may take (well above the few minutes each takes on 2 busy cores).
JOB_TIMEOUT_S = 480


@pytest.fixture(scope="module")
def ray_cluster(s3_server):
    """A head and one worker node (2 CPUs each), started with ``ray start`` after the S3
    server (so every node reaches the bucket), stopped after the module: every process group
    killed, temp dirs removed, the caller's ``ray_current_cluster`` as it was."""
    cluster = LocalRayCluster()
    try:
        cluster.start(num_cpus=2)
        cluster.add_node(num_cpus=2)
    except ClusterError as exc:
        cluster.shutdown()
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        leftovers = cluster.shutdown()
        assert not leftovers, f"processes of the cluster outlived its ray start: {leftovers}"


def workers(cluster: LocalRayCluster, n: int = 1):
    """The cluster's alive worker nodes, starting new ones (as an autoscaler would) until
    there are ``n``."""
    alive = [node for node in cluster.nodes if node.name.startswith("w") and not node.killed]
    while len(alive) < n:
        alive.append(cluster.add_node(num_cpus=2))
    return alive


@pytest.fixture(scope="module")
def catalog_inputs(s3_server):
    """Mock cutouts and the two tiny models in a bucket: ``(cutouts, regression, pr, ids,
    bucket)``."""
    bucket = s3server.create_bucket(f"hicatalog-cluster-{uuid.uuid4().hex[:8]}")
    cols = galaxies(N_ROWS, seed=41)
    cutouts = write_cutouts(f"{bucket}/cutouts", cols, ROWS_PER_SHARD)
    return (cutouts, tiny_model(f"{bucket}/models/regression", "regression"),
            tiny_model(f"{bucket}/models/pr", "pr"), list(cols["object_id"]), bucket)


@pytest.fixture(scope="module")
def reference_build(ray_cluster, catalog_inputs):
    """The catalog built on the two nodes without interruption: ``(Ray job id, rows, the
    worker node)``."""
    cutouts, reg, pr, _, bucket = catalog_inputs
    (worker,) = workers(ray_cluster, 1)
    job = submit_build(ray_cluster, cutouts, reg, pr, f"{bucket}/catalog")
    status, logs = ray_cluster.wait_job(job, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"the build job {status}:\n{logs[-4000:]}"
    return ray_cluster.job_ray_id(job), catalog_rows(f"{bucket}/catalog"), worker


def test_build_on_s3_spreads_over_both_nodes(ray_cluster, catalog_inputs, reference_build):
    """The read+decode tasks and the inference actors of one build ran on both nodes (Ray's
    state API), each node downloaded the models once into its own cache, and the catalog in
    the bucket has every input row once."""
    cutouts, reg, pr, ids, _ = catalog_inputs
    rid, rows, worker = reference_build
    tasks = ray_cluster.list_state("tasks", f"job_id={rid}")
    assert len(tasks) < 10000, "the task list was cut at its limit"

    def nodes_of(name):
        return {ray_cluster.node_name(t["node_id"]) for t in tasks
                if t["name"] == name and t["state"] == "FINISHED"}

    head = ray_cluster.head
    assert nodes_of("MapBatches(_read_decode_shard)") == {head.name, worker.name}
    actors = [a for a in ray_cluster.list_state("actors", f"job_id={rid}")
              if a["class_name"] == PREDICTOR_ACTOR]
    assert sorted(ray_cluster.node_name(a["node_id"]) for a in actors) == sorted(
        [head.name, worker.name])
    # each actor predicted batches on its node
    assert nodes_of(f"{PREDICTOR_ACTOR}.submit") == {head.name, worker.name}
    # nodes share nothing but the bucket: each cached the models it read from there
    for node in (head, worker):
        cache = os.path.join(node.temp_dir, "models")
        for model in (reg, pr):
            sha = load_card(model).weights_sha256
            assert os.path.isfile(os.path.join(cache, sha, "weights.pt")), (node.name, model)
    assert sorted(rows["object_id"].to_list()) == sorted(ids)
    assert rows.filter(rows["status"] == "ok").height == N_ROWS


def test_build_survives_losing_a_node(ray_cluster, catalog_inputs, reference_build):
    """SIGKILL of the worker node's process group while the build runs: Ray restarts its
    inference actor on the head and retries its tasks; the catalog has every input row exactly
    once, with the predictions of the uninterrupted build."""
    cutouts, reg, pr, ids, bucket = catalog_inputs
    out = f"{bucket}/catalog-node-lost"
    (worker,) = workers(ray_cluster, 1)
    job = submit_build(ray_cluster, cutouts, reg, pr, out)
    # The kill lands once the worker node's inference actor has loaded the models (the pool
    # sends it batches from then on), while the shards are being written.
    rid = wait_for_actor_on(ray_cluster, worker, job, PREDICTOR_ACTOR, timeout=JOB_TIMEOUT_S)
    ray_cluster.kill(worker)
    done_at_kill = shards_done(out)
    n_shards = N_ROWS // ROWS_PER_SHARD
    assert done_at_kill < n_shards, "the build ended before the kill: make it longer"
    status, logs = ray_cluster.wait_job(job, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"the build job {status} after the node loss:\n{logs[-4000:]}"
    # the lost node's actor (alive there when the node died) was restarted by Ray
    actors = [a for a in ray_cluster.list_state("actors", f"job_id={rid}")
              if a["class_name"] == PREDICTOR_ACTOR]
    assert [int(a["num_restarts"]) for a in actors].count(1) == 1, actors
    # what a user sees in the job's log: the node's death, the retried work, the catalog
    assert "node it was running on is dead" in logs or "has been marked dead" in logs, logs[-3000:]
    assert f"wrote shard {n_shards}/{n_shards}" in logs
    diff = compare_catalogs(reference_build[1], catalog_rows(out), ids)
    assert diff["rows"] == N_ROWS and diff["rows_lost"] == 0 and diff["rows_doubled"] == 0, diff
    assert diff["rows_not_in_input"] == 0 and diff["status_differs"] == 0, diff
    for col in ("m_pred", "m_pred_std", "p_cnn"):  # float32 noise of other batch shapes only
        assert diff[f"null_differs_{col}"] == 0 and diff[f"max_abs_diff_{col}"] < 1e-5, diff
    manifest = json.loads(storage.read_bytes(f"{out}/_manifest.json"))
    assert manifest["rows"]["total"] == N_ROWS and manifest["rows"]["status"] == {"ok": N_ROWS}


def test_training_survives_losing_a_node(ray_cluster, s3_server, s3_bucket):
    """``hicatalog train --workers 2`` with data, model and checkpoints (``--storage-path``) in
    the bucket; the node of one training worker is SIGKILLed after the epoch-1 checkpoint and
    a replacement node joins (what the autoscaler of cluster.yaml does): Ray Train restarts
    the worker group, which resumes from the last checkpoint in the bucket and ends with the
    model, whose files are objects written whole (no temporary object)."""
    from imagefixtures import make_blob_shards

    make_blob_shards(f"{s3_bucket}/blobs", 240, seed=5, size=48, rows_per_shard=120)
    out, ckpt = f"{s3_bucket}/models/pr", f"{s3_bucket}/checkpoints"
    (worker,) = workers(ray_cluster, 1)
    mark = s3_server.log_offset()
    job = ray_cluster.submit(
        "python", "jobs/train.py", "--task", "pr", "--data", f"{s3_bucket}/blobs", "--out", out,
        "--storage-path", ckpt, "--workers", "2", "--image-size", "24", "--epochs", "3",
        "--batch-size", "16")

    def checkpoints():
        return sorted({f.split("/")[-2] for f in storage.list_files(ckpt, recursive=True)
                       if "/checkpoint_epoch_" in f})

    # Each worker reserves 2 CPUs (its share of the 4): one worker per node.
    rid = wait_for_actor_on(ray_cluster, worker, job, "RayTrainWorker", timeout=JOB_TIMEOUT_S,
                            ready=lambda: "checkpoint_epoch_0001" in checkpoints())
    ray_cluster.kill(worker)
    at_kill = checkpoints()
    assert "checkpoint_epoch_0003" not in at_kill, "training ended before the kill"
    replacement = ray_cluster.add_node(num_cpus=2)
    status, logs = ray_cluster.wait_job(job, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"the training job {status} after the node loss:\n{logs[-4000:]}"
    # Ray Train counted one worker-group failure and retried (what the user sees) ...
    assert "[FailurePolicy] RETRY" in logs and "Error count: 1 (max allowed: 3)" in logs
    assert "The actor died because its node has died" in logs
    # ... the new group, on the head and the replacement node, resumed from the bucket
    workers_by_node = {ray_cluster.node_name(a["node_id"])
                       for a in ray_cluster.list_state("actors", f"job_id={rid}")
                       if a["class_name"] == "RayTrainWorker"}
    assert workers_by_node == {ray_cluster.head.name, worker.name, replacement.name}
    model, card = load_model(out)
    resumed = card.metrics["resumed_after_epochs"]
    assert len(resumed) == 1 and 1 <= resumed[0] < 3, resumed
    assert f"rank 0 resumes after epoch {resumed[0]}" in logs
    assert f"resumed from its checkpoint after epoch {resumed[0]}" in logs
    # every epoch once in the model's history; the epochs before the resume were not redone
    lines = [json.loads(s) for s in storage.read_bytes(f"{out}/metrics.jsonl").decode().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3] and card.metrics["epoch"] == 3
    assert card.task == "pr" and card.hyperparameters["workers"] == 2 and card.image_size == 24
    assert "checkpoint_epoch_0003" in checkpoints()
    ours = [p for _, p in s3_server.writes(mark) if p.startswith(f"/{s3_bucket[5:]}/models/")]
    assert ours and not [p for p in ours if ".tmp" in p], ours
